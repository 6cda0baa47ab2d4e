import pytest

from spangpt.errors import UserError
from spangpt.evaluate import accuracy, extract_answer, format_accuracy, london_baseline, predict, write_predictions
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import Vocab


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


def test_answer_loss_is_the_mean_nll_of_the_answer_characters():
    import torch

    from spangpt.evaluate import answer_loss
    from spangpt.model import GPT, ModelConfig
    from spangpt.vocab import MASK, Vocab

    pairs = [("Where was Ann born?", "Paris"), ("Where was Bob Li born?", "Rome")]
    vocab = Vocab.from_text("".join(q + a for q, a in pairs))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(vocab), block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    total, count = 0.0, 0
    for q, a in pairs:  # plain: score each character of ⁇answer⁇ given everything before it
        ids = vocab.encode(q + MASK + a + MASK)
        with torch.no_grad():
            logp = model(torch.tensor([ids]))[0][0].log_softmax(-1)
        for t in range(len(q) - 1, len(ids) - 1):
            total -= float(logp[t, ids[t + 1]])
            count += 1
    assert count == sum(len(a) + 2 for _, a in pairs)
    assert abs(answer_loss(model, vocab, pairs) - total / count) < 1e-4


def test_a_question_too_long_names_its_line_and_its_own_length():
    vocab = Vocab.from_text("abcdefgh ?")
    model = GPT(ModelConfig(vocab_size=len(vocab), block_size=8, n_layer=1, n_head=2, n_embd=8))
    assert len(predict(model, vocab, ["abcdef"], max_new=2)) == 1  # 6 characters + ⁇ = 7 positions: fits
    with pytest.raises(UserError, match=r"^q\.tsv:3: question is 7 characters; with the ⁇ after it the model reads "
                                        r"at most 7$"):
        predict(model, vocab, ["abc", "abcdefg"], source="q.tsv", lines=[1, 3])
