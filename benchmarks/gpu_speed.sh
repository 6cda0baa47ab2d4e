#!/usr/bin/env bash
# A GPU's speed on this model, and its CUDA paths checked: the eager step (--compile false --row-multiple 0
# --workers 1) against the fast path, which is what a plain command does on CUDA (device.fast_path: the
# model compiled, each batch shape one CUDA graph, rows padded to a multiple of 32, batch workers), one process
# alone on the GPU.
#   1. the CUDA check: a run killed with SIGKILL and resumed ends with the uninterrupted run's weights (the
#      CUDA RNG restore path; tests/test_resume.py with SPANGPT_TEST_DEVICE=cuda, the device's defaults, which
#      do not compile a run that short; again at the end with SPANGPT_TEST_COMPILE=1, compiled);
#   2. for each recipe (`best`, `paper`), vanilla pretraining: EAGER_STEPS eager steps, then the whole
#      recipe on the fast path;
#   3. per run: steps/s, real tokens/s, the whole pretraining's time (eager: extrapolated from its steps/s),
#      and the loss at EAGER_STEPS on both paths side by side (the fast path must not change the curve; with
#      dropout, as in `paper`, compiled masks are other draws, so equal within the noise, not exactly);
#   4. `spangpt reproduce --recipe best --seeds 0 1 2 --jobs 3` on the fast path, wall time, and the error
#      table of its models (benchmarks/error_table.py: why each wrong dev answer is wrong).
# Usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]   (OUT's runs are trained again on every call;
# EAGER_STEPS default 3000, sized for one 10-minute call when
# the fast path meets its goal: ~8 min with the eager best at ~12 ms a step)
# RECIPES, TABLE_RECIPE, SEEDS and FAST override the recipes, the table's recipe and seeds, and the fast
# path's options (default: none, the device's), LOG_INTERVAL the steps between metrics lines (default 100);
# CHECKS=0 skips the resume checks. A CPU smoke run of the plumbing:
# RECIPES=tiny.toml TABLE_RECIPE=tiny.toml SEEDS=0 FAST="--row-multiple 8 --workers 2" LOG_INTERVAL=5 ... 10
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]}
OUT=${2:?usage: benchmarks/gpu_speed.sh DATA OUT [EAGER_STEPS]}
STEPS=${3:-3000}
read -r -a RECIPE_LIST <<< "${RECIPES:-best paper}"
read -r -a FAST_OPTS <<< "${FAST:-}"
EAGER_OPTS=(--compile false --row-multiple 0 --workers 1)
read -r -a SEED_LIST <<< "${SEEDS:-0 1 2}"
export PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi: not a CUDA machine)"

resume_check() {  # NAME [ENV=VALUE...]: tests/test_resume.py's kill -9 test on the GPU
    local name=$1
    shift
    if [ "${CHECKS:-1}" = 0 ]; then
        return
    elif ! $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
        echo "$name: skipped (no CUDA device)"
    elif ! $PY -c "import pytest" 2>/dev/null; then
        echo "$name: skipped (pytest is not installed)"
    else
        SECONDS=0
        if env SPANGPT_TEST_DEVICE=cuda "$@" $PY -m pytest -q -x -p no:cacheprovider tests/test_resume.py \
                -k sigkill_at_a_random_step > "$OUT/$name.log" 2>&1; then
            echo "$name: passed in $SECONDS s"
        else
            echo "$name: FAILED ($OUT/$name.log):"
            tail -30 "$OUT/$name.log"
        fi
    fi
}

resume_check "CUDA resume check"

pretrain() {  # NAME RECIPE [OPTIONS...]: one vanilla pretraining
    local name=$1 recipe=$2
    shift 2
    SECONDS=0
    $PY -m spangpt pretrain --variant vanilla --data "$DATA" --recipe "$recipe" --out "$OUT/$name.safetensors" --force \
        --log-interval "${LOG_INTERVAL:-100}" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: $SECONDS s wall (start-up and compilation included)"
    grep -h "torch.compile failed" "$OUT/$name.log" || true  # a fast row that fell back to the eager step
}

names=()
for recipe in "${RECIPE_LIST[@]}"; do
    name=$(basename "$recipe" .toml)
    names+=("$name")
    pretrain "$name-eager" "$recipe" --max-steps "$STEPS" "${EAGER_OPTS[@]}"
    pretrain "$name-fast" "$recipe" ${FAST_OPTS[@]+"${FAST_OPTS[@]}"}
done

$PY - "$OUT" "$STEPS" "${names[@]}" <<'PY'
import sys
from pathlib import Path
from spangpt.train import read_metrics
out, steps, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
print(f"{'run':<16} {'steps/s':>8} {'real tok/s':>11} {'whole pretraining':>22} {'loss at step ' + str(steps):>18}")
for name in names:
    total = read_metrics(out / f"{name}-fast.metrics.jsonl")[-1]["step"]  # the whole recipe's steps
    for path in ("eager", "fast"):
        recs = read_metrics(out / f"{name}-{path}.metrics.jsonl")
        a, b = recs[len(recs) // 2], recs[-1]  # the second half: past warm-up and compilation
        if a is b:  # one metrics line: the whole run
            rate = b["step"] / max(1e-9, b["elapsed_s"])
        else:
            rate = (b["step"] - a["step"]) / max(1e-9, b["elapsed_s"] - a["elapsed_s"])
        whole = f"{b['elapsed_s']:.1f} s" if path == "fast" else f"~{total / rate:.0f} s (from steps/s)"
        at = next((r["loss"] for r in recs if r["step"] == steps), "-")
        print(f"{name + '-' + path:<16} {rate:>8.1f} {b['real_tok_per_s']:>11.0f} {whole:>22} {at:>18}")
PY

SECONDS=0
$PY -m spangpt reproduce --data "$DATA" --out "$OUT/table" --recipe "${TABLE_RECIPE:-best}" \
    --seeds "${SEED_LIST[@]}" --jobs "${#SEED_LIST[@]}" ${FAST_OPTS[@]+"${FAST_OPTS[@]}"} > "$OUT/table.log" 2>&1
echo "reproduce --recipe ${TABLE_RECIPE:-best} --seeds ${SEED_LIST[*]} on the fast path: $SECONDS s wall"
tail -12 "$OUT/table/report.md"
grep -h "torch.compile failed" "$OUT"/table.log || true

# why each wrong dev answer is wrong, for the table's models (benchmarks/error_table.py; on the CPU, ~a minute)
$PY benchmarks/error_table.py "$DATA" "$OUT/table" > "$OUT/error_table.md" 2>&1 || true
cat "$OUT/error_table.md"

# last, as it compiles in each of its three processes: the same check with the step compiled (CUDA graphs)
resume_check "CUDA resume check, compiled" SPANGPT_TEST_COMPILE=1
