"""What RoPE costs per training step: the complex-multiply rotation against the real-arithmetic one it replaced.

    python benchmarks/rope_speed.py [--steps 10] [--rounds 5] [--batch 64] [--threads N] [--precision auto]

Times whole training steps (`train.train_step`: forward, backward, clipping, AdamW) of the original-size model on packed batches of random
examples, alternating vanilla, RoPE and RoPE with the old rotation in every round, and prints each one's median
seconds per step and the ratios. The old rotation is written out below and patched in for its turn only.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from spangpt import model as model_module
from spangpt.data import pack_batch
from spangpt.errors import run_script
from spangpt.model import GPT, ModelConfig
from spangpt.device import autocast_context, use_bf16
from spangpt.train import train_step


def real_rope(x, cos, sin):
    """The rotation as it was: split the pairs, four multiplies, stack (every step a pass over q or k)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


def batches(n: int, batch: int, block: int, seed: int = 0):
    """Packed batches of `batch` examples of 60-127 tokens, about the real data's lengths."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ex = []
        for _ in range(batch):
            k = rng.randint(60, block - 1)
            ex.append(([rng.randrange(2, 256) for _ in range(k)], [rng.randrange(2, 256) for _ in range(k)]))
        out.append(pack_batch(ex, block))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per turn")
    ap.add_argument("--rounds", type=int, default=5, help="turns of each contender, alternated")
    ap.add_argument("--batch", type=int, default=64, help="examples per step")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    bf16 = use_bf16(args.precision, device)
    ctx = autocast_context(device, bf16)
    data = batches(args.steps, args.batch, 128)
    new_rope = model_module.apply_rope
    contenders = {}
    for name, variant, rope_fn in (("vanilla", "vanilla", None), ("rope", "rope", new_rope), ("rope, real form", "rope", real_rope)):
        torch.manual_seed(0)
        m = GPT(ModelConfig(vocab_size=256, block_size=128, n_layer=4, n_head=8, n_embd=256, variant=variant, dropout=0.0))
        contenders[name] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4), rope_fn)
    times = {name: [] for name in contenders}
    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        for name, (m, opt, rope_fn) in contenders.items():
            if rope_fn is not None:
                model_module.apply_rope = rope_fn
            t0 = time.perf_counter()
            try:
                for b in data:
                    train_step(m, opt, b, ctx, grad_clip=1.0)
            finally:  # never leave the old rotation patched in
                model_module.apply_rope = new_rope
            if r:
                times[name].append((time.perf_counter() - t0) / len(data))
    print(f"{torch.get_num_threads()} threads, {'bf16' if bf16 else 'fp32'}, batch {args.batch}, "
          f"{args.steps} steps x {args.rounds} rounds, alternated")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, s in med.items():
        print(f"{name:16s} {s * 1e3:7.1f} ms/step  ({s / med['vanilla']:.2f}x vanilla)")
    print(f"rope speedup over the real form: {med['rope, real form'] / med['rope']:.2f}x")


if __name__ == "__main__":
    run_script(main)
