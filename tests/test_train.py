import math
import random

import pytest
import torch

from spangpt.config import load_recipe, train_config
from spangpt.errors import UserError
from spangpt.model import GPT, ModelConfig
from spangpt.report import epoch_losses
from spangpt import train as train_mod
from spangpt.train import DECAY_ON, TrainConfig, decay_groups, lr_multiplier, make_optimizer, param_rms, train

SMALL = dict(vocab_size=30, block_size=32, n_layer=1, n_head=2, n_embd=16)


def test_paper_schedule_hand_computed_and_cycles_past_final_tokens():
    cfg = TrainConfig(schedule="paper", warmup_tokens=100, final_tokens=1100)
    assert lr_multiplier(50, cfg, 0) == 0.5  # warmup: linear
    assert lr_multiplier(100, cfg, 0) == 1.0  # cos(0)
    assert math.isclose(lr_multiplier(600, cfg, 0), 0.5)  # half way: 0.5 * (1 + cos(pi/2))
    assert lr_multiplier(1100, cfg, 0) == 0.1  # floor
    # the original never clamps progress: at 2x the decay length, cos(2pi) = 1 -> back to the peak
    assert math.isclose(lr_multiplier(2100, cfg, 0), 1.0)


def test_paper_schedule_without_final_tokens_decays_over_the_run():
    """A bare TrainConfig() (schedule "paper", final_tokens 0) must not swing between peak and floor every
    step (progress counted in raw tokens): it decays over the run's own tokens, as the original's cosine would."""
    cfg = TrainConfig(warmup_tokens=100)
    assert (cfg.schedule, cfg.final_tokens) == ("paper", 0)
    lrs = [lr_multiplier(t, cfg, 1100) for t in range(100, 1101, 37)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[0] == 1.0 and lrs[-1] < 0.2
    assert math.isclose(lr_multiplier(600, cfg, 1100), 0.5)


def test_cosine_schedule_decays_once_over_the_run():
    cfg = TrainConfig(schedule="cosine", warmup_tokens=0)
    assert lr_multiplier(0, cfg, 1000) == 1.0
    assert math.isclose(lr_multiplier(500, cfg, 1000), 0.5)
    assert lr_multiplier(1000, cfg, 1000) == lr_multiplier(5000, cfg, 1000) == 0.1


def test_linear_schedule_warms_up_then_falls_straight_to_zero():
    cfg = TrainConfig(schedule="linear", warmup_tokens=200)
    assert lr_multiplier(100, cfg, 1200) == 0.5  # warmup as in the others
    assert lr_multiplier(200, cfg, 1200) == 1.0
    assert math.isclose(lr_multiplier(450, cfg, 1200), 0.75)  # a quarter of the 1,000 decay tokens
    assert math.isclose(lr_multiplier(1100, cfg, 1200), 0.1)  # no floor: 0.1 is only one point on the way
    assert lr_multiplier(1200, cfg, 1200) == lr_multiplier(5000, cfg, 1200) == 0.0


def _one_layer_names(variant="vanilla"):
    """The parameters of a 1-layer GPT, written out by hand: (weights by kind, biases)."""
    block = "blocks.0."
    emb = ["tok_emb.weight"] + (["pos_emb.weight"] if variant == "vanilla" else [])
    ln = [block + "ln1.weight", block + "ln2.weight", "ln_f.weight"]
    linear = [block + "attn.qkv.weight", block + "attn.proj.weight", block + "mlp.0.weight", block + "mlp.2.weight",
              "head.weight"]
    biases = [block + n for n in ("ln1.bias", "ln2.bias", "attn.qkv.bias", "attn.proj.bias", "mlp.0.bias",
                                  "mlp.2.bias")] + ["ln_f.bias"]
    return emb, ln, linear, biases


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
@pytest.mark.parametrize("decay_on", DECAY_ON)
def test_weight_decay_groups_by_hand(decay_on, variant):
    m = GPT(ModelConfig(**SMALL, variant=variant))
    emb, ln, linear, biases = _one_layer_names(variant)
    want = {"non-bias": emb + ln + linear, "matrices": emb + linear, "linear": linear}[decay_on]
    decay, keep = decay_groups(m, decay_on)
    assert sorted(decay) == sorted(want)
    assert sorted(keep) == sorted(set(emb + ln + linear + biases) - set(want))

    params = dict(m.named_parameters())
    g_decay, g_keep = make_optimizer(m, TrainConfig(decay_on=decay_on), torch.device("cpu")).param_groups
    assert {id(p) for p in g_decay["params"]} == {id(params[n]) for n in want} and g_decay["weight_decay"] == 0.1
    assert g_keep["weight_decay"] == 0.0 and len(g_decay["params"]) + len(g_keep["params"]) == len(params)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_paper_recipe_decays_what_the_original_decays(stage):
    """The original trainer decays every parameter whose name lacks 'bias' (embeddings, position table and
    LayerNorm gains included); decaying Linear weights only stalls the paper pretraining after ~17 epochs."""
    cfg = train_config(load_recipe("paper"), stage, {}, documents=10, block_size=128)
    assert cfg.decay_on == "non-bias" and cfg.weight_decay == 0.1
    m = GPT(ModelConfig(**SMALL))
    decay, keep = decay_groups(m, cfg.decay_on)
    assert {"tok_emb.weight", "pos_emb.weight", "ln_f.weight"} <= set(decay)
    assert all(n.endswith(".bias") for n in keep)


def test_unknown_decay_on_is_a_clear_error(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[pretrain]\ndecay_on = "everything"\nschedule = "constant"\n')
    with pytest.raises(UserError, match=r"r\.toml \[pretrain\]: decay_on must be one of .*, got 'everything'"):
        train_config(load_recipe(str(recipe)), "pretrain", {}, documents=10, block_size=128)


def test_param_rms_hand_computed():
    m = GPT(ModelConfig(**SMALL))
    with torch.no_grad():
        m.tok_emb.weight.fill_(3.0)
        m.pos_emb.weight.fill_(-2.0)
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.fill_(0.5)
            elif isinstance(mod, torch.nn.Linear):
                mod.weight.zero_()
        m.head.weight[0, 0] = 1.0  # one non-zero among all Linear weights
    n_linear = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    rms = param_rms(m)
    assert rms["tok_emb"] == 3.0 and rms["pos_emb"] == 2.0 and rms["ln_gain"] == 0.5
    assert math.isclose(rms["linear"], (1 / n_linear) ** 0.5, rel_tol=1e-4)


def test_epoch_losses_weight_windows_by_steps():
    recs = [{"step": 2, "epoch": 1, "loss": 4.0}, {"step": 3, "epoch": 1, "loss": 1.0},  # epoch 1: (4*2 + 1) / 3
            {"step": 6, "epoch": 2, "loss": 2.0}]
    assert epoch_losses(recs) == {1: 3.0, 2: 2.0}


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
    assert {"step", "tokens", "loss", "lr", "real_tokens", "gflops", "rms"} <= set(recs[0]) and recs[0]["gflops"] > 0
    assert set(recs[0]["rms"]) == {"tok_emb", "pos_emb", "ln_gain", "linear"}


def test_a_run_that_fails_shuts_its_batch_workers_down_at_once():
    """An error out of train() must not leave the DataLoader's processes running while its traceback lives."""
    import multiprocessing

    class Boom(Exception):
        pass

    def fail_at_step_3(*a, **k):
        fail_at_step_3.calls += 1
        if fail_at_step_3.calls == 3:
            raise Boom()
        return real(*a, **k)
    fail_at_step_3.calls = 0

    real = train_mod._step
    before = set(multiprocessing.active_children())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "_step", fail_at_step_3)
        with pytest.raises(Boom) as err:
            _run(0, steps=10, workers=2)
        assert err.value.__traceback__ is not None  # the traceback, and its frames, are still alive here
        assert set(multiprocessing.active_children()) == before


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers on 2 cores: on purpose
@pytest.mark.parametrize("workers", [1, 3])
def test_data_worker_processes_change_nothing_but_where_batches_are_made(workers):
    """3 workers over epochs of 4 batches: whose turn it is runs on across epochs."""
    inline, worker = _run(0, steps=14), _run(0, steps=14, workers=workers)
    assert [h["loss"] for h in inline.history] == [h["loss"] for h in worker.history]
    assert (inline.tokens, inline.real_tokens) == (worker.tokens, worker.real_tokens)
