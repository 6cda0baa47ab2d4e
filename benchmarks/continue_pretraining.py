"""Continue a pretrained checkpoint with the original span corruption at a constant learning rate.

    python benchmarks/continue_pretraining.py CKPT OUT --data ../shared/data/cs224n --epochs 15 --lr 2e-4

A probe, not a stage: does greedy recall (benchmarks/recall_probe.py) keep forming in a longer low-lr tail?
Batch 32, the original's weight decay on every non-bias tensor, dropout as the checkpoint's config says.
Writes OUT (a checkpoint `spangpt finetune --init` takes) and OUT's metrics beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt import checkpoint
from spangpt.stages import sidecar
from spangpt.data import load_wiki, pretrain_example
from spangpt.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ckpt", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    model, vocab, info = checkpoint.load(args.ckpt)
    docs, _ = load_wiki(args.data / "wiki.txt")
    block = model.cfg.block_size
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule="constant",
                      warmup_tokens=0, decay_on="non-bias", seed=args.seed,
                      log_interval=-(-len(docs) // args.batch_size))  # one metrics line per epoch
    res = train(model, lambda rng: [pretrain_example(d, vocab, block, rng) for d in docs], cfg,
                sidecar(args.out, ".metrics.jsonl"), "continue")
    checkpoint.save(args.out, model, vocab, {**info, "continued": {"from": str(args.ckpt), **cfg.to_dict()}})
    print(f"saved {args.out}: final loss {res.final_loss:.4f}, {res.seconds:.0f} s")


if __name__ == "__main__":
    main()
