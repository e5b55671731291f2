#!/usr/bin/env bash
# One-call GPU check of the whole AL loop, in process (no Ray/FAISS/rasterio on the GPU box):
# DenseNet121 on prepared TreeSatAI-layout shards, three strategies, then a report.
# Prepare the shards here first (they travel with the call):
#   raydal synth treesatai .gpu_data/archive --n 1200 --size 96 && \
#   raydal prepare treesatai .gpu_data/archive .gpu_data/shards --size 96
# Usage on the GPU machine: OUT=results bash benchmarks/gpu_al_session.sh
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_al_results}
mkdir -p "$OUT"
for s in ll+clustering mge+clustering random; do
  python3 -m raydal.cli run treesatai --executor local --shards-dir .gpu_data/shards \
    --state-dir "/tmp/gpu_al/$s" --strategy "$s" --backbone densenet121 --b 50 --m 4 \
    --initial-labeled 100 --iterations 4 --epochs 15 --batch-size 32 --lr 0.01 --cold-start \
    --score-batch-size 256 --no-report 2>&1 | grep -v Warning
  cp "/tmp/gpu_al/$s/state.json" "$OUT/state-${s/+/_}.json"
done
python3 -m raydal.cli report /tmp/gpu_al/* --out "$OUT/report" | tail -30
cp "$OUT/report/report.md" "$OUT/report/f1_curves.png" "$OUT/" 2>/dev/null
rm -rf "$OUT/report"
