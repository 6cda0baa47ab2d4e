"""Text files -> training examples -> batches.

An *example* is a pair of equal-length id lists (x, y): the model reads x and is trained to predict y,
where y == PAD means "no loss here". We keep examples unpadded and choose the layout at batch time:
- padded: one example per row, PAD up to block_size-1 (exactly what the original code feeds the model);
- packed: several examples per row, each attending only to itself, positions restarting at 0.
Both layouts give the same loss (the mean over real target tokens of the batch); packing just stops
spending ~60% of the compute on PAD positions.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spangpt.corpus import capitalised_runs, focus_example, focus_runs, max_shown
from spangpt.errors import BadValue, UserError, where
from spangpt.fileio import read_bytes
from spangpt.vocab import MASK, PAD, PAD_ID, Vocab


# ----------------------------------------------------------------------------- files


def read_text(path) -> str:
    """A UTF-8 text file, Windows line ends read as "\n" (a \r would end every line: in the corpus, a
    character of the vocabulary)."""
    path = Path(path)
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        lineno = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{where(path, lineno)}: not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None


def corpus_docs(text: str, source: str = "<text>") -> list[str]:
    """One document per line (the original splits on '\\n'); blank lines are skipped."""
    docs = [line for line in text.split("\n") if line.strip()]
    if not docs:
        raise UserError(f"{source}: the corpus is empty")
    return docs


def load_corpus(path) -> list[str]:
    return corpus_docs(read_text(path), str(path))


def load_wiki(path) -> tuple[list[str], Vocab]:
    """The pretraining corpus and the vocabulary built from it, reading the file once."""
    text = read_text(path)
    return corpus_docs(text, str(path)), Vocab.from_text(text, str(path))


def load_questions(path, need_answers: bool = True) -> list[tuple[str, str | None]]:
    """Lines 'question<TAB>answer' (or just 'question' when answers are not needed); blank lines skipped."""
    return [(q, a) for _, q, a in numbered_questions(path, need_answers)]


def numbered_questions(path, need_answers: bool = True) -> list[tuple[int, str, str | None]]:
    """load_questions with each question's line number in the file, for errors found later."""
    pairs = []
    # Lines end at "\n" only, as in the corpus and in the line numbers of every error: str.splitlines would
    # also split at U+2028, \x0c, ... inside a question, and the predictions would no longer line up with it.
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        line = line.removesuffix("\r")  # Windows line ends: read_text turned "\r\n" into "\n"; a last lone \r
        if not line.strip():
            continue
        q, tab, a = line.partition("\t")
        if need_answers and (not tab or not a.strip()):
            raise UserError(f"{where(path, lineno)}: expected 'question<TAB>answer', found no answer")
        if not q.strip():
            raise UserError(f"{where(path, lineno)}: empty question")
        if "\t" in a:
            raise UserError(f"{where(path, lineno)}: more than one tab")
        marker = next((c for c in MASK + PAD if c in line), None)
        if marker:  # a ⁇ in a question would end it early, and the answer would be read from the wrong place
            raise UserError(f"{where(path, lineno)}: holds {marker!r}, a character the model reserves "
                            f"({MASK} ends a question and an answer, {PAD} pads)")
        pairs.append((lineno, q, a if tab else None))
    if not pairs:
        raise UserError(f"{path}: no questions found")
    return pairs


# ----------------------------------------------------------------------------- examples


CORRUPTIONS = ("spangpt", "original")
SAMPLERS = ("python", "numpy")


