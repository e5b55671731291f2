#!/usr/bin/env bash
# The test suite (fast tests; add `-m slow` for full-size DenseNet121 and long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0  # Ray's token auth stays on: tests/conftest.py gives the suite its own token
exec .venv/bin/python -m pytest -q -rs --timeout=900 "$@"
