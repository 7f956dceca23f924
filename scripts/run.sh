#!/usr/bin/env bash
# Run the app through Flower's simulation engine (`flwr run .`) in this project's .venv.
#   bash scripts/run.sh [--dry-run] [configs/x.toml] [dotted.key=value ...]
# The file's keys, then the overrides (which win), go to Flower as one --run-config file.
# NUM_SUPERNODES (default 10) is the number of clients; nothing else needs to know it.
# --dry-run checks the experiment, prints the `flwr run` command it would run and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m scripts.simulate --supernodes "${NUM_SUPERNODES:-10}" "$@"
