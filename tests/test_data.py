import random
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_benchmark

from spangpt.data import (batch_examples, batches, finetune_example, load_corpus, load_questions, numbered_questions,
                          pack_batch, pack_rows, pad_batch, padded_strings, pretrain_example, span_corruption,
                          Corruption)
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


def _spangpt_draws(doc, block_size, rng):
    """spangpt's default corruption, written plainly: the draws every recipe but `paper` was measured with.
    A length on [4, 96] whatever the line's length, then a span on [1, n//2 - 1]."""
    truncated = doc[: rng.randint(4, int(block_size * 3 / 4))]
    n = len(truncated)
    masked_len = rng.randint(1, max(1, n // 2 - 1)) if n > 1 else n
    start = rng.randint(0, n - masked_len)
    masked = truncated[start : start + masked_len]
    return truncated[:start] + MASK + truncated[start + masked_len :] + MASK + masked + MASK


def _submission_draws(doc, block_size, rng):
    """The CS224N submission behind the original's 26.2% (its CharCorruptionDataset.__getitem__), written
    plainly from its steps: a length on [4, min(96, len(line))] (a line under 4 characters stays whole),
    then a span on [1, max(1, L//2)] (1 for a one-character line), then where the span starts."""
    top = min(int(block_size * 3 / 4), len(doc))
    truncated = doc if top < 4 else doc[: rng.randint(4, top)]
    L = len(truncated)
    span = rng.randint(1, max(1, L // 2)) if L >= 2 else 1
    start = rng.randint(0, L - span)
    return truncated[:start] + MASK + truncated[start + span :] + MASK + truncated[start : start + span] + MASK


DOCS = ["Ann Lee. Ann Lee was born in New York City, USA, and studied at Oxford ." * 3,
        "Ann Lee. Ann Lee was born in New York City .", "Bo. x", "abcd", "abc", "a"]


@pytest.mark.parametrize("corruption, reference", [("spangpt", _spangpt_draws), ("original", _submission_draws)])
def test_each_corruption_draws_exactly_its_reference_examples(corruption, reference):
    a, b = random.Random(7), random.Random(7)
    for i in range(3000):
        d = DOCS[i % len(DOCS)]
        assert span_corruption(d, BLOCK, a, Corruption(style=corruption)) == reference(d, BLOCK, b)
    assert a.random() == b.random()  # and the generator is left in the same state


def test_the_default_options_are_spangpts_draws():
    a, b = random.Random(3), random.Random(3)
    assert [span_corruption(d, BLOCK, a, Corruption(window=False, salient_mask=0.0)) for d in DOCS * 50] == \
        [_spangpt_draws(d, BLOCK, b) for d in DOCS * 50]


def test_the_original_rarely_shows_a_short_line_whole():
    """The difference that matters: a 60-character line is whole in ~1/57 of the original's examples (its
    length is drawn within the line) and in ~37/93 of spangpt's (drawn up to 96, then cut at the line)."""
    line = "Ann Lee. Ann Lee was born in New York City, USA, in 1950 ."
    assert len(line) == 58
    whole = {}
    for corruption in ("original", "spangpt"):
        rng = random.Random(0)
        shown = [sum(map(len, span_corruption(line, BLOCK, rng, Corruption(style=corruption)).split(MASK)))
                 for _ in range(20000)]
        whole[corruption] = sum(n == len(line) for n in shown) / len(shown)
        assert max(shown) == len(line) and min(shown) == 4
    assert abs(whole["original"] - 1 / 55) < 0.005 and abs(whole["spangpt"] - 39 / 93) < 0.02


def test_an_unknown_corruption_is_refused():
    with pytest.raises(ValueError, match="corruption"):
        span_corruption("Ann Lee. x", BLOCK, random.Random(0), Corruption(style="orginal"))


LONG = ("Ann Lee. Ann Lee was born in New York City, USA, studied law at Oxford and medicine at Harvard, "
        "taught in Vienna and Prague for twenty years, and retired to a farm near Lisbon in Portugal .")


def test_window_keeps_the_name_first_and_reaches_past_96_characters():
    rng, seen = random.Random(0), set()
    for _ in range(3000):
        prefix, suffix, masked, _ = span_corruption(LONG, BLOCK, rng, Corruption(window=True)).split(MASK)
        shown = prefix + masked + suffix
        assert len(shown) <= 96
        if len(shown) <= len("Ann Lee. "):  # drawn shorter than the name: plain truncation, as the original
            assert LONG.startswith(shown)
            continue
        assert shown.startswith("Ann Lee. ")
        rest = shown[len("Ann Lee. "):]
        # a contiguous piece of the line that starts at a word
        starts = [i for i in range(len("Ann Lee. "), len(LONG)) if LONG.startswith(rest, i) and LONG[i - 1] == " "]
        assert starts
        seen.update(range(starts[0], starts[0] + len(rest)))
    assert seen == set(range(len("Ann Lee. "), len(LONG)))  # every character of the line gets shown
    assert len(LONG) > 96


def test_focus_asks_for_a_capitalised_run_next_to_the_name():
    head = "Ann Lee. "
    runs = {"New York City", "USA", "Oxford", "Harvard", "Vienna", "Prague", "Lisbon", "Portugal"}
    rng, masked_seen = random.Random(0), set()
    for _ in range(2000):
        prefix, suffix, masked, end = span_corruption(LONG, BLOCK, rng, Corruption(focus=1.0)).split(MASK)
        assert end == "" and prefix.startswith(head)
        assert masked in runs  # a whole capitalised run, never the name again
        before = prefix[len(head):]
        assert len(before.split()) <= 4  # at most four words between the name and the fact
        # name + a contiguous piece of the line, starting at a word: the run sits where it is in the line
        piece = before + masked + suffix
        at = [i for i in range(len(head), len(LONG)) if LONG.startswith(piece, i) and LONG[i - 1] == " "]
        assert at and LONG[at[0] + len(before):].startswith(masked)
        masked_seen.add(masked)
    assert masked_seen == runs  # every run gets asked for


def test_focus_falls_back_to_the_original_draw_without_runs_and_mixes_by_probability():
    plain = "Ann Lee. ann lee was born in a small town and worked as a nurse ."
    for seed in range(200):  # no capitalised run after the name: an ordinary random span
        s = span_corruption(plain, BLOCK, random.Random(seed), Corruption(focus=1.0))
        prefix, suffix, masked, _ = s.split(MASK)
        assert plain.startswith(prefix + masked + suffix)
    rng = random.Random(1)
    focused = 0
    for _ in range(4000):
        prefix, _, masked, _ = span_corruption(LONG, BLOCK, rng, Corruption(focus=0.3)).split(MASK)
        focused += masked in {"New York City", "USA", "Oxford", "Harvard", "Vienna", "Prague", "Lisbon",
                              "Portugal"} and len(prefix[len("Ann Lee. "):].split()) <= 4
    assert abs(focused / 4000 - 0.3) < 0.05  # plus the rare random span that happens to look focused


def _looks_salient(shown_with_gap: str, masked: str) -> bool:
    """A masked span that is whole capitalised words: capital first, a word boundary before it."""
    before = shown_with_gap.split(MASK)[0]
    return masked[:1].isupper() and (before == "" or before[-1] in " (") and \
        all(w[:1].isupper() for w in masked.split(" "))


def test_salient_masking_masks_capitalised_runs_after_the_name():
    def draws(p, n=3000):
        rng = random.Random(0)
        for _ in range(n):
            s = span_corruption(LONG, BLOCK, rng, Corruption(salient_mask=p))
            prefix, suffix, masked, _ = s.split(MASK)
            shown = prefix + masked + suffix
            has_run = any(w[:1].isupper() for w in shown[len("Ann Lee. "):].split(" "))
            yield has_run, _looks_salient(s, masked), masked

    always = list(draws(1.0))
    assert all(salient for has_run, salient, _ in always if has_run)
    assert {"Ann Lee", "New York City", "USA", "Oxford", "Harvard"} <= {m for _, _, m in always}
    assert not any(m == "Ann Lee. Ann Lee" for _, _, m in always)  # the name head itself is never the span
    with_runs = [salient for has_run, salient, _ in draws(0.5) if has_run]
    share = sum(with_runs) / len(with_runs)
    never = [salient for has_run, salient, _ in draws(0.0) if has_run]
    chance = sum(never) / len(never)  # random spans that happen to be whole capitalised words
    assert chance < 0.1 and abs(share - (0.5 + 0.5 * chance)) < 0.04


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
    with pytest.raises(UserError, match=r"train\.tsv:4: question\+answer is 140 characters, 142 with its two \u2047, over block_size"):
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


@pytest.mark.parametrize("text, message", [
    ("Where was A born?\tParis\n\tOslo\n", r"qa\.tsv:2: empty question"),
    ("Where was A born?\tParis\tOslo\n", r"qa\.tsv:1: more than one tab"),
    ("\n  \n", r"qa\.tsv: no questions found"),
    ("Where was A born?\t  \n", r"qa\.tsv:1: expected 'question<TAB>answer', found no answer"),
    ("Where was A born?\tParis\nWhere was B\u2047C born?\tOslo\n", r"qa\.tsv:2: holds '\u2047', a character the model reserves"),
    ("Where was A born?\tPa\u25a1ris\n", r"qa\.tsv:1: holds '\u25a1', a character the model reserves"),
])
def test_question_file_errors(tmp_path, text, message):
    p = tmp_path / "qa.tsv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_questions(p)


def test_blank_lines_are_skipped_and_an_empty_corpus_is_an_error(tmp_path):
    p = tmp_path / "qa.tsv"
    p.write_text("\nWhere was A born?\tParis\n\nWhere was B born?\tOslo\n", encoding="utf-8")
    assert load_questions(p) == [("Where was A born?", "Paris"), ("Where was B born?", "Oslo")]
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError, match=r"wiki\.txt: the corpus is empty"):
        load_corpus(wiki)


def test_question_lines_end_at_newline_only(tmp_path):
    """One question per "\\n" line, as the corpus and every error's line number count them: a U+2028 or form
    feed inside a question used to split it in two, so the predictions no longer lined up with the file."""
    path = tmp_path / "dev.tsv"
    path.write_bytes("Where was Ann born?\tParis\r\n\nWhere was Bo\u2028b\x0c born?\tRome\n".encode())
    assert numbered_questions(path) == [(1, "Where was Ann born?", "Paris"), (3, "Where was Bo\u2028b\x0c born?", "Rome")]


def test_without_shuffle_the_batches_keep_the_examples_order_every_epoch():
    """The original's DataLoader does not shuffle: `paper` (shuffle = false) keeps the file's order."""
    examples = list(range(10))
    rng = random.Random(0)
    state = rng.getstate()
    assert list(batch_examples(examples, 4, rng, shuffle=False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(batch_examples(examples, 4, rng, skip=1, shuffle=False)) == [[4, 5, 6, 7], [8, 9]]
    assert rng.getstate() == state  # nothing drawn
    shuffled = [i for b in batch_examples(examples, 4, rng) for i in b]
    assert sorted(shuffled) == examples and shuffled != examples


_reference_layout = load_benchmark("data_speed").reference_layout  # one example at a time, written plainly


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=31), min_size=1, max_size=40), st.booleans())
def test_batches_are_the_plain_per_example_layout(seqs, pack):
    examples = [(s, s[1:] + [PAD_ID]) for s in seqs]
    b = (pack_batch if pack else pad_batch)(examples, 32)
    want = _reference_layout(examples, 32, pack)
    for got, w in zip((b.x, b.y, b.pos, b.doc), (*want, None, None)):
        assert (got is None and w is None) or (got.dtype == torch.long and torch.equal(got, w))


def test_focus_runs_are_the_runs_after_the_name_but_the_name_again():
    from spangpt.corpus import capitalised_runs, focus_runs, head_length

    for line in DOCS + [LONG, "Ann Lee. Ann Lee met Bob in Rome .", "nobody here ."]:
        head = head_length(line)
        runs = [(a, b) for a, b in capitalised_runs(line, head) if line[a:b] not in line[:head]]
        assert focus_runs(line) == (head, tuple(runs))
    assert [LONG[a:b] for a, b in focus_runs(LONG)[1]][:3] == ["New York City", "USA", "Oxford"]


def test_layouts_take_tuples_and_an_empty_batch():
    b = pack_batch([], 16)
    assert b.x.shape == b.pos.shape == (0, 16)
    for layout in (pack_batch, pad_batch):
        assert layout([((3, 4, 5), (4, 5, 0))], 16).x[0, :4].tolist() == [3, 4, 5, 0]


def test_a_corpus_with_windows_line_ends_reads_as_the_same_corpus(tmp_path):
    from spangpt.data import load_corpus, load_wiki

    lines = ["Ada Lee. Ada Lee was born in Paris.", "Bo Chan. Bo Chan is a poet."]
    unix, dos = tmp_path / "unix.txt", tmp_path / "dos.txt"
    unix.write_bytes(("\n".join(lines) + "\n").encode())
    dos.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    (docs_u, vocab_u), (docs_d, vocab_d) = load_wiki(unix), load_wiki(dos)
    assert docs_d == docs_u == load_corpus(dos) and "\r" not in vocab_d.stoi
    assert vocab_d.chars == vocab_u.chars
