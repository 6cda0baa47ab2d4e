"""benchmarks/continue_pretraining.py: continues the weights it is given, and writes a checkpoint finetune takes."""
import json
import sys

import torch

from spangpt import checkpoint
from spangpt.data import load_wiki
from spangpt.model import GPT, ModelConfig
from conftest import load_benchmark


def test_continues_from_the_checkpoint_and_lowers_the_loss(tmp_path, synth_dir, monkeypatch):
    mod = load_benchmark("continue_pretraining")
    _, vocab = load_wiki(synth_dir / "wiki.txt")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, block_size=128, dropout=0.0))
    src, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    checkpoint.save(src, model, vocab, {"documents": 1})
    monkeypatch.setattr(sys, "argv", ["x", str(src), str(out), "--data", str(synth_dir), "--epochs", "3",
                                      "--lr", "3e-3"])
    mod.main()
    before, after = checkpoint.load(src)[0].state_dict(), checkpoint.load(out)[0].state_dict()
    assert set(before) == set(after) and any(not torch.equal(before[k], after[k]) for k in before)
    lines = (tmp_path / "b.metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # it trained on span corruption of the corpus
    info = checkpoint.read_info(out)
    assert info["continued"]["from"] == str(src) and info["continued"]["lr"] == 3e-3


def test_a_recipe_style_tail_draws_focus_examples_and_the_qa_pairs(tmp_path, synth_dir, monkeypatch):
    """--focus and --mix-qa reach the examples; --schedule, --decay-on and --weight-decay reach the config."""
    mod = load_benchmark("continue_pretraining")
    docs, vocab = load_wiki(synth_dir / "wiki.txt")
    n_qa = len((synth_dir / "birth_places_train.tsv").read_text().splitlines())
    model = GPT(ModelConfig(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, block_size=128, dropout=0.0))
    src, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    checkpoint.save(src, model, vocab, {"documents": 1})
    focus_seen, seen = [], {}
    real_example = mod.pretrain_example

    def example(*a, **kw):
        focus_seen.append(a[4].focus)  # the Corruption it draws with
        return real_example(*a, **kw)

    def fake_train(model, draw, cfg, metrics, desc):
        seen["examples"], seen["cfg"] = draw(__import__("random").Random(0)), cfg
        return type("R", (), {"final_loss": 1.0, "seconds": 0.0})()

    monkeypatch.setattr(mod, "pretrain_example", example)
    monkeypatch.setattr(mod, "train", fake_train)
    monkeypatch.setattr(sys, "argv", ["x", str(src), str(out), "--data", str(synth_dir), "--focus", "1.0", "--mix-qa",
                                      "--schedule", "linear", "--decay-on", "matrices", "--weight-decay", "1.0"])
    mod.main()
    assert len(seen["examples"]) == len(docs) + n_qa and focus_seen == [1.0] * len(docs)
    cfg = seen["cfg"]
    assert (cfg.schedule, cfg.decay_on, cfg.weight_decay) == ("linear", "matrices", 1.0)
    assert checkpoint.read_info(out)["continued"]["focus"] == 1.0
