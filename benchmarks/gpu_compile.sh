#!/usr/bin/env bash
# Does torch.compile pay on this GPU? The `paper` pretraining for STEPS steps with --compile false, then
# true: wall time (compilation included) and the trainer's last real tokens/s for each.
# Usage: benchmarks/gpu_compile.sh [DATA] [OUT] [STEPS]   (defaults: data/cs224n runs/gpu-compile 1200)
set -euo pipefail
DATA=${1:-data/cs224n}
OUT=${2:-runs/gpu-compile}
STEPS=${3:-1200}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
for c in false true; do
    SECONDS=0
    $PY -m spangpt pretrain --variant vanilla --data "$DATA" --out "$OUT/compile-$c.safetensors" --recipe paper \
        --max-steps "$STEPS" --compile "$c" --log-interval 200 > /dev/null 2> "$OUT/compile-$c.log"
    echo "compile=$c: $STEPS steps in $SECONDS s wall (start-up and compilation included); last metrics line:"
    tail -1 "$OUT/compile-$c.metrics.jsonl"
done
