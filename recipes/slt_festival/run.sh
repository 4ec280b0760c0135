#!/usr/bin/env bash
# sps recipe: the shipped Festival SLT corpus (or any wav/ + lab/ corpus) -> a voice.
#
#   ./run.sh [--stage N] [--stop-stage M] [--exp-dir DIR] [--nj N] [--jobs J] [--force]
#            [--ngpu G [--num-nodes M]] [--cmd-sh FILE] [--vocoder world|wavenet|wavernn|source_filter]
#            [--vocoder-config FILE] [--gpu] [--acoustic-models NAME,...] [<conf>.<key>=<value> ...]
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
#   9  vocoder      train the neural vocoder picked by --vocoder (wavenet|wavernn|..._plain;
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
# Vocoder names: --vocoder X reads conf/X.yaml, trains models/X and is packed as X; the
# config's 'vocoder:' key is the class (sps.vocoders.VOCODER_NAMES, the one mapping):
#   wavenet -> wavenet_lpc, wavernn -> wavernn_lpc (LPC excitation; the recipe's),
#   wavenet_plain -> wavenet, wavernn_plain -> wavernn (the seed models),
#   source_filter -> source_filter (classical; nothing to train); world: no model.
#
# Every stage writes its log(s) under exp/<...>/log/ (the stages run here also to the
# terminal). Every stage skips outputs that exist (a rerun resumes); --force redoes them.
#
# Jobs go through the launchers of cmd.sh (train_cmd, decode_cmd, cuda_cmd: local
# processes by default; SLURM, or a lab's own queue.pl/slurm.pl, there or in --cmd-sh FILE):
# --nj 8 runs each per-utterance stage (features, linguistic, synth) as 8 shard jobs
# of --jobs worker processes each; --ngpu 4 [--num-nodes 2] trains with torchrun, 4 GPUs
# per node (docs/cluster.md).
#
# Overrides: '<conf>.<key>=<value>' goes to the stage(s) reading conf/<conf>.yaml, e.g.
#   ./run.sh --stage 0 --stop-stage 3 prepare.corpus.path=/data/arctic_slt features.f0_method=dio
#
# Stages 1-11 are recipes/common/pipeline.sh, shared with recipes/own_voice.
set -euo pipefail

recipe_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$recipe_dir/../.." && pwd)
conf_dirs=("$recipe_dir/conf")
exp_dir=$root/exp/slt_festival
# shellcheck source=../common/pipeline.sh
. "$root/recipes/common/pipeline.sh"
pipeline_defaults

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
        *) pipeline_option "$@"
           if [ "$consumed" = 0 ]; then echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2; fi
           shift "$consumed" ;;
    esac
done
pipeline_setup

if run_stage 0; then sps_stage prepare prepare; fi
run_pipeline 1
