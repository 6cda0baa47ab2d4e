#!/usr/bin/env bash
# A GPU's speed on this model: the eager step against the fast path (4 batch workers: --workers 4; static
# shapes: --row-multiple 8; each shape one CUDA graph: --compile true --compile-mode reduce-overhead), one
# process alone on the GPU.
#   1. `best` pretraining (vanilla): EAGER_STEPS eager steps, then the whole recipe on the fast path;
#   2. `paper` pretraining (vanilla): the same;
#   3. per run: steps/s, real tokens/s, the whole pretraining's time (eager: extrapolated from its steps/s),
#      and the loss at EAGER_STEPS on both paths side by side (the fast path must not change the curve);
#   4. `spangpt reproduce --recipe best --seeds 0 1 2 --jobs 3` on the fast path, wall time.
# Usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]   (default 3000; sized for one 10-minute call when
# the fast path meets its goal: ~8 min with the eager best at ~12 ms a step)
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]}
OUT=${2:?usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]}
STEPS=${3:-3000}
export PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
FAST=(--compile true --compile-mode reduce-overhead --row-multiple 8 --workers 4)
mkdir -p "$OUT"
nvidia-smi -L || true

pretrain() {  # NAME RECIPE [OPTIONS...]: one vanilla pretraining, its wall time in OUT/NAME.wall
    local name=$1 recipe=$2
    shift 2
    SECONDS=0
    $PY -m spangpt pretrain --variant vanilla --data "$DATA" --recipe "$recipe" --out "$OUT/$name.safetensors" \
        --log-interval 100 "$@" > "$OUT/$name.log" 2>&1
    echo "$SECONDS" > "$OUT/$name.wall"
    echo "$name: $SECONDS s wall (start-up and compilation included)"
}

for recipe in best paper; do
    pretrain "$recipe-eager" "$recipe" --max-steps "$STEPS"
    pretrain "$recipe-fast" "$recipe" "${FAST[@]}"
done

$PY - "$OUT" "$STEPS" <<'PY'
import sys
from pathlib import Path
from spangpt.train import read_metrics
out, steps = Path(sys.argv[1]), int(sys.argv[2])
print(f"{'run':<12} {'steps/s':>8} {'real tok/s':>11} {'whole pretraining':>22} {'loss at step ' + str(steps):>18}")
for recipe in ("best", "paper"):
    total = read_metrics(out / f"{recipe}-fast.metrics.jsonl")[-1]["step"]  # the whole recipe's steps
    for path in ("eager", "fast"):
        recs = read_metrics(out / f"{recipe}-{path}.metrics.jsonl")
        a, b = recs[len(recs) // 2], recs[-1]  # the second half: past warm-up and compilation
        rate = (b["step"] - a["step"]) / max(1e-9, b["elapsed_s"] - a["elapsed_s"])
        whole = f"{b['elapsed_s']:.1f} s" if path == "fast" else f"~{total / rate:.0f} s (from steps/s)"
        at = next((r["loss"] for r in recs if r["step"] == steps), "-")
        print(f"{recipe + '-' + path:<12} {rate:>8.1f} {b['real_tok_per_s']:>11.0f} {whole:>22} {at:>18}")
PY

SECONDS=0
$PY -m spangpt reproduce --data "$DATA" --out "$OUT/table" --recipe best --seeds 0 1 2 --jobs 3 "${FAST[@]}" \
    > "$OUT/table.log" 2>&1
echo "reproduce --recipe best --seeds 0 1 2 --jobs 3 on the fast path: $SECONDS s wall"
tail -12 "$OUT/table/report.md"
