"""Continue a pretrained checkpoint with span corruption at a constant (or decaying) learning rate.

    python benchmarks/continue_pretraining.py CKPT OUT --data ../shared/data/cs224n --epochs 15 --lr 2e-4

A probe, not a stage: does greedy recall (benchmarks/recall_probe.py) keep forming in a longer low-lr tail?
By default the original's examples, batch 32, the original's weight decay on every non-bias tensor, dropout as
the checkpoint's config says. --focus P, --mix-qa, --decay-on, --weight-decay and --schedule give a tail in a
recipe's terms (a "bridge" tail: does more `focus` on a model that has stored its facts make them answerable?).
Writes OUT (a checkpoint `spangpt finetune --init` takes) and OUT's metrics beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt import checkpoint
from spangpt.data import Corruption, load_wiki, pretrain_example
from spangpt.errors import run_script
from spangpt.fileio import check_writable
from spangpt.stages import TRAIN_QA, qa_examples, sidecar
from spangpt.train import DECAY_ON, TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ckpt", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--schedule", choices=("constant", "linear"), default="constant")
    p.add_argument("--decay-on", choices=DECAY_ON, default="non-bias")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--focus", type=float, default=0.0, help="share of entity-centred examples (data.span_corruption)")
    p.add_argument("--mix-qa", action="store_true", help="also the training QA pairs, every epoch")
    args = p.parse_args()
    check_writable(args.out)  # before the training, not at its end
    model, vocab, info = checkpoint.load(args.ckpt)
    docs, _ = load_wiki(args.data / "wiki.txt")
    block = model.cfg.block_size
    qa = qa_examples(args.data / TRAIN_QA, vocab, block) if args.mix_qa else []
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                      warmup_tokens=0, decay_on=args.decay_on, weight_decay=args.weight_decay, seed=args.seed,
                      log_interval=-(-(len(docs) + len(qa)) // args.batch_size))  # one metrics line per epoch
    draw = lambda rng: [pretrain_example(d, vocab, block, rng, Corruption(focus=args.focus)) for d in docs] + qa
    res = train(model, draw, cfg, sidecar(args.out, ".metrics.jsonl"), "continue")
    checkpoint.save(args.out, model, vocab, {**info, "continued": {"from": str(args.ckpt), "focus": args.focus,
                                                            "mix_qa": args.mix_qa, **cfg.to_dict()}})
    print(f"saved {args.out}: final loss {res.final_loss:.4f}, {res.seconds:.0f} s")


if __name__ == "__main__":
    run_script(main)
