"""benchmarks/seed_agreement.py: counts checked on hand-made predictions."""
import pytest

from conftest import load_benchmark


def _mod():
    return load_benchmark("seed_agreement")


def test_counts_against_hand_computed_case():
    answers = ["Paris", "Oslo", "Rome", "Lima"]
    runs = [["Paris", "Oslo", "Kyiv", "Bern"],   # 2 right
            ["Paris", "Kyiv", "Rome", "Bern"],   # 2 right
            ["Paris", "Oslo", "Rome", "Lima"]]   # 4 right
    r = _mod().agreement(answers, runs)
    # every run: Paris only; some run: all four; vote: Paris (3), Oslo (2 of 3), Rome (2 of 3), Bern (2) wrong
    assert r == {"questions": 4, "per_run": [2, 2, 4], "all": 1, "any": 4, "vote": 3}


def test_tie_goes_to_the_first_run_listed():
    m = _mod()
    assert m.agreement(["A"], [["A"], ["B"]])["vote"] == 1
    assert m.agreement(["A"], [["B"], ["A"]])["vote"] == 0


def test_main_prints_counts_and_refuses_a_short_file(tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text("Where was A born?\tParis\nWhere was B born?\tOslo\n", encoding="utf-8")
    (tmp_path / "a.pred").write_text("Paris\nOslo\n", encoding="utf-8")
    (tmp_path / "b.pred").write_text("Paris\nRome\n", encoding="utf-8")
    _mod().main([str(dev), str(tmp_path / "a.pred"), str(tmp_path / "b.pred")])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["2", "/", "2"] and out[1].split()[:3] == ["1", "/", "2"]
    assert [line.split()[0] for line in out[2:]] == ["1", "2", "2"]  # all, any, vote
    (tmp_path / "c.pred").write_text("Paris\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="c.pred: 1 predictions for 2 questions"):
        _mod().main([str(dev), str(tmp_path / "c.pred")])