@dataclass(frozen=True)
class Corruption:
    """How span_corruption turns a line into an example: the [pretrain] table's data keys, checked.

    style: how the two lengths are drawn; both meet the assignment's spec (the recipe key `corruption`).
    - "original": as the CS224N submission behind the original's 26.2% (the `paper` recipe): the length
      uniform on [4, min(96, len(line))], so a line shorter than 96 characters is rarely shown whole, and
      the masked span uniform on [1, n//2].
    - "spangpt" (the default; every other recipe was measured with it): the length uniform on [4, 96], the
      line cut there, so a shorter line is shown whole whenever the draw passes its end (a 60-character line
      in 40% of its examples, against 2%), and the masked span uniform on [1, n//2 - 1].
    focus: with this probability, an entity-centred example (see corpus.focus_example): the name, a few
      words, and a masked capitalised run. Every such example asks for a fact about the person, in a context
      short enough that the name has to be the key. `fast` and `best` use 0.5.

    Two optional views, off in every built-in recipe (salient_mask measured to add nothing, window not run
    yet: docs/options.md); only recipes in benchmarks/recipes/ turn them on:
    - window: the original never shows a line past its first 96 characters. With window, a line longer
      than the drawn length keeps its name ("NAME. ") first and continues from a random word of the rest.
    - salient_mask: with this probability, the masked span is a run of capitalised words after the name
      instead of a random span: salient-span masking (REALM, Guu et al. 2020).
    With focus, window and salient_mask off, the draws are the chosen style's, call for call.

    sampler: "python" (span_corruption, a line at a time: every recipe's numbers were measured with it) or
    "numpy" (spangpt.sampler: a whole epoch at once, the same distribution but not the same draws; the
    spangpt style, with focus, only).
    """
    style: str = "spangpt"
    focus: float = 0.0
    window: bool = False
    salient_mask: float = 0.0
    sampler: str = "python"

    def __post_init__(self):
        if self.style not in CORRUPTIONS:
            raise BadValue("corruption", f"one of {', '.join(map(repr, CORRUPTIONS))}", self.style)
        if not isinstance(self.window, bool):
            raise BadValue("window", "true or false", self.window)
        for key in ("focus", "salient_mask"):
            p = getattr(self, key)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise BadValue(key, "a number in [0, 1]", p)
        if self.sampler not in SAMPLERS:
            raise BadValue("sampler", f"one of {', '.join(map(repr, SAMPLERS))}", self.sampler)
        if self.sampler == "numpy" and (self.style != "spangpt" or self.window or self.salient_mask):
            raise BadValue("sampler", "'python' with corruption 'original', window or salient_mask", self.sampler)


