import random

from spangpt import stages
from spangpt.data import load_questions
from spangpt.train import TrainResult
from spangpt.vocab import MASK, PAD_ID


def _capture_draw(monkeypatch):
    seen = {}

    def fake_train(model, draw, cfg, metrics_path=None, desc="", **state_options):
        seen["examples"] = draw(random.Random(0))
        seen["cfg"] = cfg
        return TrainResult(steps=1)

    monkeypatch.setattr(stages, "train", fake_train)
    return seen


def test_mix_qa_adds_exactly_the_training_pairs_never_dev(monkeypatch, tmp_path, synth_dir):
    seen = _capture_draw(monkeypatch)
    info = stages.pretrain(synth_dir, tmp_path / "p.safetensors", "vanilla", "demo", quiet=True, mix_qa=True)
    assert info["mix_qa"] is True
    from spangpt.checkpoint import load

    _, vocab, _ = load(tmp_path / "p.safetensors")
    qa = [vocab.decode(x) for x, y in seen["examples"] if y[0] == PAD_ID]  # QA examples: no loss on the question
    train_q = {q for q, _ in load_questions(synth_dir / "birth_places_train.tsv")}
    dev_q = {q for q, _ in load_questions(synth_dir / "birth_dev.tsv")}
    asked = {s.split(MASK)[0] for s in qa}
    assert asked == train_q and not asked & dev_q
    n_docs = len((synth_dir / "wiki.txt").read_text(encoding="utf-8").split("\n"))
    assert len(seen["examples"]) == n_docs + len(train_q)


def test_plain_pretraining_sees_only_the_corpus(monkeypatch, tmp_path, synth_dir):
    seen = _capture_draw(monkeypatch)
    info = stages.pretrain(synth_dir, tmp_path / "p.safetensors", "rope", "paper", quiet=True)
    assert info["mix_qa"] is False
    n_docs = len((synth_dir / "wiki.txt").read_text(encoding="utf-8").split("\n"))
    assert len(seen["examples"]) == n_docs
    assert all(vocab_count == 3 for vocab_count in (x.count(1) for x, _ in seen["examples"]))  # prefix⁇suffix⁇masked⁇
    assert seen["cfg"].epochs == 650 and seen["cfg"].final_tokens == 200 * n_docs * 128


def test_recipe_window_and_salient_mask_reach_the_examples(monkeypatch, tmp_path, synth_dir):
    import pytest

    from spangpt.errors import UserError

    seen = _capture_draw(monkeypatch)
    recipe = tmp_path / "r.toml"
    recipe.write_text("[pretrain]\nschedule = 'constant'\nwindow = true\nsalient_mask = 1.0\n")
    info = stages.pretrain(synth_dir, tmp_path / "p.safetensors", "vanilla", str(recipe), quiet=True)
    assert info["window"] is True and info["salient_mask"] == 1.0
    from spangpt.checkpoint import load

    _, vocab, _ = load(tmp_path / "p.safetensors")

    def capitalised_spans():
        return sum(vocab.decode(x + y[-1:]).split(MASK)[2][:1].isupper() for x, y in seen["examples"])

    salient, n = capitalised_spans(), len(seen["examples"])
    recipe.write_text("[pretrain]\nschedule = 'constant'\n")
    stages.pretrain(synth_dir, tmp_path / "p.safetensors", "vanilla", str(recipe), quiet=True, force=True)
    assert salient > capitalised_spans() + 0.4 * n  # names and places, far more often than random spans
    for bad, key in (("salient_mask = 2", "salient_mask"), ("focus = -0.1", "focus"), ("focus = true", "focus"),
                     ("window = 1", "window")):
        recipe.write_text(f"[pretrain]\nschedule = 'constant'\n{bad}\n")
        with pytest.raises(UserError, match=key):
            stages.pretrain(synth_dir, tmp_path / "q.safetensors", "vanilla", str(recipe), quiet=True)
    assert not (tmp_path / "q.safetensors").exists()


