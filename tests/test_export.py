"""spangpt export: the transformers model is the checkpoint's model (same logits, same greedy answers), the
tokenizer has spangpt's ids, the folder loads offline without spangpt, and what cannot be exported is refused
in one line. On models trained for a few seconds, so that the weights are not the initial ones and the
answers end with ⁇ (generation stops there)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from spangpt import checkpoint, stages
from spangpt.cli import main
from spangpt.data import load_questions
from spangpt.errors import UserError
from spangpt.evaluate import extract_answer, predict
from spangpt.vocab import MASK

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                              reason='needs the [hf] extra: pip install -e ".[hf]"')

# Block 128 as the real recipes: every synthetic prompt leaves the 32 answer characters spangpt allows.
TINY = """
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 128
dropout = 0.1
[finetune]
epochs = 100
batch_size = 16
lr = 3e-3
schedule = "constant"
"""
STEPS = 150


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synth_dir):
    """{variant: (checkpoint, export folder)}: a model fine-tuned from scratch on the synthetic pairs, exported."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip('needs the [hf] extra: pip install -e ".[hf]"')
    from spangpt.export import export

    out = tmp_path_factory.mktemp("export")
    (out / "tiny.toml").write_text(TINY)
    found = {}
    for variant in ("vanilla", "rope"):
        ckpt = out / f"{variant}.safetensors"
        stages.finetune(synth_dir, ckpt, variant, recipe=str(out / "tiny.toml"), quiet=True,
                        train_overrides={"max_steps": STEPS, "device": "cpu", "precision": "fp32",
                                         "log_interval": STEPS})
        export(ckpt, out / variant)
        found[variant] = ckpt, out / variant
    return found


def questions(synth_dir) -> list[tuple[str, str]]:
    """The dev pairs (20 in the synthetic corpus), then the test pairs: real-format questions nobody trained on."""
    return [*load_questions(synth_dir / "birth_dev.tsv"), *load_questions(synth_dir / "birth_test.tsv")][:50]


