"""benchmarks/short_lines.py: each line cut at a word within CHARS, the question files beside it, counts."""
import re

import pytest

from conftest import load_benchmark
from spangpt.errors import UserError


@pytest.mark.parametrize("line, chars, want", [
    ("Ada Lee. Ada Lee was born in Paris.", 80, "Ada Lee. Ada Lee was born in Paris."),  # fits: whole
    ("Ada Lee. Ada Lee was born in Paris.", 20, "Ada Lee. Ada Lee was"),  # the last space within 20
    ("Ada Lee. Ada Lee was born in Paris.", 16, "Ada Lee. Ada Lee"),  # a space at exactly 16
    ("Bo. Bartholomewsonsworth-Smythe", 12, "Bo. Bartholo"),  # one long word: cut at 12
])
def test_a_line_is_cut_at_its_last_word_within_the_limit(line, chars, want):
    assert load_benchmark("short_lines").cut(line, chars) == want


def test_it_writes_a_data_folder_that_keeps_the_questions_and_counts_the_answers_kept(synth_dir, tmp_path, capsys):
    bench = load_benchmark("short_lines")
    out = tmp_path / "short"
    bench.main([str(synth_dir), str(out), "--chars", "30"])
    lines = (synth_dir / "wiki.txt").read_text(encoding="utf-8").splitlines()
    short = (out / "wiki.txt").read_text(encoding="utf-8").splitlines()
    assert len(short) == len(lines) and all(s == bench.cut(line, 30) for s, line in zip(short, lines))
    assert all(len(s) <= 30 and line.startswith(s) for s, line in zip(short, lines))
    assert (out / "birth_dev.tsv").read_text() == (synth_dir / "birth_dev.tsv").read_text()
    printed = capsys.readouterr().out
    kept = sum(map(len, short))
    assert f"{kept:,} of {sum(map(len, lines)):,} characters kept" in printed
    # the count of answers kept, recomputed plainly: the answer inside the person's cut line
    by_name = {s.split(". ")[0]: s for s in short}
    pairs = [row.split("\t") for row in (synth_dir / "birth_dev.tsv").read_text().splitlines()]
    inside = sum(a in by_name.get(q[len("Where was "):-len(" born?")], "") for q, a in pairs)
    assert re.search(rf"birth_dev\.tsv: the answer is in the kept text for {inside} of {len(pairs)} people", printed)
    with pytest.raises(UserError, match="wiki.txt: exists"):  # never over an earlier folder's corpus
        bench.main([str(synth_dir), str(out)])
