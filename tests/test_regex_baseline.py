"""benchmarks/regex_baseline.py: the rule reads the place after "born ... in", and the script scores it."""
import re

import pytest

from conftest import load_benchmark


@pytest.mark.parametrize("line, place", [
    ("Ada Lee. Ada Lee (born 1901 in Paris) is a poet.", "Paris"),
    ("Bo Chan. Bo Chan was born on 3 May in New York City, and moved to Leeds.", "New York City"),
    ("Cy Park. Cy Park was born in Stratford-upon-Avon.", "Stratford-upon-Avon"),
    ("Di Ross. Di Ross is a poet. She lived in Rome; born 1950.", ""),  # no "in" after "born" in its sentence
    ("Ed Moe. Ed Moe was born. He lives in Oslo.", ""),  # the sentence ended before "in"
    (None, ""),  # a person without a line
])
def test_the_rule_reads_the_place_after_born_in(line, place):
    assert load_benchmark("regex_baseline").rule_answer(line) == place


def test_it_scores_the_rule_on_a_question_file(synth_dir, capsys):
    load_benchmark("regex_baseline").main([str(synth_dir)])
    m = re.search(r"birth_dev\.tsv: the rule finds a place for (\d+) of (\d+) people and answers (\d+) right: "
                  r"([\d.]+)% exact match", capsys.readouterr().out)
    found, n, right, pct = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    assert 0 < right <= found <= n and pct == round(100 * right / n, 1)
