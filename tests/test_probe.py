import math

import pytest
import torch

from spangpt import probe
from spangpt.errors import UserError
from spangpt.evaluate import predict
from spangpt.generate import greedy_plain
from spangpt.vocab import MASK


def test_top_answers_are_probabilities_of_distinct_answers_summing_to_at_most_1(trained):
    model, vocab, questions, _ = trained
    for q in questions[:8]:
        answers = probe.top_answers(model, vocab, q, k=5)
        assert len(answers) == 5 and len({a.text for a in answers}) == 5
        assert all(0 < a.probability <= 1 for a in answers)
        assert sum(a.probability for a in answers) <= 1 + 1e-6
        assert [a.probability for a in answers] == sorted((a.probability for a in answers), reverse=True)


def test_beam_of_one_is_greedy_decoding(trained):
    model, vocab, questions, _ = trained
    greedy = predict(model, vocab, questions)
    assert [probe.top_answers(model, vocab, q, k=1)[0].text for q in questions] == greedy


def test_answer_probability_is_the_product_of_the_answer_characters_and_the_closing_mask(trained):
    """Checked against the chain rule written out: one forward pass per character, the plain way."""
    model, vocab, questions, answers = trained
    q, a = questions[3], answers[3]
    ids = vocab.encode(q + MASK)
    p = 1.0
    with torch.no_grad():
        for c in vocab.encode(a + MASK):
            logits, _ = model(torch.tensor([ids]))
            p *= float(logits[0, -1].softmax(-1)[c])
            ids = ids + [c]
    assert math.isclose(probe.answer_probability(model, vocab, q, a), p, rel_tol=1e-4)
    # and each beam answer's probability is its own teacher-forced one
    for ans in probe.top_answers(model, vocab, q, k=3):
        assert math.isclose(probe.answer_probability(model, vocab, q, ans.text), ans.probability, rel_tol=1e-4)


def test_greedy_answer_is_evaluations_answer_with_its_probability(trained):
    model, vocab, questions, _ = trained
    g = probe.greedy_answer(model, vocab, questions[0])
    assert g.text == predict(model, vocab, questions[:1])[0] and g.closed
    assert math.isclose(g.probability, probe.answer_probability(model, vocab, questions[0], g.text), rel_tol=1e-6)


def _untrained():
    from spangpt.model import GPT, ModelConfig
    from spangpt.vocab import Vocab

    vocab = Vocab.from_text("abcdefghij Where was born?")
    torch.manual_seed(1)
    return GPT(ModelConfig(vocab_size=len(vocab), block_size=48, n_layer=1, n_head=2, n_embd=16)).eval(), vocab


def test_an_answer_never_closed_is_greedys_too_and_marked_open():
    """An untrained model rarely writes ⁇: greedy stops after MAX_ANSWER characters (or at the block's end),
    and the beam of one stops there too, with the probability of what was written."""
    model, vocab = _untrained()
    for q in ("Where was abc born?", "Where was " + "j" * 20 + " born?"):  # the second ends at the block
        g, beam = probe.greedy_answer(model, vocab, q), probe.top_answers(model, vocab, q, k=1)[0]
        assert not g.closed and not beam.closed and g.text == beam.text
        assert g.text == predict(model, vocab, [q])[0]
        assert len(g.text) == min(probe.MAX_ANSWER, 48 - len(q) - 1)
        assert math.isclose(g.probability, beam.probability, rel_tol=1e-4)
        assert math.isclose(g.probability, probe.answer_probability(model, vocab, q, g.text, closed=False),
                            rel_tol=1e-6)


def test_an_answer_past_the_block_has_no_probability_rather_than_a_cut_one():
    model, vocab = _untrained()
    q = "Where was " + "j" * 20 + " born?"  # 36 characters and ⁇: 11 left in the block of 48
    assert probe.answer_probability(model, vocab, q, "a" * 10) > 0
    assert probe.answer_probability(model, vocab, q, "a" * 11, closed=False) > 0
    with pytest.raises(UserError, match="the model reads at most 48"):
        probe.answer_probability(model, vocab, q, "a" * 11)  # 11 and its ⁇: one too many


@pytest.mark.parametrize("kw, message", [
    ({"max_chars": 0}, "max_chars must be a whole number >= 1"),
    ({"max_chars": -5}, "max_chars must be"),
    ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
    ({"temperature": float("inf")}, "temperature must be"),
    ({"temperature": -1.0}, "temperature must be"),
    ({"temperature": 1.0, "seed": 2**70}, "seed must be a whole number from 0"),
    ({"temperature": 1.0, "top_k": -1}, "top_k must be a whole number >= 0"),
    ({"temperature": 1.0, "top_k": 2.5}, "top_k must be"),
])
def test_complete_refuses_what_it_cannot_use_in_one_line(kw, message):
    model, vocab = _untrained()
    with pytest.raises(UserError, match=message):
        probe.complete(model, vocab, "ab", **kw)


