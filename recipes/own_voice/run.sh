#!/usr/bin/env bash
# sps recipe: your own recordings + transcripts -> an evaluated voice (docs/own_data.md).
#
#   ./run.sh [--corpus DIR] [--stage N] [--stop-stage M] [--exp-dir DIR] [--jobs N] [--force]
#            [--nj N] [--ngpu G [--num-nodes M]] [--cmd-sh FILE] [--vocoder world|wavenet|wavernn|source_filter] [--vocoder-config FILE]
#            [--gpu] [--acoustic-models NAME,...] [<conf>.<key>=<value> ...]
#
# --corpus DIR   recordings + transcripts in any layout sps ingest reads: a folder of
#                <id>.wav/.flac with <id>.txt, an LJSpeech metadata.csv, a Kaldi wav.scp + text
#                (default: data/kal_festival, the kal diphone voice, made at stage -1)
# --exp-dir DIR  default exp/own_voice/<name of the corpus folder>
#
# Stages (all outputs under the experiment directory):
#  -1  corpus       only for the default corpus: make data/kal_festival with Festival
#                   (make_corpus.py --voice kal, about a minute) when it has no metadata.csv
#   0  ingest       recordings -> data/wav/ (mono, resampled with soxr, trimmed, levelled),
#                   wav.scp, text, splits                                     (conf/ingest.yaml)
#   1  align        transcripts -> Festival phones -> HMM forced alignment trained on the
#                   corpus -> aligned HTS labels, data/lab.scp                 (conf/align.yaml)
#                   (with --nj N > 1: its steps, the per-utterance ones as N shard jobs through $train_cmd)
#   2  features     WORLD/SPTK acoustic features, log-mel, waveform -> dump/   (features.yaml)
#   3  linguistic   HTS labels + question file -> linguistic/duration features (linguistic.yaml)
#   4  stats        normalisation statistics on the train split -> stats/      (stats.yaml)
#   5  duration     duration model -> models/<name>                            (duration.yaml)
#   6  acoustic DNN every acoustic*.yaml of a feed-forward model
#   7  acoustic seq every acoustic*.yaml of a convolutional or recurrent model (MSE, then MGE)
#   8  synth        WORLD copy synthesis, each acoustic model (natural durations) and full
#                   TTS on the eval split                                      (synth.yaml)
#   9  eval         MCD, BAP, F0 RMSE/corr, V/UV, duration RMSE -> eval/        (eval.yaml)
#  10  vocoder      train the neural vocoder of --vocoder (wavenet|wavernn)     (<vocoder>.yaml)
#  11  vocode       neural vocoding of natural and generated features
#  12  report       metrics table + eval/report.html                            (report.yaml)
#
# Stages 2-12 are recipes/common/pipeline.sh, the stages 1-11 of recipes/slt_festival. Configs
# come from conf/ here first, then from recipes/slt_festival/conf (a file here hides the one
# of the same name there). The own_voice default differs in one setting: features.f0_floor=60
# (the SLT voice's 80 Hz cuts off low male voices); override it like any other key.
#
# Options, launchers (cmd.sh) and overrides as in recipes/slt_festival/run.sh ('<conf>.<key>=<value>' goes
# to the stage(s) reading <conf>.yaml), e.g.
#   ./run.sh --corpus ~/LJSpeech-1.1 --stop-stage 1 ingest.trim=false align.jobs=2
set -euo pipefail

recipe_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$recipe_dir/../.." && pwd)
conf_dirs=("$recipe_dir/conf" "$root/recipes/slt_festival/conf")
# shellcheck source=../common/pipeline.sh
. "$root/recipes/common/pipeline.sh"
pipeline_defaults
stage=-1
default_corpus=$root/data/kal_festival
corpus=$default_corpus
exp_dir=
overrides=(features.f0_floor=60)

while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) corpus=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
        *) pipeline_option "$@"
           if [ "$consumed" = 0 ]; then echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2; fi
           shift "$consumed" ;;
    esac
done
corpus=$(cd "$(dirname "$corpus")" && pwd)/$(basename "$corpus") || { echo "run.sh: --corpus $corpus: no such folder" >&2; exit 2; }
exp_dir=${exp_dir:-$root/exp/own_voice/$(basename "$corpus")}
pipeline_setup

if run_stage -1 && [ "$corpus" = "$default_corpus" ] && [ ! -f "$corpus/metadata.csv" ]; then
    echo "=== making the kal diphone corpus in $corpus (Festival, festvox-kallpc16k)"
    python "$root/data/slt_festival/make_corpus.py" --voice kal --out "$corpus" --jobs "$jobs"
fi
if run_stage 0; then sps_stage ingest ingest corpus="$corpus"; fi
if run_stage 1; then
    if [ "$nj" = 1 ]; then
        sps_stage align align                     # all steps in one process, --jobs workers
    else                                          # Kaldi style: shard jobs through $train_cmd
        if [ "$force" = 1 ]; then rm -rf "$exp_dir/align"; fi
        sps_shards align align step=prepare
        sps_stage align align step=update         # the flat start
        while [ ! -e "$exp_dir/align/model.pt" ]; do
            sps_shards align align step=accumulate
            sps_stage align align step=update
        done
        sps_shards align align step=align
        sps_stage align align step=finish
    fi
fi
run_pipeline 2