def hf_load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
def test_logits_equal_spangpt_s(exported, synth_dir, variant, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, folder = exported[variant]
    model, vocab, _ = checkpoint.load(ckpt)
    tok, lm = hf_load(folder)
    assert type(lm).__name__ == {"vanilla": "GPT2LMHeadModel", "rope": "GPTNeoXForCausalLM"}[variant]
    worst = 0.0
    with torch.no_grad():
        for q, a in questions(synth_dir):
            text = q + MASK + a + MASK
            ids = torch.tensor([vocab.encode(text)])
            assert tok(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
            ours, theirs = model(ids)[0], lm(input_ids=ids).logits
            worst = max(worst, float((ours - theirs).abs().max()))
    assert worst <= 1e-5, f"{variant}: logits differ by {worst:.3g}"


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
def test_greedy_generate_gives_spangpt_s_answers(exported, synth_dir, variant, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, folder = exported[variant]
    model, vocab, _ = checkpoint.load(ckpt)
    pairs = questions(synth_dir)
    ours = predict(model, vocab, [q for q, _ in pairs])
    tok, lm = hf_load(folder)
    theirs, closed = [], 0
    for q, _ in pairs:  # the folder's generation config alone: greedy, stop at ⁇, at most 32 characters
        prompt = tok(q + MASK, return_tensors="pt")
        out = lm.generate(**prompt)
        closed += out[0, -1].item() == vocab.stoi[MASK] and out.shape[1] < prompt.input_ids.shape[1] + 32
        theirs.append(extract_answer(tok.decode(out[0])))
    assert theirs == ours
    assert closed > len(pairs) / 2  # the trained model closes its answers: generation stops at ⁇
    # all at once: the tokenizer pads on the left, and both architectures take positions from the mask
    batch = lm.generate(**tok([q + MASK for q, _ in pairs], return_tensors="pt", padding=True))
    assert [extract_answer(t) for t in tok.batch_decode(batch)] == ours
    assert len(set(ours)) > 1  # not one answer for everyone


def test_tokenizer_has_spangpt_s_ids_and_refuses_other_characters(exported, synth_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, folder = exported["vanilla"]
    _, vocab, _ = checkpoint.load(ckpt)
    tok, _ = hf_load(folder)
    for i, c in enumerate(vocab.chars):  # each alone: no character merges with or depends on its neighbours
        assert tok(c).input_ids == [i], repr(c)
        assert tok.decode([i]) == c
    everything = "".join(vocab.chars)  # □ and ⁇ included
    assert tok(everything).input_ids == list(range(len(vocab)))
    assert tok.decode(list(range(len(vocab)))) == everything
    q, a = questions(synth_dir)[0]
    text = q + MASK + a + MASK
    assert tok(text).input_ids == vocab.encode(text) and tok.decode(vocab.encode(text)) == text
    assert (tok.pad_token_id, tok.mask_token_id, tok.eos_token_id) == (0, 1, 1)
    outside = next(c for c in "€ĳ\u00e9Zqz7" if c not in vocab.stoi)
    with pytest.raises(Exception, match="UNK"):
        tok("Where was " + outside + " born?")


def test_folder_loads_offline_without_spangpt(exported, synth_dir):
    """A fresh Python with spangpt unimportable and the Hub offline asks both exported models the dev questions."""
    script = (
        "import json, sys\n"
        "sys.modules['spangpt'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "out = {}\n"
        "for folder, qs in json.loads(sys.argv[1]):\n"
        "    tok, lm = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)\n"
        "    out[folder] = [tok.decode(lm.generate(**tok(q + '\u2047', return_tensors='pt'))[0]).split('\u2047')[1]"
        " for q in qs]\n"
        "print(json.dumps(out))\n"
    )
    qs = [q for q, _ in load_questions(synth_dir / "birth_dev.tsv")][:10]
    jobs = [(str(folder), qs) for _, folder in exported.values()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    answers = json.loads(r.stdout.strip().splitlines()[-1])
    for ckpt, folder in exported.values():
        model, vocab, _ = checkpoint.load(ckpt)
        assert answers[str(folder)] == predict(model, vocab, qs)


def test_config_names_the_layout(exported):
    gpt2 = json.loads((exported["vanilla"][1] / "config.json").read_text())
    assert (gpt2["model_type"], gpt2["activation_function"], gpt2["tie_word_embeddings"]) == ("gpt2", "gelu", False)
    neox = json.loads((exported["rope"][1] / "config.json").read_text())
    assert (neox["model_type"], neox["use_parallel_residual"], neox["tie_word_embeddings"]) == \
        ("gpt_neox", False, False)
    assert (neox["rotary_pct"], neox["rotary_emb_base"]) == (1.0, 10000.0)  # what older transformers read
    for _, folder in exported.values():
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert "Not recorded in the checkpoint" in card and "finetune" in card
        assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spangpt: error: "), err
    return err


def test_without_transformers_one_line_and_exit_2(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the [hf] extra were not installed
    ckpt, _ = exported["rope"]
    assert main(["export", str(ckpt), "--out", str(tmp_path / "hf")]) == 2
    assert 'pip install -e ".[hf]"' in _one_line_error(capsys)
    assert not (tmp_path / "hf").exists()


def _with_meta(src, dst, **changes):
    """A copy of checkpoint src with metadata fields of its model config changed."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    meta["model"] = json.dumps({**json.loads(meta["model"]), **changes})
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_unknown_variant_or_damaged_checkpoint_one_line_and_exit_2(exported, tmp_path, capsys):
    ckpt, _ = exported["vanilla"]
    alibi = _with_meta(ckpt, tmp_path / "alibi.safetensors", variant="alibi")
    assert main(["export", str(alibi), "--out", str(tmp_path / "a")]) == 2
    assert "alibi" in _one_line_error(capsys)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["export", str(damaged), "--out", str(tmp_path / "d")]) == 2
    assert "damaged" in _one_line_error(capsys)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "busy")]) == 2
    assert "other files" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
    # a project's folder with its own config.json and README is not an earlier export: left as it was
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": 1}')
    (project / "README.md").write_text("# my project\n")
    assert main(["export", str(ckpt), "--out", str(project)]) == 2
    assert "other files" in _one_line_error(capsys)
    assert (project / "README.md").read_text() == "# my project\n" and len(list(project.iterdir())) == 2


def test_an_earlier_export_is_replaced(exported, capsys):
    ckpt, folder = exported["rope"]
    assert main(["export", str(ckpt), "--out", str(folder)]) == 0
    assert "wrote" in capsys.readouterr().out


def test_a_variant_or_layout_without_a_mapping_is_refused(exported):
    """A model with a variant the converter does not know (as if model.py grew one) or an MLP activation
    transformers' config would compute differently (tanh GELU) is refused, not exported wrong."""
    from spangpt.export import check_exportable

    model, _, _ = checkpoint.load(exported["rope"][0])
    model.cfg.variant = "alibi"
    with pytest.raises(UserError, match="cannot export a 'alibi' model"):
        check_exportable(model)
    model.cfg.variant = "rope"
    model.blocks[0].mlp[1] = torch.nn.GELU(approximate="tanh")
    with pytest.raises(UserError, match="activation"):
        check_exportable(model)


def test_a_conversion_that_changes_the_logits_is_refused(exported, tmp_path, monkeypatch):
    """export compares the two models' logits before writing: a wrong rearrangement (here q and k left in
    adjacent pairs, which GPT-NeoX would rotate as halves) is refused, not written."""
    from spangpt import export as ex

    monkeypatch.setattr(ex, "neox_qkv", lambda t, n_head: t.unflatten(0, (3, n_head, -1)).transpose(0, 1).flatten(0, 2))
    with pytest.raises(UserError, match="logits differ"):
        ex.export(exported["rope"][0], tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_export_cli_prints_the_architecture_and_the_logit_difference(exported, tmp_path, capsys):
    ckpt, _ = exported["rope"]
    assert main(["export", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "GPTNeoXForCausalLM" in out and "logits within" in out
    assert main(["export", str(ckpt), "--out", str(tmp_path / "hf")]) == 0  # an earlier export is replaced


def test_the_model_card_gives_the_dev_score_of_a_reproduce_run(exported, tmp_path):
    """In a `reproduce` run folder, result.json scores the final model and, as before_finetune, the pretrained
    one: the card of each checkpoint gives its own score; elsewhere it says the score is not recorded."""
    from spangpt.export import export

    ckpt, _ = exported["vanilla"]
    run = tmp_path / "vanilla" / "seed0"
    run.mkdir(parents=True)
    for name in ("pretrain.safetensors", "finetune.safetensors"):
        (run / name).write_bytes(ckpt.read_bytes())
    (run / "result.json").write_text(json.dumps({"correct": 7, "total": 20, "finetune": {},
                                                 "before_finetune": {"correct": 5, "total": 20}}))
    cards = {}
    for name in ("pretrain", "finetune"):
        export(run / f"{name}.safetensors", tmp_path / name)
        cards[name] = (tmp_path / name / "README.md").read_text(encoding="utf-8")
    assert "5 of 20 dev questions: 25.0%" in cards["pretrain"]
    assert "7 of 20 dev questions: 35.0%" in cards["finetune"]
    assert "Not recorded" in (exported["vanilla"][1] / "README.md").read_text(encoding="utf-8")


def test_the_model_card_says_the_precision_used_and_counts_in_words(synth_dir, tmp_path):
    """A one-layer model is "1 layer"; a run left at precision auto shows what auto chose, not "auto"."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip('needs the [hf] extra: pip install -e ".[hf]"')
    from spangpt.export import export

    (tmp_path / "tiny.toml").write_text(TINY.replace("n_layer = 2", "n_layer = 1"))
    ckpt = tmp_path / "m.safetensors"
    stages.finetune(synth_dir, ckpt, "vanilla", recipe=str(tmp_path / "tiny.toml"), quiet=True,
                    train_overrides={"max_steps": 2, "device": "cpu", "log_interval": 2})
    export(ckpt, tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert "- 1 layer, 2 heads, 32 wide" in card
    assert "precision auto" not in card and ("precision fp32" in card or "precision bf16" in card)
