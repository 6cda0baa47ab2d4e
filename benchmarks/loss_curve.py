"""Pretraining loss, epoch by epoch, beside the original's logged values: the paper recipe's regression check.

    python benchmarks/loss_curve.py --data ../shared/data/cs224n --out runs/curve/vanilla --epochs 30
    python benchmarks/loss_curve.py --metrics runs/curve/vanilla.pretrain.metrics.jsonl   # print a finished run

Runs `spangpt pretrain --recipe paper` for the first N epochs of the full 650-epoch schedule (--max-steps, so
the learning rate follows exactly the full run's), one metrics line per epoch, then prints a table: our
per-epoch mean loss, the original's two runs, and the RMS of the tensors weight decay is about (token
embedding, position table, LayerNorm gains, Linear weights). Extra options (--decay-on linear, --seed 1, ...)
go to pretrain. This prints figures; it passes or fails nothing. Noise: the original logs the loss of its
last batch (the same 121 documents every epoch), we log the mean over the epoch; its two runs differ by up
to 0.11 at the same epoch.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from spangpt.errors import run_script
from spangpt.report import PAPER_PRETRAIN_LOSS, epoch_losses
from spangpt.train import read_metrics


def table(recs: list[dict]) -> str:
    per_epoch = epoch_losses(recs)
    rms = {r["epoch"]: r.get("rms", {}) for r in recs}
    last = max(per_epoch)
    shown = sorted({e for e in PAPER_PRETRAIN_LOSS if e <= last} | {e for e in per_epoch if e % 10 == 0} | {last})
    keys = sorted({k for r in rms.values() for k in r})
    lines = ["| epoch | original run 1 | original run 2 | spangpt (epoch mean) | " + " | ".join(f"rms {k}" for k in keys) + " |",
             "|---" * (4 + len(keys)) + "|"]
    for e in shown:
        orig = PAPER_PRETRAIN_LOSS.get(e, (None, None))
        cells = [f"{v:.2f}" if v is not None else "" for v in orig]
        ours = f"{per_epoch[e]:.3f}" if e in per_epoch else ""
        lines.append(f"| {e} | {cells[0]} | {cells[1]} | {ours} | " +
                     " | ".join(f"{rms.get(e, {}).get(k, math.nan):.3f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="folder with the original wiki.txt")
    ap.add_argument("--out", type=Path, help="checkpoint prefix: writes OUT.pretrain.safetensors and its metrics")
    ap.add_argument("--variant", default="vanilla", choices=("vanilla", "rope"))
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the 650-epoch schedule to run")
    ap.add_argument("--recipe", default="paper", help="paper (default) or a recipe built on it (batch 128), e.g. "
                    "benchmarks/recipes/paper-spangpt-draws.toml")
    ap.add_argument("--metrics", type=Path, help="only print the table for this metrics file")
    args, extra = ap.parse_known_args(argv)
    if args.metrics is None:
        if args.data is None or args.out is None:
            ap.error("--data and --out are needed to run (or --metrics FILE to print one)")
        from spangpt import cli
        from spangpt.data import load_corpus

        per_epoch = math.ceil(len(load_corpus(args.data / "wiki.txt")) / 128)  # paper batch size 128
        ckpt = Path(f"{args.out}.pretrain.safetensors")
        rc = cli.main(["pretrain", "--recipe", args.recipe, "--variant", args.variant, "--data", str(args.data),
                       "--out", str(ckpt), "--max-steps", str(args.epochs * per_epoch),
                       "--log-interval", str(per_epoch), *extra])
        if rc:
            return rc
        args.metrics = ckpt.with_name(ckpt.name.removesuffix(".safetensors") + ".metrics.jsonl")
    recs = read_metrics(args.metrics)  # a run still going (or killed) may end in a half-written line
    print(f"\n{args.metrics}: {recs[-1]['step']} steps, {recs[-1]['elapsed_s'] / 60:.1f} min\n")
    print(table(recs))
    return 0


if __name__ == "__main__":
    run_script(main)
