#!/usr/bin/env bash
# sps recipe: the shipped Festival SLT corpus (or any wav/ + lab/ corpus) -> a voice.
#
#   ./run.sh [--stage N] [--stop-stage M] [--exp-dir DIR] [--jobs N] [--force]
#            [--cmd PREFIX --nj N] [--vocoder world|wavenet|wavernn|source_filter] [--vocoder-config FILE]
#            [--gpu] [<conf>.<key>=<value> ...]
#
# Stages (all outputs under the experiment directory, default exp/slt_festival):
#   0  prepare      corpus -> data/{train,dev,eval}.list, wav.scp, lab.scp     (conf/prepare.yaml)
#   1  features     WORLD/SPTK acoustic features, log-mel, waveform -> dump/   (conf/features.yaml)
#   2  linguistic   HTS labels + question file -> linguistic/duration features (conf/linguistic.yaml)
#   3  stats        normalisation statistics on the train split -> stats/      (conf/stats.yaml)
#   4  duration     duration model -> models/<name>                            (conf/duration.yaml)
#   5  acoustic DNN every conf/acoustic*.yaml of a feed-forward model, in file order
#   6  acoustic seq every conf/acoustic*.yaml of a convolutional or recurrent model (MSE, then
#                   MGE fine-tuning)
#   7  synth        WORLD copy synthesis and each acoustic model on the eval split (natural
#                   durations, for scoring), plus full TTS with predicted durations
#                   -> synth/<system>/eval/<utt>.{wav,npy,png}                 (conf/synth.yaml)
#   8  eval         MCD, BAP, F0 RMSE/corr, V/UV, duration RMSE -> eval/        (conf/eval.yaml)
#   9  vocoder      train the neural vocoder picked by --vocoder (wavenet|wavernn;
#                   skipped for world and source_filter) on natural features
#                   -> models/<vocoder>                                       (conf/<vocoder>.yaml)
#  10  vocode       neural vocoding of natural (copy) and generated features of the
#                   eval split, with the same metrics -> synth/, eval/          (conf/<vocoder>.yaml)
#  11  report       metrics table + eval/report.html (audio players, plots)    (conf/report.yaml)
#
# Model names come from the name: keys of conf/duration.yaml and conf/acoustic*.yaml.
# --gpu trains the larger models of conf/duration_gpu.yaml and conf/acoustic*_gpu.yaml
# instead (names end in _gpu; without --gpu the *_gpu.yaml files are left out).
# --vocoder world (default) keeps the recipe within ~30 min on a 2-core CPU; wavenet
# or wavernn add their training. For the full-size vocoders on a GPU use e.g.
# --vocoder-config conf/wavenet_gpu.yaml.
#
# Every stage writes exp/<...>/log/<stage>.<time>.log as well as the terminal. Every stage
# skips outputs that exist (a rerun resumes); --force redoes them.
#
# Cluster: --cmd "srun -N1 -n1" --nj 8 runs each per-utterance stage (features, linguistic,
# synth) as 8 shard jobs (sps ... --shard K/8) through the given prefix and waits for all
# (ESPnet/Kaldi style; any scheduler's blocking submit command works).
#
# Overrides: '<conf>.<key>=<value>' goes to the stage(s) reading conf/<conf>.yaml, e.g.
#   ./run.sh --stage 0 --stop-stage 3 prepare.corpus.path=/data/arctic_slt features.f0_method=dio
set -euo pipefail

recipe_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$recipe_dir/../.." && pwd)
conf=$recipe_dir/conf

stage=0
stop_stage=100
exp_dir=$root/exp/slt_festival
jobs=2
force=0
cmd=
nj=1
vocoder=world
vocoder_config=
gpu=0
overrides=()

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
        --exp-dir|--exp_dir) exp_dir=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --force) force=1; shift ;;
        --cmd) cmd=$2; shift 2 ;;
        --nj) nj=$2; shift 2 ;;
        --vocoder) vocoder=$2; shift 2 ;;
        --vocoder-config|--vocoder_config) vocoder_config=$2; shift 2 ;;
        --gpu) gpu=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
        *=*) overrides+=("$1"); shift ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$nj" in ''|*[!0-9]*|0) echo "run.sh: --nj must be a positive integer, got '$nj'" >&2; exit 2 ;; esac

cd "$root"
command -v sps >/dev/null || { echo "run.sh: the 'sps' command is not installed (pip install -e .)" >&2; exit 1; }
mkdir -p "$exp_dir/log"

