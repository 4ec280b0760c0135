#!/usr/bin/env bash
# sps recipe: the shipped Festival SLT corpus (or any wav/ + lab/ corpus) -> a voice.
#
#   ./run.sh [--stage N] [--stop-stage M] [--exp-dir DIR] [--jobs N]
#            [--vocoder world|wavenet|wavernn] [--vocoder-config FILE] [<conf>.<key>=<value> ...]
#
# Stages (all outputs under the experiment directory, default exp/slt_festival):
#   0  prepare      corpus -> data/{train,dev,eval}.list, wav.scp, lab.scp     (conf/prepare.yaml)
#   1  features     WORLD/SPTK acoustic features, log-mel, waveform -> dump/   (conf/features.yaml)
#   2  linguistic   HTS labels + question file -> linguistic/duration features (conf/linguistic.yaml)
#   3  stats        normalisation statistics on the train split -> stats/      (conf/features.yaml)
#   4  duration     duration model (DNN, MSE) -> models/duration_dnn           (conf/duration.yaml)
#   5  acoustic DNN feed-forward acoustic model, MSE then MGE fine-tuning       (conf/acoustic*.yaml)
#   6  acoustic LSTM BLSTM acoustic model, MSE then MGE fine-tuning             (conf/acoustic_lstm*.yaml)
#   7  synth        WORLD copy synthesis and each model on the eval split (natural
#                   durations, for scoring), plus full TTS with predicted durations
#                   -> synth/<system>/eval/<utt>.{wav,npy,png}                 (conf/synth.yaml)
#   8  eval         MCD, BAP, F0 RMSE/corr, V/UV, duration RMSE -> eval/        (conf/eval.yaml)
#   9  vocoder      train the neural vocoder picked by --vocoder (wavenet|wavernn;
#                   skipped for world) on natural features -> models/<vocoder>  (conf/<vocoder>.yaml)
#  10  vocode       neural vocoding of natural (copy) and generated features of the
#                   eval split, with the same metrics -> synth/, eval/          (conf/<vocoder>.yaml)
#  11  report       metrics table + eval/report.html (audio players, plots)    (conf/eval.yaml)
#
# --vocoder world (default) keeps the recipe within ~30 min on a 2-core CPU; wavenet
# or wavernn add their training (10-20 min each on CPU, small configs). For the
# full-size vocoders on a GPU use e.g. --vocoder-config conf/wavenet_gpu.yaml.
#
# Overrides: '<conf>.<key>=<value>' goes to the stage(s) reading conf/<conf>.yaml, e.g.
#   ./run.sh --stage 0 --stop-stage 3 prepare.corpus.path=/data/arctic_slt features.f0_method=dio
# Every stage skips outputs that exist (rerun resumes); add 'force=1' to redo them.
set -euo pipefail

recipe_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$recipe_dir/../.." && pwd)
conf=$recipe_dir/conf

stage=0
stop_stage=100
exp_dir=$root/exp/slt_festival
jobs=2
force=0
vocoder=world
vocoder_config=
acoustic_models="acoustic_dnn acoustic_dnn_mge acoustic_lstm acoustic_lstm_mge"
tts_model=acoustic_lstm_mge   # model used for full TTS with predicted durations
overrides=()

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
        --exp-dir|--exp_dir) exp_dir=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --vocoder) vocoder=$2; shift 2 ;;
        --vocoder-config|--vocoder_config) vocoder_config=$2; shift 2 ;;
        force=1) force=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
        *=*) overrides+=("$1"); shift ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

cd "$root"
command -v sps >/dev/null || { echo "run.sh: the 'sps' command is not installed (pip install -e .)" >&2; exit 1; }

# sps_stage <stage-name> <conf-name> [extra args...]: run one 'sps' subcommand with
# conf/<conf-name>.yaml and the overrides addressed to that conf file.
sps_stage() {
    local name=$1 cfg=$2; shift 2
    local key args=()
    key=$(basename "$cfg" .yaml)
    for o in "${overrides[@]+"${overrides[@]}"}"; do
        case "$o" in "$key".*) args+=("${o#"$key".}") ;; esac
    done
    if [ "$force" = 1 ]; then args+=(--force); fi
    local file=$conf/$cfg.yaml
    case "$cfg" in */*) file=$cfg ;; esac
    echo "=== sps $name --config $file $* ${args[*]+"${args[*]}"}"
    sps "$name" --exp-dir "$exp_dir" --config "$file" --jobs "$jobs" "$@" "${args[@]+"${args[@]}"}"
}

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if run_stage 0; then sps_stage prepare prepare; fi
if run_stage 1; then sps_stage features features; fi
if run_stage 2; then sps_stage linguistic linguistic; fi
if run_stage 3; then sps_stage stats stats; fi
if run_stage 4; then sps_stage train duration; fi
if run_stage 5; then sps_stage train acoustic; sps_stage train acoustic_mge; fi
if run_stage 6; then sps_stage train acoustic_lstm; sps_stage train acoustic_lstm_mge; fi
if run_stage 7; then
    sps_stage synth synth copy_synthesis=true
    for m in $acoustic_models; do sps_stage synth synth acoustic_model="$m"; done
    sps_stage synth synth durations=predicted acoustic_model="$tts_model"
fi
if run_stage 8; then sps_stage eval eval; fi

case "$vocoder" in
    world) ;;
    wavenet|wavernn) vocoder_config=${vocoder_config:-$conf/$vocoder.yaml} ;;
    *) echo "run.sh: --vocoder must be world, wavenet or wavernn, got '$vocoder'" >&2; exit 2 ;;
esac
if [ "$vocoder" != world ]; then
    # one thread per process: small recurrent steps stall with several OpenMP threads
    if run_stage 9; then OMP_NUM_THREADS=1 sps_stage train-vocoder "$vocoder_config"; fi
    if run_stage 10; then sps_stage vocode "$vocoder_config"; fi
fi
if run_stage 11; then
    sps_stage eval eval
    sps_stage report report
fi
