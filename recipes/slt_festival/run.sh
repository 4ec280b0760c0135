#!/usr/bin/env bash
# sps recipe: the shipped Festival SLT corpus (or any wav/ + lab/ corpus) -> a voice.
#
#   ./run.sh [--stage N] [--stop-stage M] [--exp-dir DIR] [--jobs N] [<conf>.<key>=<value> ...]
#
# Stages (all outputs under the experiment directory, default exp/slt_festival):
#   0  prepare      corpus -> data/{train,dev,eval}.list, wav.scp, lab.scp     (conf/prepare.yaml)
#   1  features     WORLD/SPTK acoustic features, log-mel, waveform -> dump/   (conf/features.yaml)
#   2  linguistic   HTS labels + question file -> linguistic/duration features (conf/linguistic.yaml)
#   3  stats        normalisation statistics on the train split -> stats/      (conf/features.yaml)
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
overrides=()

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
        --exp-dir|--exp_dir) exp_dir=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
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
    local args=()
    for o in "${overrides[@]+"${overrides[@]}"}"; do
        case "$o" in "$cfg".*) args+=("${o#"$cfg".}") ;; esac
    done
    [ "$force" = 1 ] && args+=(--force)
    echo "=== sps $name --config conf/$cfg.yaml $* ${args[*]+"${args[*]}"}"
    sps "$name" --exp-dir "$exp_dir" --config "$conf/$cfg.yaml" --jobs "$jobs" "$@" "${args[@]+"${args[@]}"}"
}

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if run_stage 0; then sps_stage prepare prepare; fi
if run_stage 1; then sps_stage features features; fi
if run_stage 2; then sps_stage linguistic linguistic; fi
if run_stage 3; then sps_stage stats features; fi
