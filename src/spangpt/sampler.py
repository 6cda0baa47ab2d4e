"""Span corruption for a whole epoch at once, with NumPy (a recipe's `sampler = "numpy"`).

data.span_corruption draws one line at a time in Python; this draws every line of an epoch in a few array
operations, from the same distribution (the "spangpt" style, with `focus`), not the same draws: the length
uniform on [4, 96] and the line cut there, the masked span uniform on [1, n//2 - 1] and its start uniform; a
focus example with probability `focus` where the line has a capitalised run after the name, the run and the
window's first word drawn as corpus.focus_example draws them. Its generator is NumPy's, seeded per epoch from
the run's data RNG, so a run is as deterministic (and resumable) as with the Python sampler.

Every example is four pieces of its line and three ⁇: R1 R2 ⁇ R3 ⁇ R4 ⁇. A plain example is
[0, s) () ⁇ [s+m, n) ⁇ [s, s+m) ⁇; a focus example [0, head) [w, start) ⁇ [end, stop) ⁇ [start, end) ⁇.
"""
from __future__ import annotations

import random

import numpy as np

from spangpt.corpus import focus_runs, max_shown
from spangpt.data import Corruption
from spangpt.vocab import MASK_ID, PAD_ID, Vocab


class EpochSampler:
    def __init__(self, docs: list[str], vocab: Vocab, block_size: int, how: Corruption):
        self.block, self.focus, self.limit = block_size, how.focus, max_shown(block_size)
        self.lengths = np.array([len(d) for d in docs])
        # every line's ids one after the other (int32: the corpus's size, not lines x the longest line)
        self.ids = np.fromiter((i for d in docs for i in vocab.encode(d)), dtype=np.int32, count=int(self.lengths.sum()))
        self.offsets = np.cumsum(self.lengths) - self.lengths
        # each line's focus runs, flattened: run r of line i is run_first[i] + r; its window may start at any
        # of its (up to five) last word starts, as focus_example chooses
        heads, starts, ends, words, n_words, first, count = [], [], [], [], [], [], []
        for d in docs:
            head, runs = focus_runs(d) if self.focus else (0, ())
            heads.append(head)
            first.append(len(starts))
            count.append(len(runs))
            for a, b in runs:
                w = ([head] + [i + 1 for i in range(head, a) if d[i] == " "])[-5:]
                starts.append(a)
                ends.append(b)
                words.append(w + [0] * (5 - len(w)))
                n_words.append(len(w))
        self.head = np.array(heads)
        self.run_first, self.run_count = np.array(first), np.array(count)
        self.run_start, self.run_end = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
        self.run_words, self.run_n_words = np.array(words, dtype=np.int64).reshape(-1, 5), np.array(n_words)

    def pieces(self, gen: np.random.Generator) -> np.ndarray:
        """(lines, 4, 2): each example's four [start, end) ranges of its line."""
        n_docs = len(self.lengths)
        length = gen.integers(4, self.limit, n_docs, endpoint=True)
        n = np.minimum(length, self.lengths)
        m = np.where(n > 1, gen.integers(1, np.maximum(1, n // 2 - 1), endpoint=True), n)
        s = gen.integers(0, n - m, endpoint=True)
        r = np.zeros((n_docs, 4, 2), dtype=np.int64)
        r[:, 0, 1] = s                    # R1 = [0, s), R2 empty
        r[:, 2, 0], r[:, 2, 1] = s + m, n  # R3: the suffix
        r[:, 3, 0], r[:, 3, 1] = s, s + m  # R4: the masked span
        if self.focus:
            use = (gen.random(n_docs) < self.focus) & (self.run_count > 0)
            rows = np.flatnonzero(use)
            run = self.run_first[rows] + gen.integers(0, self.run_count[rows])
            w = self.run_words[run, gen.integers(0, self.run_n_words[run])]
            start, end, head = self.run_start[run], self.run_end[run], self.head[rows]
            stop = np.minimum(self.lengths[rows], np.maximum(end, w + length[rows] - head))
            r[rows] = np.stack([np.stack([np.zeros_like(head), head], 1), np.stack([w, start], 1),
                                np.stack([end, stop], 1), np.stack([start, end], 1)], 1)
        return r

    def tokens(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (every example's ids one after the other, each followed by one PAD; each example's length
        without that PAD): R1 R2 ⁇ R3 ⁇ R4 ⁇ PAD. Eight segments per example (the ⁇s and the PAD of length
        1), concatenated with the repeat-and-offset idiom for many ranges at once."""
        n = len(r)
        seg_start = np.zeros((n, 8), dtype=np.int64)
        seg_len = np.ones((n, 8), dtype=np.int64)
        for k, col in enumerate((0, 1, 3, 5)):  # the four ranges; columns 2, 4, 6: ⁇; 7: PAD
            seg_start[:, col] = r[:, k, 0] + self.offsets  # into the concatenated lines
            seg_len[:, col] = r[:, k, 1] - r[:, k, 0]
        lens, starts = seg_len.ravel(), seg_start.ravel()
        total = lens.sum()
        first = np.cumsum(lens) - lens  # where each segment begins in the output
        src = np.repeat(starts - first, lens) + np.arange(total)
        out = self.ids[np.where(src < len(self.ids), src, 0)].astype(np.int64)  # the ⁇ and PAD segments: below
        special = np.repeat(np.tile(np.array([-1, -1, MASK_ID, -1, MASK_ID, -1, MASK_ID, PAD_ID]), n), lens)
        out = np.where(special >= 0, special, out)
        return out, seg_len.sum(1) - 1

    def draw(self, rng: random.Random) -> list:
        """One epoch's examples, as data.pretrain_example gives them: (x, y) id lists, cut at the block. The
        NumPy generator is seeded from one draw of the run's data RNG, so resuming replays it."""
        gen = np.random.default_rng(rng.getrandbits(63))
        out, lengths = self.tokens(self.pieces(gen))
        flat = out.tolist()
        starts = (np.cumsum(lengths + 1) - lengths - 1).tolist()
        keep = np.minimum(lengths, self.block - 1).tolist()
        # y is x shifted by one: the next example's ids start after this one's PAD, so the last target of a
        # whole example is that PAD, as in data.shift
        return [(flat[o : o + k], flat[o + 1 : o + 1 + k]) for o, k in zip(starts, keep)]