def test_sampling_never_writes_the_padding_character_and_a_tiny_temperature_is_greedy():
    model, vocab = _untrained()
    hot = "".join(probe.complete(model, vocab, "ab", 40, temperature=50.0, seed=s) for s in range(10))
    assert len(hot) > 100 and "□" not in hot
    assert probe.complete(model, vocab, "ab", 20, temperature=1e-300) == probe.complete(model, vocab, "ab", 20)


def test_top_k_sampling_keeps_to_the_k_likeliest_characters():
    """At each step the character written is one of the k that a forward pass ranks first (padding aside),
    checked one step at a time, written plainly here; with k = 1 that is the argmax at every temperature."""
    model, vocab = _untrained()
    pad = vocab.encode("□")[0]

    def ranked_first(ids: list[int], k: int) -> list[int]:
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0][0, -1].double()
        logits[pad] = -float("inf")
        return logits.topk(k).indices.tolist()

    for k in (1, 2):
        texts = {probe.complete(model, vocab, "ab", 20, temperature=50.0, seed=s, top_k=k) for s in range(5)}
        assert len(texts) == 1 if k == 1 else len(texts) > 1  # k = 1 leaves nothing to draw
        for text in texts:
            ids = vocab.encode("ab")
            for ch in text:
                assert vocab.encode(ch)[0] in ranked_first(ids, k), (k, text)
                ids.append(vocab.encode(ch)[0])


def test_each_attention_row_is_a_softmax_over_the_prompt(trained):
    model, vocab, questions, _ = trained
    q = questions[5]
    chars, rows = probe.attention(model, vocab, q)
    assert "".join(chars) == q + MASK
    assert rows.shape == (model.cfg.n_layer, model.cfg.n_head, len(q) + 1)
    assert torch.allclose(rows.sum(-1), torch.ones(model.cfg.n_layer, model.cfg.n_head), atol=1e-5)
    assert (rows >= 0).all()
    # recording leaves the model as it was: the next forward pass records nothing
    assert all(b.attn.weights is None and not b.attn.record for b in model.blocks)


def test_attention_is_the_models_own_softmax():
    """Against attention written out in the test from the first layer's weights."""
    from spangpt.model import GPT, ModelConfig
    from spangpt.vocab import Vocab

    vocab = Vocab.from_text("abc ?")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(vocab), block_size=16, n_layer=1, n_head=2, n_embd=8, variant="vanilla"))
    _, rows = probe.attention(model, vocab, "ab c?")
    ids = torch.tensor([vocab.encode("ab c?" + MASK)])
    x = model.blocks[0].ln1(model.tok_emb(ids) + model.pos_emb(torch.arange(ids.size(1))))
    q, k, _ = model.blocks[0].attn.qkv(x).split(8, dim=-1)
    q, k = (t.view(1, -1, 2, 4).transpose(1, 2) for t in (q, k))
    want = ((q[:, :, -1:] @ k.transpose(-2, -1)) / 2.0).softmax(-1)[0, :, 0]  # the last query over every key
    assert torch.allclose(rows[0], want, atol=1e-5)


def test_complete_is_greedy_decoding_of_the_prefix_up_to_the_first_mask(trained):
    model, vocab, questions, _ = trained
    for prefix in ("Where was ab", questions[2], "Where"):
        plain = vocab.decode(greedy_plain(model, vocab.encode(prefix), 20))
        assert probe.complete(model, vocab, prefix, max_chars=20) == plain.split(MASK)[0]


def test_a_bare_name_becomes_the_question():
    assert probe.as_question("Ada Lovelace") == "Where was Ada Lovelace born?"
    assert probe.as_question("  Where was Ada born? ") == "Where was Ada born?"
    assert probe.as_question("Who is Ada?") == "Who is Ada?"


@pytest.mark.parametrize("text, message", [
    ("", "empty question"),
    ("   ", "empty question"),
    ("Where was Zoë born?", "characters the model cannot read: 'Zë'"),
    ("Where was a⁇b born?", "characters the model cannot read: '⁇'"),
    ("a" * 80, "question is 96 characters; with the ⁇ after it the model reads at most 63"),
])
def test_what_the_model_cannot_read_is_a_one_line_error(trained, text, message):
    model, vocab, _, _ = trained
    with pytest.raises(UserError, match=message):
        probe.top_answers(model, vocab, probe.as_question(text))


def test_sampling_is_seeded_and_near_zero_temperature_is_greedy(trained):
    model, vocab, questions, _ = trained
    prefix = questions[4] + MASK
    assert probe.complete(model, vocab, prefix, 20, temperature=1e-4) == probe.complete(model, vocab, prefix, 20)
    hot = [probe.complete(model, vocab, prefix, 20, temperature=2.0, seed=s) for s in range(6)]
    assert hot == [probe.complete(model, vocab, prefix, 20, temperature=2.0, seed=s) for s in range(6)]
    assert len(set(hot)) > 1  # a high temperature really samples
    assert all(MASK not in h for h in hot)
