from conftest import load_benchmark

from spangpt.corpus import lines_by_name

LINES = ["Ann Lee. Ann Lee was born in Paris .",
         "Bo Ek. Bo Ek was born in Rome .",
         "Cy Do. Cy Do lived in Lima .",
         "Di Fa. " + "x " * 50 + "born in Bern .",
         "Ed Go. Ed Go was born in New York City .",
         "Florence Nightingale. She lived in Oslo ."]
PAIRS = [("Where was Ann Lee born?", "Paris"), ("Where was Bo Ek born?", "Rome"), ("Where was Cy Do born?", "Quito"),
         ("Where was Di Fa born?", "Bern"), ("Where was Ed Go born?", "New York City"),
         ("Where was Florence Nightingale born?", "Florence")]
PREDS = ["Oslo", "Rome", "Lima", "Rome", "Lima", "Oslo"]


def test_each_wrong_answer_gets_the_first_cause_that_applies(monkeypatch):
    mod = load_benchmark("error_table")
    asked = []

    def completions(model, vocab, heads, max_chars=32):
        asked.extend(heads)
        return ["Paris ." if h.startswith("Ann") else "Oslo ." for h in heads]  # Ann's fact is stored, Ed's not

    monkeypatch.setattr(mod, "predict", lambda model, vocab, qs: PREDS)
    monkeypatch.setattr(mod, "completions", completions)
    c = mod.classify(None, None, lines_by_name(LINES), PAIRS)
    assert c == {"right": 1, "wrong": 5, "not in line": 2, "past 96": 1, "not stored": 1, "not reached": 1,
                 "several words": 1, "own line": 2}  # Cy Do's Lima and Florence's Oslo are in their lines
    assert asked == ["Ann Lee. Ann Lee was born in ", "Ed Go. Ed Go was born in "]  # the line up to the answer


def test_the_table_has_a_row_per_model_whose_causes_sum_to_the_wrong(run_dir, synth_dir, capsys):
    load_benchmark("error_table").main([str(synth_dir), str(run_dir)])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r[0].strip() for r in rows[1:]] == ["scratch/seed0", "vanilla/seed0", "rope/seed0"]
    for r in rows[1:]:
        right, wrong, *causes = (int(v) for v in r[1:7])
        assert sum(causes) == wrong and right + wrong == len((synth_dir / "birth_dev.tsv").read_text().splitlines())
