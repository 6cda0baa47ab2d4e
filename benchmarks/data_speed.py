"""How fast does the host make batches? One recipe's epochs drawn and laid out, against plain references.

    python benchmarks/data_speed.py DATA [--recipe best] [--epochs 3] [--repeats 5] [--sampler numpy]

A GPU step of this model can take ~1 ms; the batch for it is made by Python on the host (in one DataLoader
worker on CUDA). This times, per batch of the recipe's size, both sides in one run (medians of --repeats):
- draw: span corruption of every line (and the QA pairs with mix_qa), as stages.pretrain draws an epoch;
  the reference finds each line's capitalised runs afresh at every draw (corpus.focus_runs caches them);
- layout: the examples shuffled, cut into batches and packed (or padded); the reference copies one example at
  a time into PAD-filled tensors (data.pack_batch builds flat lists and one tensor each).
Both sides produce the same examples and tensors (checked here before timing).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import torch

from spangpt import corpus
from spangpt.config import data_options, load_recipe, train_config
from spangpt.data import SAMPLERS, Corruption, batches, load_wiki, pack_rows, pretrain_example
from spangpt.errors import run_script
from spangpt.sampler import EpochSampler
from spangpt.stages import TRAIN_QA, qa_examples
from spangpt.vocab import PAD_ID


def reference_layout(examples, block_size: int, pack: bool):
    """The layout one example at a time (as the original code fills its tensors)."""
    if not pack:
        T = block_size - 1
        x, y = torch.full((len(examples), T), PAD_ID), torch.full((len(examples), T), PAD_ID)
        for r, (xi, yi) in enumerate(examples):
            x[r, : len(xi)], y[r, : len(yi)] = torch.tensor(xi), torch.tensor(yi)
        return x, y
    rows = pack_rows([len(x) for x, _ in examples], block_size)
    x, y = torch.full((len(rows), block_size), PAD_ID), torch.full((len(rows), block_size), PAD_ID)
    pos, doc = torch.zeros((len(rows), block_size), dtype=torch.long), torch.full((len(rows), block_size), -1)
    for r, members in enumerate(rows):
        t = 0
        for k, i in enumerate(members):
            xi, yi = examples[i]
            n = len(xi)
            x[r, t : t + n], y[r, t : t + n] = torch.tensor(xi), torch.tensor(yi)
            pos[r, t : t + n], doc[r, t : t + n] = torch.arange(n), k
            t += n
    return x, y, pos, doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with wiki.txt and birth_places_train.tsv")
    ap.add_argument("--recipe", default="best")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timing (default 3)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per side; medians are printed (default 5)")
    ap.add_argument("--sampler", choices=SAMPLERS, default="python", help="how spangpt's side draws: the "
                    "recipe's line-at-a-time draws (python), or spangpt.sampler's whole epochs (numpy; other draws "
                    "from the same distribution, so the two sides' batches are not compared)")
    args = ap.parse_args(argv)
    docs, vocab = load_wiki(args.data / "wiki.txt")
    rec = load_recipe(args.recipe)
    mix_qa, how = data_options(rec, "vanilla")
    how = dataclasses.replace(how, sampler=args.sampler)
    epoch_sampler = EpochSampler(docs, vocab, 128, how) if args.sampler == "numpy" else None
    cfg = train_config(rec, "pretrain", {}, documents=len(docs), block_size=128, variant="vanilla")
    qa = qa_examples(args.data / TRAIN_QA, vocab, 128) if mix_qa else []

    def draw(rng, how: Corruption):
        if epoch_sampler is not None:
            return epoch_sampler.draw(rng) + qa
        return [pretrain_example(d, vocab, 128, rng, how) for d in docs] + qa

    def draw_uncached(rng, how: Corruption):
        out = []
        for d in docs:
            corpus.focus_runs.cache_clear()  # the reference finds every line's runs afresh
            out.append(pretrain_example(d, vocab, 128, rng, how))
        return out + qa

    def epochs(reference: bool) -> int:
        rng, n = random.Random(0), 0
        for _ in range(args.epochs):
            examples = draw_uncached(rng, dataclasses.replace(how, sampler="python")) if reference else draw(rng, how)
            if reference:
                order = list(range(len(examples)))
                rng.shuffle(order)
                for s in range(0, len(order), cfg.batch_size):
                    reference_layout([examples[i] for i in order[s : s + cfg.batch_size]], 128, cfg.pack)
                    n += 1
            else:
                n += sum(1 for _ in batches(examples, cfg.batch_size, 128, cfg.pack, rng))
        return n

    if epoch_sampler is None:  # the same examples and tensors on both sides
        fast = next(iter(batches(draw(random.Random(1), how), cfg.batch_size, 128, cfg.pack, random.Random(2))))
        examples = draw_uncached(random.Random(1), dataclasses.replace(how, sampler="python"))
        order = list(range(len(examples)))
        random.Random(2).shuffle(order)
        ref = reference_layout([examples[i] for i in order[: cfg.batch_size]], 128, cfg.pack)
        assert all(torch.equal(a, b) for a, b in zip(ref, (fast.x, fast.y, fast.pos, fast.doc)))

    times = {"reference": [], "spangpt": []}
    for _ in range(args.repeats):
        for side in times:
            t = time.perf_counter()
            n = epochs(reference=side == "reference")
            times[side].append((time.perf_counter() - t) * 1000 / n)
    ref_ms, fast_ms = (statistics.median(times[s]) for s in ("reference", "spangpt"))
    layout = "packed" if cfg.pack else "padded"
    print(f"recipe {rec['name']}: {len(docs)} lines{' + ' + str(len(qa)) + ' QA pairs' if qa else ''} per epoch, "
          f"batches of {cfg.batch_size} {layout}, {how}")
    print(f"ms per batch (draw + shuffle + layout), median of {args.repeats}: reference {ref_ms:.3f}, "
          f"spangpt {fast_ms:.3f}, {ref_ms / fast_ms:.2f}x; {1000 / fast_ms:.0f} batches/s from one process")


if __name__ == "__main__":
    run_script(main)