def test_paper_draws_the_original_span_corruption_and_other_recipes_spangpts(monkeypatch, tmp_path):
    """`paper` (corruption = "original") draws each line's length within the line, so the synthetic corpus's
    lines are seldom whole; the default draws up to 96 and cuts, so they often are."""
    from spangpt.checkpoint import load
    from spangpt.data import load_corpus
    from spangpt.synth import write_corpus

    seen = _capture_draw(monkeypatch)
    data = tmp_path / "simple"
    write_corpus(data, people=200, seed=1, style="simple")  # one short sentence per person
    lines = load_corpus(data / "wiki.txt")
    whole = {}
    for recipe in ("paper", "demo"):
        info = stages.pretrain(data, tmp_path / f"{recipe}.safetensors", "vanilla", recipe, quiet=True, mix_qa=False)
        _, vocab, _ = load(tmp_path / f"{recipe}.safetensors")
        shown = [vocab.decode(x + y[-1:]).split(MASK) for x, y in seen["examples"]]
        short = [(len(p) + len(m) + len(s), len(line)) for (p, s, m, _), line in zip(shown, lines) if len(line) < 96]
        whole[recipe] = sum(n == len_line for n, len_line in short) / len(short)
        assert info["corruption"] == ("original" if recipe == "paper" else "spangpt")
    assert len(short) > 150 and whole["paper"] < 0.1 < 0.3 < whole["demo"]


def test_paper_starts_the_position_table_at_zero_and_keeps_the_file_order(monkeypatch, tmp_path, synth_dir):
    """As the original: `nn.Parameter(torch.zeros(...))` and a DataLoader without shuffle; from scratch
    too (the no-pretraining control), never over the weights of an --init."""
    import torch

    models, descs = [], []

    def fake_train(model, draw, cfg, metrics_path=None, desc="", **state_options):
        models.append((model.pos_emb.weight.detach().clone(), cfg.shuffle))
        descs.append(desc)
        return TrainResult(steps=1)

    monkeypatch.setattr(stages, "train", fake_train)
    stages.pretrain(synth_dir, tmp_path / "p.safetensors", "vanilla", "paper", quiet=True)
    stages.pretrain(synth_dir, tmp_path / "d.safetensors", "vanilla", "demo", quiet=True)
    stages.finetune(synth_dir, tmp_path / "s.safetensors", "vanilla", None, "paper", quiet=True)
    stages.finetune(synth_dir, tmp_path / "i.safetensors", "vanilla", tmp_path / "d.safetensors", "paper", quiet=True)
    (paper, paper_shuffle), (demo, demo_shuffle), (scratch, scratch_shuffle), (init, _) = models
    assert not paper.any() and not scratch.any() and demo.std() > 0.01
    assert torch.equal(init, demo)  # the pretrained table, as it was
    assert (paper_shuffle, scratch_shuffle, demo_shuffle) == (False, False, True)
    # progress lines tell the control from a fine-tuning of a pretrained model (reproduce runs them side by side)
    assert descs[2:] == ["finetune vanilla from scratch", "finetune vanilla"]


def test_recipe_focus_reaches_the_examples(monkeypatch, tmp_path, synth_dir):
    seen = _capture_draw(monkeypatch)
    recipe = tmp_path / "r.toml"
    recipe.write_text("[pretrain]\nschedule = 'constant'\nfocus = 1.0\n")
    info = stages.pretrain(synth_dir, tmp_path / "p.safetensors", "vanilla", str(recipe), quiet=True)
    assert info["focus"] == 1.0
    from spangpt.checkpoint import load

    _, vocab, _ = load(tmp_path / "p.safetensors")
    texts = [vocab.decode(x + y[-1:]) for x, y in seen["examples"]]
    # every synthetic line names a place after the name, so every example asks for a capitalised run
    assert all(t.split(MASK)[2][:1].isupper() for t in texts)


def test_per_variant_tables_reach_each_variants_run(monkeypatch, tmp_path, synth_dir):
    """[pretrain.vanilla] / [finetune.rope] override their stage for that variant only, in what is trained
    and in what the checkpoint records."""
    seen = _capture_draw(monkeypatch)
    recipe = tmp_path / "r.toml"
    recipe.write_text("[pretrain]\nschedule = 'constant'\nweight_decay = 1.0\n"
                      "[pretrain.vanilla]\nweight_decay = 0.5\nmix_qa = true\n"
                      "[finetune]\nschedule = 'constant'\nlr = 1e-4\n[finetune.rope]\nlr = 3e-4\n")
    decay, mixed, lr = {}, {}, {}
    for variant in ("vanilla", "rope"):
        info = stages.pretrain(synth_dir, tmp_path / f"{variant}.p.safetensors", variant, str(recipe), quiet=True)
        decay[variant], mixed[variant] = seen["cfg"].weight_decay, info["mix_qa"]
        assert info["train"]["weight_decay"] == decay[variant]
        stages.finetune(synth_dir, tmp_path / f"{variant}.f.safetensors", variant, tmp_path / f"{variant}.p.safetensors",
                        str(recipe), quiet=True)
        lr[variant] = seen["cfg"].lr
    assert decay == {"vanilla": 0.5, "rope": 1.0}
    assert mixed == {"vanilla": True, "rope": False}
    assert lr == {"vanilla": 1e-4, "rope": 3e-4}
