import math
import random

import torch

from spangpt.model import GPT, ModelConfig
from spangpt.train import TrainConfig, lr_multiplier, make_optimizer, train

SMALL = dict(vocab_size=30, block_size=32, n_layer=1, n_head=2, n_embd=16)


def test_paper_schedule_hand_computed_and_cycles_past_final_tokens():
    cfg = TrainConfig(schedule="paper", warmup_tokens=100, final_tokens=1100)
    assert lr_multiplier(50, cfg, 0) == 0.5  # warmup: linear
    assert lr_multiplier(100, cfg, 0) == 1.0  # cos(0)
    assert math.isclose(lr_multiplier(600, cfg, 0), 0.5)  # half way: 0.5 * (1 + cos(pi/2))
    assert lr_multiplier(1100, cfg, 0) == 0.1  # floor
    # the original never clamps progress: at 2x the decay length, cos(2pi) = 1 -> back to the peak
    assert math.isclose(lr_multiplier(2100, cfg, 0), 1.0)


def test_cosine_schedule_decays_once_over_the_run():
    cfg = TrainConfig(schedule="cosine", warmup_tokens=0)
    assert lr_multiplier(0, cfg, 1000) == 1.0
    assert math.isclose(lr_multiplier(500, cfg, 1000), 0.5)
    assert lr_multiplier(1000, cfg, 1000) == lr_multiplier(5000, cfg, 1000) == 0.1


def test_weight_decay_only_on_linear_weights():
    m = GPT(ModelConfig(**SMALL))
    decay, no_decay = make_optimizer(m, TrainConfig(), torch.device("cpu")).param_groups
    linear_weights = {id(mod.weight) for mod in m.modules() if isinstance(mod, torch.nn.Linear)}
    assert {id(p) for p in decay["params"]} == linear_weights and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 or p is m.tok_emb.weight or p is m.pos_emb.weight for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def _copy_task(rng):
    """Learnable toy data: count upward from a random start (the next token is the current one + 1)."""
    out = []
    for _ in range(64):
        start = rng.randrange(2, 14)
        x = list(range(start, start + rng.randint(4, 16)))
        out.append((x, x[1:] + [0]))
    return out


def _run(seed, pack=True, steps=30, workers=0):
    torch.manual_seed(seed)  # init, as stages.py does before building the model
    m = GPT(ModelConfig(**SMALL, dropout=0.1))
    cfg = TrainConfig(epochs=100, batch_size=16, lr=1e-2, schedule="constant", max_steps=steps, seed=seed,
                      device="cpu", precision="fp32", pack=pack, log_interval=5, progress=False, workers=workers)
    return train(m, _copy_task, cfg)


def test_same_seed_same_losses_and_training_learns(tmp_path):
    a, b, c = _run(0), _run(0), _run(1)
    la, lb, lc = ([h["loss"] for h in r.history] for r in (a, b, c))
    assert la == lb
    assert la != lc
    assert la[-1] < 0.8 * la[0]
    assert a.steps == 30 and a.tokens == 30 * 16 * 31  # schedule tokens: examples * (block_size - 1)


def test_metrics_file_is_json_lines(tmp_path):
    import json

    m = GPT(ModelConfig(**SMALL))
    cfg = TrainConfig(epochs=2, batch_size=8, max_steps=10, device="cpu", precision="fp32", log_interval=4,
                      schedule="constant", progress=False)
    train(m, _copy_task, cfg, metrics_path=tmp_path / "m.jsonl")
    recs = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [4, 8, 10]
    assert {"step", "tokens", "loss", "lr", "real_tokens", "gflops"} <= set(recs[0]) and recs[0]["gflops"] > 0


def test_a_data_worker_process_changes_nothing_but_where_batches_are_made():
    inline, worker = _run(0, steps=12), _run(0, steps=12, workers=1)
    assert [h["loss"] for h in inline.history] == [h["loss"] for h in worker.history]
    assert (inline.tokens, inline.real_tokens) == (worker.tokens, worker.real_tokens)
