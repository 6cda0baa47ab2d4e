#!/usr/bin/env bash
# spangpt's entry points: setup, tests, the offline demo, and the original assignment's run.sh targets.
#   ./run.sh setup                     set up .venv (the package, its extras, torch)
#   ./run.sh test                      set up .venv and run the test suite
#   ./run.sh demo                      set up .venv and run the whole experiment on a synthetic corpus
#   ./run.sh vanilla_pretrain [ARGS]   original targets; extra ARGS go to spangpt (e.g. --max-steps 100)
# Environment: DATA (default ../shared/data/cs224n if present, else data/cs224n), OUT (runs/original),
# RECIPE (paper), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ -z "${DATA:-}" ]; then
  if [ -f ../shared/data/cs224n/wiki.txt ]; then DATA=../shared/data/cs224n; else DATA=data/cs224n; fi
fi
OUT=${OUT:-runs/original}
RECIPE=${RECIPE:-paper}
SPANGPT=.venv/bin/spangpt

setup() {
  # torch pinned for a reproducible setup (the package itself accepts a range); for the CPU build on Linux,
  # PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ./run.sh setup
  if [ ! -x "$SPANGPT" ] || [ pyproject.toml -nt .venv/.installed ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "torch==2.13.0"
    .venv/bin/pip install -q -e ".[test,plot,tensorboard,hf,explore]"
    touch .venv/.installed
  fi
}

need() {  # need FILE TARGET: explain a missing prerequisite instead of failing deep inside
  if [ ! -e "$1" ]; then
    echo "run.sh: $1 is missing: run './run.sh $2' first" >&2
    exit 1
  fi
}

data() {
  if [ ! -f "$DATA/wiki.txt" ]; then
    echo "run.sh: no data in $DATA: run '$SPANGPT data download --out $DATA' (or set DATA=...)" >&2
    exit 1
  fi
}

target=${1:-help}
shift || true
case "$target" in
  setup) setup ;;
  test) setup; .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadscope "$@" ;;
  demo) setup; "$SPANGPT" demo "$@" ;;
  download) setup; "$SPANGPT" data download --out "$DATA" "$@" ;;

  vanilla_finetune_without_pretrain)
    setup; data; "$SPANGPT" finetune --variant vanilla --data "$DATA" --recipe "$RECIPE" --out "$OUT/vanilla.model.safetensors" "$@" ;;
  vanilla_eval_dev_without_pretrain)
    setup; data; need "$OUT/vanilla.model.safetensors" vanilla_finetune_without_pretrain
    "$SPANGPT" evaluate "$OUT/vanilla.model.safetensors" --input "$DATA/birth_dev.tsv" --out "$OUT/vanilla.nopretrain.dev.predictions" "$@" ;;
  vanilla_eval_test_without_pretrain)
    setup; data; need "$OUT/vanilla.model.safetensors" vanilla_finetune_without_pretrain
    "$SPANGPT" predict "$OUT/vanilla.model.safetensors" --input "$DATA/birth_test_inputs.tsv" --out "$OUT/vanilla.nopretrain.test.predictions" "$@" ;;

  vanilla_pretrain|rope_pretrain)
    v=${target%%_*}; setup; data
    "$SPANGPT" pretrain --variant "$v" --data "$DATA" --recipe "$RECIPE" --out "$OUT/$v.pretrain.safetensors" "$@" ;;
  vanilla_finetune_with_pretrain|rope_finetune_with_pretrain)
    v=${target%%_*}; setup; data; need "$OUT/$v.pretrain.safetensors" "${v}_pretrain"
    "$SPANGPT" finetune --variant "$v" --data "$DATA" --recipe "$RECIPE" --init "$OUT/$v.pretrain.safetensors" --out "$OUT/$v.finetune.safetensors" "$@" ;;
  vanilla_eval_dev_with_pretrain|rope_eval_dev_with_pretrain)
    v=${target%%_*}; setup; data; need "$OUT/$v.finetune.safetensors" "${v}_finetune_with_pretrain"
    "$SPANGPT" evaluate "$OUT/$v.finetune.safetensors" --input "$DATA/birth_dev.tsv" --out "$OUT/$v.pretrain.dev.predictions" "$@" ;;
  vanilla_eval_test_with_pretrain|rope_eval_test_with_pretrain)
    v=${target%%_*}; setup; data; need "$OUT/$v.finetune.safetensors" "${v}_finetune_with_pretrain"
    "$SPANGPT" predict "$OUT/$v.finetune.safetensors" --input "$DATA/birth_test_inputs.tsv" --out "$OUT/$v.pretrain.test.predictions" "$@" ;;

  help|-h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; grep -oE '^  [a-z_|]+\)' "$0" | tr -d ' )' | tr '|' '\n' | sed 's/^/  /' ;;
  *) echo "run.sh: unknown target '$target' (./run.sh help lists them)" >&2; exit 2 ;;
esac
