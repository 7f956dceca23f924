#!/usr/bin/env bash
# Create docker/secrets: a CA, the SuperLink certificate (valid for "superlink" and
# localhost) and 3 SuperNode key pairs. Needs the project's .venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m scripts.certs docker/secrets --names superlink,localhost,127.0.0.1 \
  --supernodes 3
echo "secrets in docker/secrets"
