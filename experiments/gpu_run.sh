#!/usr/bin/env bash
# The GPU suite in one command, under 8 minutes of one GPU (experiments/gpu_suite.py says what
# it runs): T5 (1e8 variables to 1e-4), the ladder on the GPU and on the CPU, float32 against
# float64, sharding when there are several GPUs. Results: OUT/gpu_run.json, OUT/gpu/ and OUT/cpu/.
#
#   bash experiments/gpu_run.sh [OUT] [--force] [--smoke]
#
# OUT: the first argument, else $OUT, else experiments/results/gpu_run. Needs JAX with its GPU
# plugin (pip install -e ".[gpu]", or an image that has it): nothing is installed here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=()
if [[ $# -gt 0 && $1 != --* ]]; then
    args+=(--out "$1")
    shift
fi
cd "$root"
exec env PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" \
    -m experiments.gpu_suite "${args[@]}" "$@"
