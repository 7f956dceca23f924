#!/usr/bin/env bash
# README command 1: set up a fresh machine, then run Fed-ZDA and FedAvg on the same skewed
# cross-device federation (configs/compare.toml) and print them side by side.
#   bash scripts/demo.sh [configs/x.toml] [--algorithms fedavg,zda] [dotted.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m scripts.compare "$@"
