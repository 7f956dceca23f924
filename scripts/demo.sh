#!/usr/bin/env bash
# README command 1: set up a fresh machine and run the default federation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/run.sh "$@"
