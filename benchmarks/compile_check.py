"""Does the compiled training step train to the eager weights? Inductor (the compiler CUDA runs use; on a CPU it
generates C++) on a 2-layer model's packed batches padded to multiples of 8 rows, both variants: prints the
compile time and the largest weight difference after the steps. A check of the compiler path the CUDA
defaults take (docs/speed.md#the-defaults-on-cuda), runnable without a GPU.

    python benchmarks/compile_check.py [--steps 6] [--device cpu|cuda] [--mode default|reduce-overhead]
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from spangpt.data import make_batch, pad_rows
from spangpt.model import GPT, ModelConfig
from spangpt.train import TrainConfig, make_optimizer, train_step

BLOCK = 32


def examples(rng: random.Random, n: int) -> list:
    out = []
    for _ in range(n):
        x = [rng.randint(2, 29) for _ in range(rng.randint(3, BLOCK - 1))]
        out.append((x, [rng.choice([0, t]) for t in x[1:]] + [0]))  # some targets PAD, as in span corruption
    return out


def weights_after(variant: str, batches: list, device: torch.device, mode: str | None) -> tuple[list, float]:
    """-> (the weights after one step per batch, seconds), compiled with `mode` or eager (None)."""
    torch.manual_seed(3)
    cfg = ModelConfig(vocab_size=30, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, dropout=0.0, variant=variant)
    model = GPT(cfg).to(device)
    tcfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    opt = make_optimizer(model, tcfg, device)
    forward = torch.compile(model, mode=mode) if mode else None
    t = time.perf_counter()
    for b in batches:
        if mode:
            torch.compiler.cudagraph_mark_step_begin()
        train_step(model, opt, b.to(device), torch.autocast(device.type, enabled=False), tcfg.grad_clip, forward=forward)
    return [p.detach().cpu().clone() for p in model.parameters()], time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", default="default", choices=("default", "reduce-overhead"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    for variant in ("vanilla", "rope"):
        rng = random.Random(2)
        batches = [pad_rows(make_batch(examples(rng, rng.randint(6, 20)), BLOCK, True), 8) for _ in range(args.steps)]
        eager, _ = weights_after(variant, batches, device, None)
        compiled, seconds = weights_after(variant, batches, device, args.mode)
        diff = max(float((a - b).abs().max()) for a, b in zip(eager, compiled))
        print(f"{variant}: {args.steps} steps compiled ({args.mode}) in {seconds:.1f} s (compilation included); "
              f"largest weight difference from eager {diff:.2g}")
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
