#!/usr/bin/env bash
# The prepared GPU check (see scripts/gpu_check.py): throughput on CUDA vs CPU and short
# FedAvg/ZDA runs on the GPU through the core round loop, in under 8 minutes.
#   here, once:          .venv/bin/python -m scripts.gpu_check --prepare
#   on the GPU machine:  bash scripts/gpu_check.sh   (carry benchmarks/results/work/gpu)
#   a dry run anywhere:  bash scripts/gpu_check.sh --dry-run --out /tmp/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
timeout 470 "$PY" -m scripts.gpu_check "$@"
