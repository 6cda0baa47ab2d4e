from spangpt.evaluate import accuracy, extract_answer, format_accuracy, london_baseline, write_predictions


def test_extract_answer_between_first_and_second_mask():
    assert extract_answer("Where was X born?⁇Paris⁇□□") == "Paris"
    assert extract_answer("Where was X born?⁇Paris") == "Paris"  # no closing ⁇ within 32 chars
    assert extract_answer("no mask at all") == ""


def test_accuracy_and_london():
    assert accuracy(["a", "b", "c"], ["a", "x", "c"]) == (2, 3)
    assert london_baseline(["London", "Paris", "London", "Rome"]) == (2, 4)
    assert format_accuracy(1, 4) == "Correct: 1 out of 4: 25.0%"


def test_predictions_file_one_per_line(tmp_path):
    p = tmp_path / "pred.txt"
    write_predictions(p, ["Paris", "New\nYork", ""])
    assert p.read_text(encoding="utf-8").split("\n") == ["Paris", "New York", "", ""]
