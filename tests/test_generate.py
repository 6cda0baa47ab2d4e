import pytest
import torch

from spangpt.evaluate import extract_answer, predict
from spangpt.generate import greedy_batched, greedy_plain
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import MASK


def test_batched_kv_cache_decoding_equals_plain_decoding(trained):
    model, vocab, questions, answers = trained
    plain = [extract_answer(q + MASK + vocab.decode(greedy_plain(model, vocab.encode(q + MASK), 32)))
             for q in questions]
    batched = predict(model, vocab, questions)
    assert batched == plain
    assert sum(p == a for p, a in zip(plain, answers)) > len(answers) / 4  # the model learned something


def test_length_sorted_chunks_keep_each_prompt_s_answer(trained):
    model, vocab, questions, _ = trained
    prompts = [vocab.encode(q + MASK) for q in questions]
    assert len({len(p) for p in prompts}) > 5  # lengths vary, so sorting reorders
    one_chunk = greedy_batched(model, prompts, batch_size=len(prompts))
    assert greedy_batched(model, prompts, batch_size=7) == one_chunk  # 10 chunks, answers back in order
    assert [greedy_plain(model, p, 32)[: len(o)] for p, o in zip(prompts, one_chunk)] == one_chunk


def test_batched_stops_at_the_closing_mask_and_pads_do_not_leak(trained):
    model, vocab, questions, _ = trained
    prompts = [vocab.encode(q + MASK) for q in questions[:10]]
    outs = greedy_batched(model, prompts, max_new=32)
    assert any(vocab.stoi[MASK] in o for o in outs)  # the trained model closes its answers
    for p, o in zip(prompts, outs):
        if vocab.stoi[MASK] in o:
            assert o[-1] == vocab.stoi[MASK] and o.count(vocab.stoi[MASK]) == 1
        # decoding a prompt alone or next to longer ones gives the same tokens (left padding is invisible)
        assert greedy_batched(model, [p], max_new=32)[0] == o


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
def test_prompts_near_the_block_end_get_the_steps_plain_decoding_gives_them(variant):
    """Random weights never emit the closing mask, so every prompt decodes until max_new or the block's
    end: 10 tokens after a 5-token prompt, 2 after a 30-token one (block 32). In one chunk the longest
    prompt used to cut everyone to 2."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=20, block_size=32, n_layer=1, n_head=2, n_embd=16, variant=variant)).eval()
    g = torch.Generator().manual_seed(1)
    lengths = (5, 30, 23, 30, 22, 31, 32, 40)  # 32 and 40 fill the block: nothing to decode
    prompts = [torch.randint(1, 20, (n,), generator=g).tolist() for n in lengths]
    got = greedy_batched(model, prompts, max_new=10, stop_id=0)
    assert [len(x) for x in got] == [max(0, min(10, 32 - n)) for n in lengths]  # token 0 (the stop) never came
    assert got == [greedy_plain(model, p, max_new=10) for p in prompts]
