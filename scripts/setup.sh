#!/usr/bin/env bash
# Create .venv at the repository root and install raydal with everything it needs.
# Idempotent: a second run only checks that the install is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import raydal, torch, torchvision, ray.train, ray.data, ray.tune, faiss, rasterio, pytest, hypothesis" 2>/dev/null \
   || ! .venv/bin/python -m pip show -q raydal >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch 2.14.1 + torchvision 0.29.1 are the pair that installs together here (see README).
  .venv/bin/python -m pip install -q -e ".[test]"
fi