def span_corruption(doc: str, block_size: int, rng: random.Random, how: Corruption = Corruption()) -> str:
    """The original pretraining objective, as a string: prefix⁇suffix⁇masked⁇ (unpadded).

    1. truncate to a random length of at most corpus.max_shown(block_size) = int(block_size*3/4);
    2. cut into prefix + masked + suffix, the masked span 1/4 of the truncated length on average;
    3. rearrange so the model must generate the masked span after seeing both sides of it.
    `how` chooses the draws and the views (Corruption).
    """
    window, salient, focus = how.window, how.salient_mask, how.focus
    original = how.style == "original"
    limit = max_shown(block_size)
    if original:
        top = min(limit, len(doc))
        length = rng.randint(4, top) if top >= 4 else len(doc)
    else:
        length = rng.randint(4, limit)
    head = focus_runs(doc)[0] if window or salient or focus else 0
    if focus and rng.random() < focus:
        runs = focus_runs(doc)[1]
        if runs:
            return focus_example(doc, head, rng.choice(runs), length, rng)
    if window and len(doc) > length and 0 < head < length:
        body = length - head
        starts = [head] + [i + 1 for i in range(head, len(doc) - body) if doc[i] == " "]
        s = rng.choice(starts)
        doc = doc[:head] + doc[s : s + body]
    else:
        doc = doc[:length]
    n = len(doc)
    spans = capitalised_runs(doc, head) if salient and rng.random() < salient else []
    if spans:
        start, end = rng.choice(spans)
        masked_len = end - start
    else:
        # uniform on [1, n//2 - 1] ("original": [1, n//2]): mean ~n/4, never empty (it would teach nothing)
        masked_len = rng.randint(1, max(1, n // 2 - (0 if original else 1))) if n > 1 else n
        start = rng.randint(0, n - masked_len)
    prefix, masked, suffix = doc[:start], doc[start : start + masked_len], doc[start + masked_len :]
    return prefix + MASK + suffix + MASK + masked + MASK


def shift(ids: list[int], y: list[int], block_size: int):
    """(x, y) of the original padded row, without its trailing PADs: x = ids, y = targets + one PAD.

    The original pads to block_size and takes x = s[:-1], y = s[1:]; cutting its PAD tail changes no
    loss (PAD targets are ignored and attention is causal), only the compute.
    """
    return ids[: block_size - 1], (y + [PAD_ID])[: block_size - 1]


def pretrain_example(doc: str, vocab: Vocab, block_size: int, rng: random.Random, how: Corruption = Corruption()):
    ids = vocab.encode(span_corruption(doc, block_size, rng, how))
    return shift(ids, ids[1:], block_size)


def qa_string(question: str, answer: str) -> str:
    return question + MASK + answer + MASK


def finetune_example(question: str, answer: str, vocab: Vocab, block_size: int, source="<qa>", lineno=None):
    """x = question⁇answer⁇ (shifted), y = PAD over the question so only ⁇answer⁇ is trained."""
    ids = vocab.encode(qa_string(question, answer), source, lineno)
    if len(ids) > block_size:
        raise UserError(f"{where(source, lineno)}: question+answer is {len(question) + len(answer)} characters, "
                        f"{len(ids)} with its two {MASK}, over block_size {block_size}")
    q = len(question)
    return shift(ids, [PAD_ID] * (q - 1) + ids[q:], block_size)


def finetune_examples(pairs, vocab: Vocab, block_size: int, source="<qa>", lines=None):
    """lines: each pair's line number in source, for errors (default: 1, 2, ...)."""
    lines = lines or range(1, len(pairs) + 1)
    return [finetune_example(q, a, vocab, block_size, source, n) for n, (q, a) in zip(lines, pairs)]


def padded_strings(x_ids, y_ids, vocab: Vocab, block_size: int) -> tuple[str, str]:
    """The example as the original code's (x, y) strings, PAD-filled to block_size-1 (for tests/inspection)."""
    pad = [PAD_ID] * (block_size - 1 - len(x_ids))
    return vocab.decode(list(x_ids) + pad), vocab.decode(list(y_ids) + pad)


# ----------------------------------------------------------------------------- batches


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) input ids
    y: torch.Tensor  # (B, T) target ids, PAD = ignored
    pos: torch.Tensor | None = None  # (B, T) position of each token inside its own example
    doc: torch.Tensor | None = None  # (B, T) example index inside the row; attention stays within one
    n_examples: int = 0
    sum_len: int = 0  # Σ example lengths and Σ squares: what GPT.training_flops needs
    sum_len_sq: int = 0

    def _map(self, fn) -> Batch:
        keep = lambda t: None if t is None else fn(t)  # noqa: E731
        return Batch(keep(self.x), keep(self.y), keep(self.pos), keep(self.doc), self.n_examples, self.sum_len,
                     self.sum_len_sq)

    def to(self, device) -> Batch:
        # .long(): a batch from a worker travels as int32 (spangpt.loader); made int64 after the copy
        return self._map(lambda t: t.to(device, non_blocking=True).long())

    @property
    def n_targets(self) -> int:
        return int((self.y != PAD_ID).sum())


def length_sums(examples) -> dict:
    """Σ n and Σ n² over the examples' lengths: the attention FLOPs of a batch grow with n², the rest with n."""
    lengths = [len(x) for x, _ in examples]
    return {"sum_len": sum(lengths), "sum_len_sq": sum(n * n for n in lengths)}


def _rows(flat: list[int], B: int, T: int) -> torch.Tensor:
    """A flat list of ids as a (B, T) int64 tensor (np.fromiter: ~4x faster than torch.tensor on a list)."""
    return torch.from_numpy(np.fromiter(flat, dtype=np.int64, count=len(flat))).view(B, T)


def pad_batch(examples, block_size: int) -> Batch:
    """One example per row, PAD to block_size-1 columns: the original layout."""
    T = block_size - 1
    x, y = [], []
    for xi, yi in examples:  # whole rows as flat lists, then one tensor each: per-example copies cost ~10x more
        x.extend(xi)
        x.extend([PAD_ID] * (T - len(xi)))
        y.extend(yi)
        y.extend([PAD_ID] * (T - len(yi)))
    B = len(examples)
    return Batch(_rows(x, B, T), _rows(y, B, T), n_examples=B, **length_sums(examples))


def pack_rows(lengths, capacity: int) -> list[list[int]]:
    """Best-fit-decreasing bin packing: example indices per row, each row's lengths summing to <= capacity.

    Longest first into the fullest row that still has room leaves almost no holes (~99% of positions
    are real tokens on the span-corruption data). Rows by remaining space make each placement O(capacity).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(capacity + 1)]  # room -> row ids with that much room
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"example of length {n} does not fit a row of {capacity}")
        room = next((r for r in range(n, capacity + 1) if by_room[r]), None)
        if room is None:
            rows.append([])
            row, room = len(rows) - 1, capacity
        else:
            row = by_room[room].pop()
        rows[row].append(i)
        by_room[room - n].append(row)
    return rows


def pack_batch(examples, block_size: int) -> Batch:
    """Several examples per row of block_size tokens; returns positions and per-row example ids.

    A row is block_size wide, one more than a padded row: that one is the original's x = s[:-1] of a
    block_size string, while packed examples restart their positions, so a whole block fits."""
    T = block_size
    rows = pack_rows([len(x) for x, _ in examples], T)
    x, y, lens, ids = [], [], [], []  # flat ids; each segment's length and its example index in the row
    for members in rows:  # flat lists, then one array each (per-example tensor copies cost ~10x more)
        for k, i in enumerate(members):
            xi, yi = examples[i]
            x.extend(xi)
            y.extend(yi)
            lens.append(len(xi))
            ids.append(k)
        fill = -len(x) % T
        x += [PAD_ID] * fill
        y += [PAD_ID] * fill
        lens.append(fill)
        ids.append(-1)  # -1 = filler; it attends only to other filler
    B = len(rows)
    lens_a, ids_a = np.array(lens, dtype=np.int64), np.array(ids, dtype=np.int64)
    starts = np.cumsum(lens_a) - lens_a
    filler = np.repeat(ids_a < 0, lens_a)
    pos = np.where(filler, 0, np.arange(B * T) - np.repeat(starts, lens_a))  # restarting at each example
    doc = np.repeat(ids_a, lens_a)
    as_rows = lambda a: torch.from_numpy(a.astype(np.int64, copy=False)).view(B, T)  # noqa: E731
    return Batch(_rows(x, B, T), _rows(y, B, T), as_rows(pos), as_rows(doc), len(examples),
                 **length_sums(examples))


def pad_rows(batch: Batch, multiple: int) -> Batch:
    """The batch with empty rows appended up to a multiple of `multiple` rows (0: unchanged): a few static
    shapes instead of one per row count, so a compiled step can be replayed as a CUDA graph. An empty row
    is all PAD (no loss) and, packed, all filler (doc -1: it attends only to itself), so the loss and the
    gradients are those of the batch without it."""
    B = batch.x.size(0)
    extra = -B % multiple if multiple else 0
    if not extra:
        return batch
    grow = lambda t, v: torch.cat([t, t.new_full((extra, t.size(1)), v)]) if t is not None else None
    return Batch(grow(batch.x, PAD_ID), grow(batch.y, PAD_ID), grow(batch.pos, 0), grow(batch.doc, -1),
                 batch.n_examples, batch.sum_len, batch.sum_len_sq)


def make_batch(examples, block_size: int, pack: bool) -> Batch:
    return (pack_batch if pack else pad_batch)(examples, block_size)


def batches(examples, batch_size: int, block_size: int, pack: bool, rng: random.Random, skip: int = 0,
            shuffle: bool = True):
    """Shuffle, then cut into batches of `batch_size` examples (the original's unit), laid out padded or packed.

    The last, smaller batch is kept, as the original DataLoader does (drop_last=False). skip: start at
    that batch (a resumed epoch); the shuffle still draws from rng, so later epochs are unchanged.
    shuffle=False keeps the examples' order (the original's loader: the file's order, every epoch).
    """
    for chosen in batch_examples(examples, batch_size, rng, skip, shuffle):
        yield make_batch(chosen, block_size, pack)


def batch_examples(examples, batch_size: int, rng: random.Random, skip: int = 0, shuffle: bool = True):
    """The examples of each batch, before layout (what batches() lays out; sharded under torchrun)."""
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    for s in range(skip * batch_size, len(order), batch_size):
        yield [examples[i] for i in order[s : s + batch_size]]
