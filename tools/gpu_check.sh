#!/usr/bin/env bash
# One prepared device check (see tools/gpu_check.py): every CUDA path, its speed and its
# agreement with the CPU, in at most ~8 minutes; one markdown table on stdout and in
# $OUT/gpu.md.
#   bash tools/gpu_check.sh            # on the GPU machine
#   bash tools/gpu_check.sh --dry-run  # anywhere: same code paths, tiny sizes, CPU (Triton interpreted)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export SPS_CACHE=${SPS_CACHE:-$PWD/.sps-cache}
for arg in "$@"; do
    if [ "$arg" = --dry-run ]; then export TRITON_INTERPRET=1; fi
done
exec python tools/gpu_check.py "$@"
