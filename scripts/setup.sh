#!/usr/bin/env bash
# Create .venv at the repository root and install raydal with everything it needs.
# Idempotent: a second run only checks that the install matches pyproject.toml
# (a stamp of its hash in .venv) and that the main packages import; it installs
# again only when pyproject.toml changed or a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.raydal-pyproject.sha256
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] \
   || ! .venv/bin/python -c "import importlib.metadata as m; [m.version(d) for d in ('raydal', 'torch', 'torchvision', 'ray', 'faiss-cpu', 'rasterio', 'pyarrow', 'pytest', 'hypothesis', 'moto')]" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch 2.14.1 + torchvision 0.29.1 are the pair that installs together here (see README);
  # pip reuses what the venv already has and fetches only what is missing or changed.
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$WANT" > "$STAMP"
fi
