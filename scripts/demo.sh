#!/usr/bin/env bash
# README command 1: set up a fresh machine, then run the recommended method, the strongest
# tuned baseline and FedAvg on the same skewed cross-device federation (configs/compare.toml)
# and print them side by side. In reproducible mode (FEDZDA_REPRODUCIBLE=1, the default
# here; FEDZDA_REPRODUCIBLE=0 for this machine's fastest kernels) the accuracies are the
# README's on any x86-64 CPU with AVX2.
#   bash scripts/demo.sh [configs/x.toml] [--methods "fedavg; fedlc fedlc.tau=16"] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FEDZDA_REPRODUCIBLE="${FEDZDA_REPRODUCIBLE:-1}"
exec .venv/bin/python -m scripts.compare "$@"
