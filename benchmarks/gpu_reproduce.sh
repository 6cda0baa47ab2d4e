#!/usr/bin/env bash
# The original's table on one GPU: `spangpt reproduce --recipe paper` (no pretraining, vanilla, RoPE, London),
# dev and test predictions for every run, report.md + losses.png + accuracy.png, timed.
# Usage: benchmarks/gpu_reproduce.sh [DATA] [OUT] [SEEDS...]   (finished runs in OUT are reused, so seeds can be
# added in later calls: benchmarks/gpu_reproduce.sh DATA OUT 1 2)
# RECIPE=best JOBS=4 benchmarks/gpu_reproduce.sh DATA OUT 0 1 2: another recipe, JOBS runs at once on the
# one GPU (this model is far too small to fill an H200 alone; each run then gets its share of the CPU threads).
# OPTS="--compile false --row-multiple 0 --workers 1" passes options to reproduce (here: the eager step, which
# the H200 rows of the docs timed).
set -euo pipefail
DATA=${1:-data/cs224n}
OUT=${2:-${OUT:-runs/gpu-paper}}
SEEDS=("${@:3}")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0)
export PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
nvidia-smi -L || true
mkdir -p "$OUT"
SECONDS=0
$PY -m spangpt reproduce --data "$DATA" --out "$OUT" --recipe "${RECIPE:-paper}" --jobs "${JOBS:-1}" \
    --seeds "${SEEDS[@]}" ${OPTS:-} 2> "$OUT/reproduce.log"
echo "reproduce wall seconds: $SECONDS"
[ "${RECIPE:-paper}" = paper ] || exit 0  # the original's logged curve belongs to `paper` only
$PY benchmarks/loss_curve.py --metrics "$OUT/vanilla/seed${SEEDS[0]}/pretrain.metrics.jsonl" | tail -20
