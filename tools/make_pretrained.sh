#!/usr/bin/env bash
# The shipped voice data/pretrained/slt_festival.voice.pt, from the shipped corpus:
#
#   tools/make_pretrained.sh [EXP_DIR] [OUT]     (defaults exp/pretrained, data/pretrained/slt_festival.voice.pt)
#
# 1. the recipe, every stage, with the LPC WaveNet (recipes/slt_festival/run.sh --vocoder wavenet:
#    features, duration and acoustic models, synthesis, eval, the vocoder's training and its
#    vocoding and scores: about 20 + 25 minutes on one core);
# 2. the classical source-filter vocoder vocoded and scored as well (stages 10-11, nothing to train);
# 3. sps pack: the duration model and the acoustic model the eval stage scored best
#    (eval/best.json: the conv + MGE model of the recipe), the LPC WaveNet and the
#    source-filter vocoder, with their eval scores.
#
# Every stage resumes: rerunning after an interruption continues where it stopped. Extra
# arguments go to run.sh (e.g. --jobs 1, or <conf>.<key>=<value> overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exp=${1:-$root/exp/pretrained}
out=${2:-$root/data/pretrained/slt_festival.voice.pt}
shift $(( $# < 2 ? $# : 2 ))
cd "$root"
./recipes/slt_festival/run.sh --exp-dir "$exp" --vocoder wavenet "$@"
./recipes/slt_festival/run.sh --exp-dir "$exp" --vocoder source_filter --stage 10 --stop-stage 11 "$@"
sps pack --exp-dir "$exp" --out "$out" name=slt_festival \
    "vocoders=[wavenet, $root/recipes/slt_festival/conf/source_filter.yaml]" \
    "description=the sps recipe voice of the shipped corpus data/slt_festival, made by tools/make_pretrained.sh"
sps speak --voice "$out" --info
