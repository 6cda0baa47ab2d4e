import os
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from spangpt import synth
from spangpt.corpus import name_in_question, name_of
from spangpt.errors import UserError

REAL = Path(__file__).resolve().parents[2] / "shared/data/cs224n"
TSVS = ["birth_places_train.tsv", "birth_dev.tsv", "birth_test.tsv"]


def parse_tsv(text, answers=True):
    """Parse a birth TSV strictly, the way the real files are laid out; returns [(name, place)]."""
    assert text.endswith("\n")
    rows = []
    for line in text[:-1].split("\n"):
        fields = line.split("\t")
        assert len(fields) == (2 if answers else 1), repr(line)
        q = fields[0]
        assert q.startswith("Where was ") and q.endswith(" born?"), repr(q)
        name = q[len("Where was "):-len(" born?")]
        assert name and name == name.strip()
        place = fields[1] if answers else None
        assert place is None or (place and place == place.strip())
        rows.append((name, place))
    return rows


def check_corpus(files, people):
    """Invariants every generated corpus must hold; returns (wiki lines by name, {name: place})."""
    assert sorted(files) == sorted(synth.FILES)
    wiki = files["wiki.txt"]
    assert not wiki.endswith("\n") and "\t" not in wiki and "\u25a1" not in wiki and "\u2047" not in wiki
    lines = wiki.split("\n")
    assert len(lines) == people
    by_name = {}
    for line in lines:
        name, sep, rest = line.partition(". ")
        assert sep and rest and name not in by_name
        by_name[name] = line

    splits = {f: parse_tsv(files[f]) for f in TSVS}
    test_in = parse_tsv(files["birth_test_inputs.tsv"], answers=False)
    assert [n for n, _ in test_in] == [n for n, _ in splits["birth_test.tsv"]]
    names = [n for rows in splits.values() for n, _ in rows]
    assert len(names) == len(set(names)) == people  # disjoint splits covering everyone
    assert set(names) == set(by_name)
    answer = {n: p for rows in splits.values() for n, p in rows}
    for name, place in answer.items():
        assert place in synth.PLACES
        assert by_name[name].count(place) == 1, by_name[name]
    # The vocabulary is built from wiki.txt alone, so it must cover every TSV character.
    tsv_chars = set("".join(files[f] for f in files if f != "wiki.txt")) - {"\t", "\n"}
    assert tsv_chars <= set(wiki), tsv_chars - set(wiki)
    return by_name, answer


@pytest.fixture(scope="module")
def corpus():
    files = synth.generate()
    by_name, answer = check_corpus(files, 600)
    return files, by_name, answer


def test_deterministic():
    a, b, c = synth.generate(100, seed=3), synth.generate(100, seed=3), synth.generate(100, seed=4)
    assert a == b
    assert all(a[f] != c[f] for f in a)


def test_split_sizes(corpus):
    files, _, _ = corpus
    sizes = {f: len(files[f].splitlines()) for f in files}
    assert sizes == {"wiki.txt": 600, "birth_places_train.tsv": 408, "birth_dev.tsv": 102,
                     "birth_test_inputs.tsv": 90, "birth_test.tsv": 90}


def test_wiki_not_in_split_order(corpus):
    files, _, _ = corpus
    wiki_names = [name_of(line) for line in files["wiki.txt"].split("\n")]
    tsv_names = [n for f in TSVS for n, _ in parse_tsv(files[f])]
    assert wiki_names != tsv_names and sorted(wiki_names) == sorted(tsv_names)


def test_names_start_lines_and_are_unique(corpus):
    _, by_name, _ = corpus
    names = list(by_name)
    joined = "\n".join(names)
    for name in names:
        assert re.fullmatch(r"[A-Z][a-z]+( [A-Z][a-z]+){1,2}", name), name
        assert joined.count(name) == 1, name  # not even inside another name
    assert any(len(n.split()) == 3 for n in names) and any(len(n.split()) == 2 for n in names)


def test_places_list():
    assert len(synth.PLACES) >= 150 and len(set(synth.PLACES)) == len(synth.PLACES)
    for p in synth.PLACES:
        assert p.isascii() and p == p.strip()
        # No place inside another place or inside fixed text: a line's birthplace count stays exact.
        assert [q for q in synth.PLACES if p in q] == [p], p
        fixed = " ".join(synth.TEMPLATES + synth.JOBS + synth.MONTHS)
        assert p not in fixed, p


def template_regexes():
    out = []
    for t in synth.TEMPLATES:
        parts = re.split(r"\{\w+\}", t)
        # generate() turns "a actor" into "an actor", so a literal article may carry an 'n'.
        parts = [re.escape(p[:-2]) + p[-2] + "n? " if re.search(r"\b[Aa] $", p) else re.escape(p)
                 for p in parts]
        out.append(re.compile(".+?".join(parts) + "$"))
    return out


def test_templates_used(corpus):
    _, by_name, _ = corpus
    regexes = template_regexes()
    used = Counter()
    for line in by_name.values():
        hits = [i for i, r in enumerate(regexes) if r.match(line)]
        assert hits, line
        used[hits[0]] += 1
    assert len(synth.TEMPLATES) >= 8 and len(used) == len(synth.TEMPLATES) >= 8, used