duration_conf=$conf/duration.yaml
if [ "$gpu" = 1 ]; then duration_conf=$conf/duration_gpu.yaml; fi
# conf_name <file>: the name: key of a model config
conf_name() { sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1; }
# model_confs: the acoustic model configs of this run (the *_gpu.yaml ones with --gpu, else the others)
model_confs() {
    local f
    for f in "$conf"/acoustic*.yaml; do
        case "$f" in *_gpu.yaml) [ "${gpu:-0}" = 1 ] && echo "$f" ;; *) [ "${gpu:-0}" = 0 ] && echo "$f" ;; esac
    done
    return 0
}
# conf_type <file>: the model type (dnn | lstm) of an acoustic config, or of the model it starts from
conf_type() {
    local t init
    t=$(sed -n '/^model:/,/^[^[:space:]]/s/^[[:space:]]*type:[[:space:]]*\([a-z]*\).*/\1/p' "$1" | head -n 1)
    if [ -z "$t" ]; then
        init=$(sed -n 's/^init_from:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1)
        for f in $(model_confs); do
            if [ -n "$init" ] && [ "$f" != "$1" ] && [ "$(conf_name "$f")" = "$init" ]; then t=$(conf_type "$f"); fi
        done
    fi
    echo "${t:-dnn}"
}
# acoustic configs of the given model types, MSE models before the MGE models that start from them
acoustic_confs() {
    local f
    for f in $(model_confs); do
        if [[ " $* " == *" $(conf_type "$f") "* ]] && ! grep -q '^init_from:[[:space:]]*[^[:space:]n#]' "$f"; then echo "$f"; fi
    done
    for f in $(model_confs); do
        if [[ " $* " == *" $(conf_type "$f") "* ]] && grep -q '^init_from:[[:space:]]*[^[:space:]n#]' "$f"; then echo "$f"; fi
    done
}
acoustic_models=$(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name "$f"; done)
duration_model=$(conf_name "$duration_conf")
tts_model=$(for m in $acoustic_models; do :; done; echo "${m:-}")   # the last one: full TTS with predicted durations

# sps_stage <stage-name> <conf-file-or-name> [extra args...]: run one 'sps' subcommand with the
# conf file and the overrides addressed to it, logged to log/<stage>.<time>.log; with --cmd,
# a per-utterance stage runs as --nj shard jobs through the prefix.
sps_stage() {
    local name=$1 cfg=$2; shift 2
    local key args=() file=$conf/$cfg.yaml
    case "$cfg" in */*) file=$cfg ;; esac
    key=$(basename "$file" .yaml)
    for o in "${overrides[@]+"${overrides[@]}"}"; do
        case "$o" in "$key".*) args+=("${o#"$key".}") ;; esac
    done
    if [ "$force" = 1 ]; then args+=(--force); fi
    local log
    log=$exp_dir/log/$name.$(date +%Y%m%d-%H%M%S).$$.log
    echo "=== sps $name --config $file $* ${args[*]+"${args[*]}"}  (log: $log)"
    local status=0
    case "$name" in features|linguistic|synth) local per_utt=1 ;; *) local per_utt=0 ;; esac
    if [ -n "$cmd" ] && [ "$per_utt" = 1 ]; then
        local k pids=()
        for k in $(seq 1 "$nj"); do
            # shellcheck disable=SC2086 # the prefix is a command line of its own
            $cmd sps "$name" --exp-dir "$exp_dir" --config "$file" --jobs 1 --shard "$k/$nj" "$@" \
                "${args[@]+"${args[@]}"}" > "${log%.log}.$k.log" 2>&1 &
            pids+=($!)
        done
        for k in "${!pids[@]}"; do
            wait "${pids[$k]}" || { status=$?; echo "run.sh: sps $name shard $((k + 1))/$nj failed; see ${log%.log}.$((k + 1)).log" >&2; }
        done
    else
        sps "$name" --exp-dir "$exp_dir" --config "$file" --jobs "$jobs" "$@" "${args[@]+"${args[@]}"}" \
            2>&1 | tee "$log" || status=$?
    fi
    if [ "$status" != 0 ]; then
        echo "run.sh: stage 'sps $name' failed (exit $status); see $log and the reports under $exp_dir" >&2
        exit "$status"
    fi
}

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if run_stage 0; then sps_stage prepare prepare; fi
if run_stage 1; then sps_stage features features; fi
if run_stage 2; then sps_stage linguistic linguistic; fi
if run_stage 3; then sps_stage stats stats; fi
if run_stage 4; then sps_stage train "$duration_conf"; fi
if run_stage 5; then for f in $(acoustic_confs dnn); do sps_stage train "$f"; done; fi
if run_stage 6; then for f in $(acoustic_confs conv lstm); do sps_stage train "$f"; done; fi
if run_stage 7; then
    sps_stage synth synth copy_synthesis=true
    for m in $acoustic_models; do sps_stage synth synth acoustic_model="$m" duration_model="$duration_model"; done
    if [ -n "$tts_model" ]; then
        sps_stage synth synth durations=predicted acoustic_model="$tts_model" duration_model="$duration_model"
    fi
fi
if run_stage 8; then sps_stage eval eval duration_model="$duration_model"; fi

case "$vocoder" in
    world) ;;
    wavenet|wavernn|source_filter) vocoder_config=${vocoder_config:-$conf/$vocoder.yaml} ;;
    *) echo "run.sh: --vocoder must be world, wavenet, wavernn or source_filter, got '$vocoder'" >&2; exit 2 ;;
esac
if [ "$vocoder" != world ]; then
    # one thread per process: small recurrent steps stall with several OpenMP threads
    # (the classical source_filter vocoder has nothing to train)
    if run_stage 9 && [ "$vocoder" != source_filter ]; then OMP_NUM_THREADS=1 sps_stage train-vocoder "$vocoder_config"; fi
    if run_stage 10; then sps_stage vocode "$vocoder_config"; fi
fi
if run_stage 11; then
    sps_stage eval eval duration_model="$duration_model"
    sps_stage report report
fi
