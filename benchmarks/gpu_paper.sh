#!/usr/bin/env bash
# The `paper` recipe on one GPU: vanilla pretraining (650 epochs), fine-tuning, dev evaluation, timed.
# Usage: benchmarks/gpu_paper.sh [DATA] [OUT] [PRETRAIN OPTIONS...]   (DATA: the four original files; OUT: a
# scratch folder, its runs trained again on every call; further arguments go to `spangpt pretrain`, e.g. --compile true)
set -euo pipefail
DATA=${1:-data/cs224n}
OUT=${2:-${OUT:-runs/gpu}}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
SECONDS=0
$PY -m spangpt pretrain --variant vanilla --data "$DATA" --out "$OUT/vanilla.pretrain.safetensors" --force --recipe paper \
    --log-interval 1000 "${@:3}" 2> "$OUT/pretrain.log" | tail -1
echo "pretrain wall seconds (process start to checkpoint): $SECONDS"
$PY -m spangpt finetune --variant vanilla --data "$DATA" --init "$OUT/vanilla.pretrain.safetensors" \
    --out "$OUT/vanilla.finetune.safetensors" --force --recipe paper 2> "$OUT/finetune.log" | tail -1
$PY -m spangpt evaluate "$OUT/vanilla.finetune.safetensors" --input "$DATA/birth_dev.tsv" --out "$OUT/dev.predictions"
