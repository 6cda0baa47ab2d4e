"""Where a training step's time goes on this machine, and how near the matmuls run to the CPU's peak.

    python benchmarks/step_profile.py DATA [--recipe best] [--variant vanilla] [--steps 5] [--threads N]
                                           [--precision auto|fp32|bf16]

Builds a recipe's model and optimizer, draws one epoch of its pretraining examples as `spangpt pretrain`
does, and runs whole training steps (`train.train_step`: forward, backward, clipping, AdamW) on its packed
batches: --steps timed, then --steps more under torch.profiler. Prints seconds per step, real tokens/s, the
ops that took the most time, and the arithmetic rate of the Linear matmuls (mm, addmm) and the attention
matmuls (bmm): their FLOPs, as torch.utils.flop_counter counts them on the same steps, over their time,
beside the rate of one large matmul. If the step's matmuls already run near that, only fewer positions or a
cheaper precision make a step faster.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from spangpt.config import data_options, load_recipe, model_config, train_config
from spangpt.data import batches, load_wiki, pretrain_example
from spangpt.device import autocast_context, use_bf16
from spangpt.errors import run_script
from spangpt.model import GPT
from spangpt.stages import TRAIN_QA, qa_examples
from spangpt.train import make_optimizer, train_step


def large_matmul_rate(bf16: bool, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an (n, n) @ (n, n) matmul in the step's precision, the median of `repeats`: what this CPU
    does on a matmul big enough to hide every overhead, to hold the step's matmul rates against."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times[1:]) / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with wiki.txt and birth_places_train.tsv")
    p.add_argument("--recipe", default="best")
    p.add_argument("--variant", default="vanilla", choices=("vanilla", "rope"))
    p.add_argument("--steps", type=int, default=5, help="steps timed, then as many profiled (default 5)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="default: the recipe's (auto: bf16 only "
                   "on a CPU with native bf16)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rec = load_recipe(args.recipe)
    mix_qa, how = data_options(rec, args.variant)
    docs, vocab = load_wiki(args.data / "wiki.txt")
    mcfg = model_config(rec, len(vocab), args.variant, {})
    asked = {"precision": args.precision} if args.precision else {}
    tcfg = train_config(rec, "pretrain", asked, documents=len(docs), block_size=mcfg.block_size, variant=args.variant)
    block = mcfg.block_size
    qa = qa_examples(args.data / TRAIN_QA, vocab, block) if mix_qa else []
    rng = random.Random(0)
    epoch = [pretrain_example(d, vocab, block, rng, how) for d in docs] + qa
    need = 2 + 2 * args.steps  # two warm-up steps
    todo = list(batches(epoch, tcfg.batch_size, block, pack=True, rng=rng))[:need]
    if len(todo) < need:
        raise SystemExit(f"step_profile.py: error: one epoch holds {len(todo)} batches; ask for fewer --steps")

    torch.manual_seed(0)
    device = torch.device("cpu")
    model = GPT(mcfg).train()
    optimizer = make_optimizer(model, tcfg, device)
    bf16 = use_bf16(tcfg.precision, device)
    ctx = autocast_context(device, bf16)
    for b in todo[:2]:
        train_step(model, optimizer, b, ctx, tcfg.grad_clip)
    timed, profiled = todo[2:2 + args.steps], todo[2 + args.steps:]
    t0 = time.perf_counter()
    for b in timed:
        train_step(model, optimizer, b, ctx, tcfg.grad_clip)
    seconds = (time.perf_counter() - t0) / len(timed)
    real = sum(b.n_targets for b in timed) / len(timed)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in profiled:
            train_step(model, optimizer, b, ctx, tcfg.grad_clip)

    with FlopCounterMode(display=False) as counter:  # the same steps again, counted, not timed
        for b in profiled:
            train_step(model, optimizer, b, ctx, tcfg.grad_clip)

    ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}  # seconds
    total = sum(ops.values())
    flops = {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}  # aten.mm.default
    rows = sum(b.x.shape[0] for b in profiled) / len(profiled)
    print(f"{rec['name']}, {args.variant}, {'bf16' if bf16 else 'fp32'}, {torch.get_num_threads()} threads: "
          f"{seconds:.3f} s per step, {real / seconds:,.0f} real tokens/s "
          f"({real:,.0f} real tokens, {rows:.1f} rows x {block} per step)")
    for what, names in (("Linear matmuls (mm, addmm)", ("mm", "addmm")), ("attention matmuls (bmm)", ("bmm",))):
        n, s = sum(flops.get(k, 0) for k in names), sum(ops.get(f"aten::{k}", 0) for k in names)
        print(f"{what}: {n / max(s, 1e-9) / 1e9:.1f} GFLOP/s, {s / total:.0%} of the profiled time")
    print(f"for comparison, one large matmul: {large_matmul_rate(bf16):.1f} GFLOP/s (a practical peak)")
    print("ops by time spent in them:")
    for name, s in sorted(ops.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {s / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    run_script(main)
