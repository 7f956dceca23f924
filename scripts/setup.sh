#!/usr/bin/env bash
# Create .venv and make sure Fashion-MNIST is on disk. Idempotent.
# Default: torch 2.14.1 + torchvision 0.29.1, the pair this machine's local files hold (the
# CUDA 13 build; it runs on CPU too). FEDZDA_TORCH=cpu: the CPU-only torch 2.13.0 wheel and no
# torchvision (none imports beside it): Fashion-MNIST, IDX and npz data, the cnn and resnet
# models, no augmentation; everything else names torchvision as the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/pip install -q --disable-pip-version-check)
if [ "${FEDZDA_TORCH:-}" = cpu ]; then
  "${PIP[@]}" torch==2.13.0
  .venv/bin/pip uninstall -q -y torchvision 2>/dev/null || true
  # every requirement in pyproject.toml but torchvision, then the project without deps
  .venv/bin/python scripts/deps.py --extra dev --without torchvision > .venv/cpu-requirements.txt
  "${PIP[@]}" -r .venv/cpu-requirements.txt
  "${PIP[@]}" --no-deps -e .
else
  # the pair first, pinned: pip then takes the local files instead of fetching another build
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
  "${PIP[@]}" -e ".[dev]"
fi
echo "setup: environment ready in .venv"
