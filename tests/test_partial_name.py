"""benchmarks/partial_name.py: partial questions and counts on hand-made cases."""
from conftest import load_benchmark

mod = load_benchmark("partial_name")


def test_partial_questions_keep_one_word_of_the_name():
    assert mod.partial_questions("Where was Cid P. Moe born?") == {"first": "Where was Cid born?",
                                                                  "last": "Where was Moe born?"}
    assert mod.partial_questions("Where was Plato born?") is None  # nothing to drop
    assert mod.partial_questions("Who is Ann Lee?") is None
    assert mod.partial_questions("Where was born?") is None  # not "born?": the two ends share one space
    assert mod.partial_questions("Where was Asa G. Yancey, Sr. born?") == {"first": "Where was Asa born?",
                                                                          "last": "Where was Sr. born?"}


def test_compare_against_hand_computed_counts():
    answers = ["Paris", "Rome", "Oslo", "Kyiv"]
    full = ["Paris", "Rome", "Paris", "Lima"]     # right, right, wrong, wrong
    partial = ["Paris", "Paris", "Paris", "Oslo"]  # kept, changed, kept, changed
    c = mod.compare(full, partial, answers)
    assert {k: v for k, v in c.items() if k != "same_by_chance"} == \
        {"people": 4, "right_full": 2, "same": 2, "right_partial": 1, "same_when_full_right": 1}
    # "Paris" is the whole-name answer of 2 people: person 0's and person 2's partial "Paris" match 1 of the
    # 3 others each, person 1's matches 2 of 3; person 3's "Oslo" matches none: (1 + 2 + 1 + 0) / 3
    assert abs(c["same_by_chance"] - 4 / 3) < 1e-9


def test_main_probes_only_names_of_two_words_or_more(tmp_path, monkeypatch, capsys):
    (tmp_path / "birth_dev.tsv").write_text("Where was Ann Lee born?\tParis\nWhere was Plato born?\tAthens\n"
                                            "Where was Bob Lee born?\tRome\n", encoding="utf-8")
    asked = []

    def keyed_on_the_surname(ckpt, questions):  # a model that knows only "Lee" -> Paris
        asked.append(questions)
        return ["Paris" if "Lee" in q else "London" for q in questions]

    monkeypatch.setattr(mod, "answers_of", keyed_on_the_surname)
    mod.main([str(tmp_path), "m.safetensors"])
    out = capsys.readouterr().out
    assert asked[0] == ["Where was Ann Lee born?", "Where was Bob Lee born?"]
    assert "2 people with a name of 2+ words, 1 right with the whole name" in out
    assert "first word only: same answer 0 (0.0 by chance), 0 of the 1 right ones kept, 0 right" in out
    assert "last word only: same answer 2 (2.0 by chance), 1 of the 1 right ones kept, 1 right" in out
