#!/usr/bin/env bash
# The shipped voice data/pretrained/slt_festival.voice.pt, from the shipped corpus:
#
#   tools/make_pretrained.sh [--exp-dir DIR] [--out FILE] [--neural wavenet|none] [run.sh options ...]
#
#   --exp-dir   experiment directory (default exp/pretrained)
#   --out       the voice file (default data/pretrained/slt_festival.voice.pt)
#   --neural    the neural vocoder to train and pack (default wavenet, the LPC WaveNet; none:
#               WORLD and the source-filter vocoder only)
#
# 1. the recipe, every stage (recipes/slt_festival/run.sh: features, duration and acoustic
#    models, synthesis, eval; with --neural wavenet also the LPC WaveNet's training, vocoding
#    and scores): about 20 minutes on one core, + 25 for the WaveNet;
# 2. the classical source-filter vocoder vocoded and scored too (stage 10, nothing to train),
#    and the eval stage again, so eval/best.json has every vocoder's score;
# 3. sps pack: the duration and acoustic models the eval stage scored best (eval/best.json:
#    the recipe's conv + MGE model), the vocoders, and their eval scores; WORLD the default vocoder.
#
# Every stage resumes: rerunning after an interruption continues where it stopped. Other
# arguments go to run.sh (e.g. --jobs 1, or <conf>.<key>=<value> overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exp=$root/exp/pretrained
out=$root/data/pretrained/slt_festival.voice.pt
neural=wavenet
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --exp-dir) exp=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --neural) neural=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
case "$neural" in wavenet|wavernn|none) ;; *) echo "make_pretrained.sh: --neural wavenet|wavernn|none, got '$neural'" >&2; exit 2 ;; esac
cd "$root"
conf=recipes/slt_festival/conf
duration_model=$(sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' $conf/duration.yaml | head -n 1)
if [ "$neural" = none ]; then
    ./recipes/slt_festival/run.sh --exp-dir "$exp" --stop-stage 8 "${args[@]+"${args[@]}"}"
    vocoders="[$conf/source_filter.yaml]"
else
    ./recipes/slt_festival/run.sh --exp-dir "$exp" --vocoder "$neural" --stop-stage 10 "${args[@]+"${args[@]}"}"
    vocoders="[$neural, $conf/source_filter.yaml]"
fi
./recipes/slt_festival/run.sh --exp-dir "$exp" --vocoder source_filter --stage 10 --stop-stage 10 "${args[@]+"${args[@]}"}"
sps eval --exp-dir "$exp" --config $conf/eval.yaml duration_model="$duration_model"
# default vocoder WORLD: the order-32 source-filter vocoder ties it on copy-synthesis MCD (2.86
# against 2.87 dB, docs/vocoders.md) but its excitation is a bare pulse train, which sounds buzzy
sps pack --exp-dir "$exp" --out "$out" name=slt_festival "vocoders=$vocoders" default_vocoder=world \
    "description=the sps recipe voice of the shipped corpus data/slt_festival, made by tools/make_pretrained.sh"
sps speak --voice "$out" --info
