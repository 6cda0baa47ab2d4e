"""benchmarks/wrong_answers.py: counts checked on a hand-made corpus."""
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

from spangpt.errors import UserError

WIKI = ["Ann Lee. Ann Lee was born in Paris .",
        "Bob Lee. Bob Lee was born in Rome .",
        "Cid P. Moe. Cid P Moe was born in Oslo and lives in Lima .",
        "Dan Roe. Dan Roe was born in Kyiv ."]
QUESTIONS = [("Where was Ann Lee born?", "Paris"), ("Where was Cid P. Moe born?", "Oslo"),
             ("Where was Dan Roe born?", "Kyiv"), ("Where was Bob Lee born?", "Rome")]


def test_counts_against_hand_computed_case():
    preds = ["Rome",   # wrong: Bob Lee's place, a namesake (shares "Lee")
             "Lima",   # wrong: a place of Cid P. Moe's own line (whose name holds an initial)
             "Kyiv",   # right
             "Bern"]   # wrong: no line names it; Bob Lee has a namesake (Ann Lee)
    c = load_benchmark("wrong_answers").classify(WIKI, QUESTIONS, preds, draws=50)
    assert {k: v for k, v in c.items() if k != "chance"} == \
        {"right": 1, "wrong": 3, "own_line": 1, "with_namesakes": 2, "namesake_line": 1}
    # chance: Ann Lee draws 1 of the 3 other lines, and "Rome" is in 1 of them; "Bern" is in none
    assert 0.1 < c["chance"] < 0.6


def test_right_answers_by_where_the_answer_lies():
    long = "Eve Ng. Eve Ng" + " was a painter" * 6 + " born in Riga ."  # "Riga" ends past character 96
    assert long.find("Riga") + 4 > 96 and WIKI[0].find("Paris") + 5 <= 96
    questions = QUESTIONS + [("Where was Eve Ng born?", "Riga"), ("Where was Fay Ox born?", "Nice")]
    preds = ["Paris", "Lima", "Kyiv", "Rome", "Riga", "Nice"]  # Nice: right, but Fay Ox has no line
    assert load_benchmark("wrong_answers").by_position(WIKI + [long], questions, preds) == \
        {"first 96": (3, 4), "past 96": (1, 1), "not in line": (1, 1)}


def test_main_prints_a_line_per_file_and_refuses_a_short_one(tmp_path, capsys):
    (tmp_path / "wiki.txt").write_text("\n".join(WIKI), encoding="utf-8")
    (tmp_path / "birth_dev.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in QUESTIONS), encoding="utf-8")
    (tmp_path / "a.pred").write_text("Rome\nLima\nKyiv\nBern\n", encoding="utf-8")
    (tmp_path / "short.pred").write_text("Rome\n", encoding="utf-8")
    mod = load_benchmark("wrong_answers")
    mod.main([str(tmp_path), str(tmp_path / "a.pred")])
    out = capsys.readouterr().out
    assert "1 right, 3 wrong" in out and "1 of 2 (people with namesakes)" in out
    assert "first 96 1/4, past 96 0/0, not in line 0/0" in out
    with pytest.raises(UserError, match="1 predictions for 4 questions"):
        mod.main([str(tmp_path), str(tmp_path / "short.pred")])


def test_script_fails_on_a_missing_file_with_one_line(tmp_path):
    """Run as a user runs it: one line naming the file, status 2 (as the CLI), no traceback."""
    (tmp_path / "wiki.txt").write_text("\n".join(WIKI), encoding="utf-8")
    (tmp_path / "birth_dev.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in QUESTIONS), encoding="utf-8")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "wrong_answers.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "gone.pred")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"wrong_answers.py: error: {tmp_path / 'gone.pred'}: file not found"]
