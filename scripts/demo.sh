#!/usr/bin/env bash
# The main job: an active-learning run (MGE + k-means++ diversity) on a generated
# UCMerced-layout archive, with an embedded local Ray (Ray Train + Ray Data + driver actor),
# and random sampling on the same archive with the same seed and initial labeled set
# (--compare random): both curves in one plot, and the difference of the areas under
# the micro- and macro-F1 curves printed at the end. A few minutes on 2 CPU cores.
# Extra flags go to jobs/al_ucmerced.py (e.g. --strategy ll+clustering, --trials 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/python jobs/al_ucmerced.py --preset demo --state-dir runs/demo --compare random "$@"
