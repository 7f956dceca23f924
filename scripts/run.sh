#!/usr/bin/env bash
# Run the app through Flower's simulation engine (`flwr run .`) in this project's .venv.
#   bash scripts/run.sh [extra flwr run args, e.g. -c 'experiment="configs/fmnist_c1.yaml"']
# NUM_SUPERNODES (default 10) must equal the experiment's partition.num_partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# A project-local Flower home: its own local SuperLink, apps and config.
export FLWR_HOME="${FLWR_HOME:-$PWD/.flwr}"
# Run the apps in this environment: no `uv sync` of app dependencies at run time.
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
# Stop the local SuperLink this script started when done (it would otherwise linger).
trap '.venv/bin/python -m scripts.proctree "flower-superlink.*${FLWR_HOME}/" || true' EXIT
flwr run . --stream --federation-config "num-supernodes=${NUM_SUPERNODES:-10}" "$@"