def test_birthplace_position(corpus):
    _, by_name, answer = corpus
    early = late_first = 0
    lengths = []
    for name, line in by_name.items():
        place = answer[name]
        early += line.index(place) + len(place) <= 96
        first = min((line.index(p), p) for p in synth.PLACES if p in line)[1]
        late_first += first != place
        lengths.append(len(line))
    n = len(by_name)
    assert early / n >= 0.90  # pretraining only ever sees the first 96 characters
    assert early / n < 1.0  # ... but a few lie beyond, as in the real data
    assert late_first / n >= 0.15  # a distractor place often comes first
    assert sum(60 <= x <= 140 for x in lengths) / n >= 0.95
    assert 80 <= statistics.mean(lengths) <= 120


def test_zipf_skew(corpus):
    _, _, answer = corpus
    counts = Counter(answer.values())
    top = counts.most_common(1)[0][1] / len(answer)
    median = statistics.median(counts.values()) / len(answer)
    assert 0.03 < top < 0.10
    assert top > 3 * median
    assert len(counts) >= 100  # still a long tail


def test_question_template_forced():
    # Small corpora may not draw the question template at random; it must be there anyway.
    for seed in range(30):
        files = synth.generate(10, seed)
        assert "Where was " in files["wiki.txt"] and "born?" in files["wiki.txt"]


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} is absent")
def test_real_files_parse_the_same_way():
    # The parser above is the contract; the real files must satisfy it too.
    for f in ["birth_places_train.tsv", "birth_dev.tsv"]:
        assert parse_tsv((REAL / f).read_text(encoding="utf-8"))
    assert parse_tsv((REAL / "birth_test_inputs.tsv").read_text(encoding="utf-8"), answers=False)
    wiki = (REAL / "wiki.txt").read_text(encoding="utf-8")
    assert not wiki.endswith("\n") and all(". " in line for line in wiki.split("\n"))


def test_people_minimum(tmp_path):
    with pytest.raises(UserError, match="at least 10"):
        synth.generate(9)
    with pytest.raises(UserError):
        synth.write_corpus(tmp_path / "out", people=3)
    assert not (tmp_path / "out").exists()


def test_write_corpus(tmp_path):
    out = tmp_path / "a" / "b"
    paths = synth.write_corpus(out, people=50, seed=1)
    files = synth.generate(50, seed=1)
    assert sorted(p.name for p in paths) == sorted(files)
    for p in paths:
        assert p.read_bytes() == files[p.name].encode("utf-8")
    assert sorted(os.listdir(out)) == sorted(files)  # no temp files left

    (out / "birth_dev.tsv").write_text("mine\n")
    with pytest.raises(UserError, match="birth_dev.tsv"):
        synth.write_corpus(out, people=50, seed=2)
    assert (out / "birth_dev.tsv").read_text() == "mine\n"
    assert (out / "wiki.txt").read_text(encoding="utf-8") == files["wiki.txt"]  # nothing touched
    synth.write_corpus(out, people=50, seed=2, overwrite=True)
    assert (out / "birth_dev.tsv").read_text(encoding="utf-8") == synth.generate(50, 2)["birth_dev.tsv"]


def test_write_is_atomic(tmp_path, monkeypatch):
    (tmp_path / "wiki.txt").write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        synth.write_corpus(tmp_path, people=10, overwrite=True)
    assert os.listdir(tmp_path) == ["wiki.txt"] and (tmp_path / "wiki.txt").read_text() == "old"


@settings(max_examples=20, deadline=None)
@given(people=st.integers(10, 200), seed=st.integers(0, 2**32 - 1))
def test_any_corpus_is_valid(people, seed):
    check_corpus(synth.generate(people, seed), people)


def test_simple_style_is_one_plain_sentence_and_keeps_the_vocabulary_property():
    files = synth.generate(60, seed=3, style="simple")
    lines = files["wiki.txt"].split("\n")
    plain = [line for line in lines if " was born in " in line and '"' not in line]
    assert len(plain) >= len(lines) - 5
    for line in plain:
        name = name_of(line)
        assert line.startswith(f"{name}. {name} was born in ") and line.endswith(" .")
    assert set("".join(files[f] for f in synth.FILES if f.endswith(".tsv"))) - {"\t", "\n"} <= set(files["wiki.txt"])
    with pytest.raises(UserError, match="unknown corpus style"):
        synth.generate(60, style="fancy")


def test_several_bios_per_person_are_differently_worded_lines_of_the_same_fact():
    files = synth.generate(40, seed=2, style="simple", bios=3)
    lines = files["wiki.txt"].split("\n")
    assert len(lines) == 120
    for q, place in (line.split("\t") for line in files["birth_dev.tsv"].splitlines()):
        name = name_in_question(q)
        mine = [line for line in lines if line.startswith(name + ". ")]
        assert len(mine) == 3 and len(set(mine)) == 3  # three lines, three wordings
        assert all(place in line for line in mine)
    with pytest.raises(UserError, match="bios per person"):
        synth.generate(40, style="simple", bios=9)
