"""Batches made in DataLoader worker processes, so a fast GPU does not wait on the Python that makes them.

The trainer's own batch stream (train._epochs) runs in each worker; worker k of N lays out the k-th of every
N runs of GROUP batches (every worker draws and shuffles every epoch from the one rng stream, so the batches
are the same as in-process). The loader takes one item from each worker in turn, which puts the runs back in
order. A run of batches travels as one int32 tensor: the loader's cost is per item and per tensor (measured:
~0.2 ms an item, ~0.5 ms a tensor, ~0.5 ms to pickle a random.Random state), so one tensor for GROUP batches,
and each epoch's RNG state once, instead of four tensors and a state per batch.
"""
from __future__ import annotations

import torch

from spangpt.data import Batch

GROUP = 8  # batches per item a worker sends


def bundle(items: list) -> tuple:
    """Worker side: (epoch, batch index, epoch RNG state, Batch, stats) items -> one picklable item."""
    parts = [torch.stack([t for t in (b.x, b.y, b.pos, b.doc) if t is not None]) for _, _, _, b, _ in items]
    data = torch.cat(parts, dim=1).to(torch.int32)  # (2 or 4, rows of all the batches, T)
    states = {}
    for epoch, _, rng, _, _ in items:
        states.setdefault(epoch, rng)
    meta = [(epoch, i, b.x.size(0), b.n_examples, b.sum_len, b.sum_len_sq, stats)
            for epoch, i, _, b, stats in items]
    return meta, states, data


def unbundle(item: tuple):
    """Main side: the items again, their tensors int32 views (Batch.to makes them int64 on the device)."""
    meta, states, data = item
    row = 0
    for epoch, i, rows, n, sum_len, sum_len_sq, stats in meta:
        part = data[:, row : row + rows]
        row += rows
        pos, doc = (part[2], part[3]) if part.size(0) == 4 else (None, None)
        yield epoch, i, states[epoch], Batch(part[0], part[1], pos, doc, n, sum_len, sum_len_sq), stats


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, make):
        self.make = make

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        items = self.make(share=info.id, shares=info.num_workers, group=GROUP)
        run = []
        for item in items:
            run.append(item)
            if len(run) == GROUP:
                yield bundle(run)
                run = []
        if run:
            yield bundle(run)


def stream(make, n_workers: int, seed: int, pin_memory: bool):
    """make(share=0, shares=1, group=1) -> the batches (or one worker's share); -> every batch, in order, made in
    this process (n_workers 0) or in n_workers processes."""
    return _prepared(make, n_workers, seed, pin_memory) if n_workers else make()


def _unchanged(item):
    """The loader's collate_fn: its default would walk every item and make every tuple a list (the RNG states too)."""
    return item


def _prepared(make, n_workers: int, seed: int, pin_memory: bool):
    loader = torch.utils.data.DataLoader(_Stream(make), batch_size=None, num_workers=n_workers, prefetch_factor=4,
                                         pin_memory=pin_memory, collate_fn=_unchanged,
                                         # its own generator, so dropout's global RNG stream stays as without it
                                         generator=torch.Generator().manual_seed(seed))
    for item in loader:
        yield from unbundle(item)
