import random
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spangpt.data import (batches, finetune_example, load_corpus, load_questions, pack_batch, pack_rows, pad_batch,
                          padded_strings, pretrain_example, span_corruption)
from spangpt.errors import UserError
from spangpt.vocab import MASK, PAD, PAD_ID, Vocab

BLOCK = 128


@settings(max_examples=200, deadline=None)
@given(doc=st.text(alphabet="abcdefgh .", min_size=1, max_size=300), seed=st.integers(0, 2**32))
def test_span_corruption_rearranges_a_truncated_prefix(doc, seed):
    s = span_corruption(doc, BLOCK, random.Random(seed))
    assert s.count(MASK) == 3 and s.endswith(MASK)
    prefix, suffix, masked, _ = s.split(MASK)
    truncated = prefix + masked + suffix
    assert doc.startswith(truncated)  # it is a truncation of the document...
    assert len(truncated) == len(doc) or 4 <= len(truncated) <= int(BLOCK * 3 / 4)  # ...of an allowed length
    assert len(truncated) <= 96
    assert len(masked) >= 1


def test_span_corruption_statistics():
    rng = random.Random(0)
    doc = "x" * 500
    lens, ratios = [], []
    for _ in range(20000):
        prefix, suffix, masked, _ = span_corruption(doc, BLOCK, rng).split(MASK)
        n = len(prefix) + len(masked) + len(suffix)
        lens.append(n)
        ratios.append(len(masked) / n)
    assert set(lens) == set(range(4, 97))  # every truncation length in [4, 96] occurs
    assert abs(statistics.mean(ratios) - 0.25) < 0.02  # masked span is 1/4 of the truncation on average


def test_pretrain_example_is_the_original_shifted_padded_string():
    v = Vocab.from_text("Ada Lovelace. Ada was born in London .")
    x, y = pretrain_example("Ada Lovelace. Ada was born in London .", v, BLOCK, random.Random(3))
    full = span_corruption("Ada Lovelace. Ada was born in London .", BLOCK, random.Random(3))
    padded = full + PAD * (BLOCK - len(full))  # the original: pad to block_size, x = s[:-1], y = s[1:]
    xs, ys = padded_strings(x, y, v, BLOCK)
    assert (xs, ys) == (padded[:-1], padded[1:])


def test_finetune_example_matches_the_original_namedataset():
    q, a = "Where was Ada born?", "London"
    v = Vocab.from_text(q + a)
    x, y = finetune_example(q, a, v, BLOCK)
    xs, ys = padded_strings(x, y, v, BLOCK)
    # original: x = q⁇a⁇ + PAD to block_size; y = PAD*(len(q)-1) + x[len(q):]; x = x[:-1]
    full = q + MASK + a + MASK
    full += PAD * (BLOCK - len(full))
    assert xs == full[:-1]
    assert ys == PAD * (len(q) - 1) + full[len(q):]
    assert ys.startswith(PAD * (len(q) - 1) + MASK + a + MASK)


def test_finetune_example_too_long_is_an_error():
    v = Vocab.from_text("ab")
    with pytest.raises(UserError, match=r"train\.tsv:4: .*over block_size"):
        finetune_example("a" * 100, "b" * 40, v, BLOCK, "train.tsv", 4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 128), min_size=1, max_size=300))
def test_pack_rows_is_a_valid_packing(lengths):
    rows = pack_rows(lengths, 128)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))  # every example exactly once
    assert all(sum(lengths[i] for i in r) <= 128 for r in rows)
    assert len(rows) <= 2 * sum(lengths) / 128 + 1  # never worse than twice the ideal (best fit: ~1.2x)


def _examples(n, seed=0):
    rng = random.Random(seed)
    return [([rng.randrange(2, 20) for _ in range(k)], [rng.choice([PAD_ID, rng.randrange(2, 20)]) for _ in range(k)])
            for k in (rng.randint(3, 99) for _ in range(n))]


def test_packed_batch_holds_each_example_with_restarting_positions():
    ex = _examples(40)
    b = pack_batch(ex, BLOCK)
    assert b.n_examples == 40 and b.x.shape[1] == BLOCK
    found = []
    for r in range(b.x.size(0)):
        for d in b.doc[r].unique().tolist():
            if d < 0:
                continue
            cols = (b.doc[r] == d).nonzero().flatten()
            assert torch.equal(cols, torch.arange(cols[0], cols[-1] + 1))  # contiguous
            assert torch.equal(b.pos[r, cols], torch.arange(len(cols)))  # positions restart at 0
            found.append((b.x[r, cols].tolist(), b.y[r, cols].tolist()))
    assert sorted(found) == sorted(ex)
    assert b.n_targets == pad_batch(ex, BLOCK).n_targets


def test_batches_cover_every_example_once_in_batches_of_batch_size():
    ex = _examples(50)
    got = list(batches(ex, 16, BLOCK, pack=False, rng=random.Random(0)))
    assert [b.n_examples for b in got] == [16, 16, 16, 2]  # the last partial batch is kept
    rows = sorted(tuple(r[r != PAD_ID].tolist()) for b in got for r in b.x)
    assert rows == sorted(tuple(x) for x, _ in ex)


def test_batches_skip_resumes_an_epoch_with_the_same_batches_and_rng_after():
    """A resumed epoch: the same shuffle, the first `skip` batches left out, the RNG where it would be."""
    ex = _examples(50)
    full_rng, skip_rng = random.Random(3), random.Random(3)
    full = list(batches(ex, 16, BLOCK, pack=True, rng=full_rng))
    tail = list(batches(ex, 16, BLOCK, pack=True, rng=skip_rng, skip=2))
    assert len(tail) == 2 and all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in zip(full[2:], tail))
    assert full_rng.getstate() == skip_rng.getstate()
    assert list(batches(ex, 16, BLOCK, pack=True, rng=random.Random(3), skip=4)) == []  # the epoch was done


def test_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "qa.tsv"
    p.write_text("Where was A born?\tParis\nWhere was B born?\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"qa\.tsv:2: expected 'question<TAB>answer'"):
        load_questions(p)
    assert [a for _, a in load_questions(p, need_answers=False)] == ["Paris", None]
    bad = tmp_path / "wiki.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(UserError, match=r"wiki\.txt:2: not valid UTF-8"):
        load_corpus(bad)
    with pytest.raises(UserError, match=r"missing\.txt: file not found"):
        load_corpus(tmp_path / "missing.txt")
