"""benchmarks/recall_probe.py: which questions it asks, and the prompts it builds (a hand-made corpus)."""
import pytest
import torch

from spangpt import checkpoint, state
from spangpt.errors import UserError
from spangpt.data import load_wiki
from spangpt.model import GPT, ModelConfig
from conftest import load_benchmark


def _probe():
    return load_benchmark("recall_probe")


def _corpus(tmp_path):
    far = "Cy Dee. Cy Dee " + "was a very long-winded and much travelled person " * 2 + "born in Rome ."
    (tmp_path / "wiki.txt").write_text("\n".join([
        "Ann Lee. Ann Lee was born in Paris .",
        "Bo Kim. Bo Kim is a painter .",  # answer not in the line: skipped
        far,  # answer past character 96: skipped
        "Ann Lee. A second line for the same name is ignored, Oslo .",
        "Zed. Where was I born? Nowhere .",  # the question characters, for the vocabulary
    ]) + "\n", encoding="utf-8")
    (tmp_path / "birth_dev.tsv").write_text(
        "Where was Ann Lee born?\tParis\nWhere was Bo Kim born?\tSeoul\nWhere was Cy Dee born?\tRome\n"
        "Where was Nobody born?\tLima\n", encoding="utf-8")
    return far


def _checkpoint(tmp_path, vocab):
    """A tiny untrained model: the tests replace decoding, so its weights never matter."""
    torch.manual_seed(0)
    ckpt = tmp_path / "m.safetensors"
    checkpoint.save(ckpt, GPT(ModelConfig(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=16, block_size=128)), vocab, {})
    return ckpt


def _fake_greedy(vocab, seen, recalls_from):
    """probe.completions that completes "Paris" after prompts starting with recalls_from, "Oslo" after the rest."""
    def fake(model, vocab, texts, max_chars=32):
        seen.extend(texts)
        return ["Paris ." if t.startswith(recalls_from) else "Oslo ." for t in texts]
    return fake


def test_cases_keep_answers_inside_the_first_96_characters_of_the_persons_first_line(tmp_path):
    far = _corpus(tmp_path)
    assert far.index("Rome") + len("Rome") > 96
    assert _probe().cases(tmp_path, "birth_dev.tsv") == [("Ann Lee", "Paris", "Ann Lee. Ann Lee was born in ", " .")]


def test_a_name_with_initials_finds_its_line(tmp_path, monkeypatch):
    """The probe took the text before a line's first ". " for the name: "Douglas P" for "Douglas P. Fry. ...",
    so no question about a person whose name holds an initial was ever asked."""
    (tmp_path / "wiki.txt").write_text("\n".join([
        "Douglas P. Fry. Douglas P. Fry was born in Paris .",
        "J.C. Patterson. Born in Oslo in 1839 .",
        "Zed. Where was I born? Nowhere .",  # the question characters, for the vocabulary
    ]) + "\n", encoding="utf-8")
    (tmp_path / "birth_dev.tsv").write_text(
        "Where was Douglas P. Fry born?\tParis\nWhere was J.C. Patterson born?\tOslo\n", encoding="utf-8")
    probe = _probe()
    assert probe.cases(tmp_path, "birth_dev.tsv") == [
        ("Douglas P. Fry", "Paris", "Douglas P. Fry. Douglas P. Fry was born in ", " ."),
        ("J.C. Patterson", "Oslo", "J.C. Patterson. Born in ", " in 1839 ."),
    ]
    _, vocab = load_wiki(tmp_path / "wiki.txt")
    prompts_seen = []
    monkeypatch.setattr(probe, "completions", _fake_greedy(vocab, prompts_seen, "Douglas"))  # else "Oslo"
    monkeypatch.setattr(probe, "predict", lambda model, vocab, qs: ["Paris" for _ in qs])
    res = probe.recall(_checkpoint(tmp_path, vocab), tmp_path, "birth_dev.tsv")
    assert res == {"own line": (2, 2), "after question": (1, 2), "question": (1, 2)}
    assert prompts_seen[2:] == ["Where was Douglas P. Fry born? Douglas P. Fry was born in ",
                                "Where was J.C. Patterson born? Born in "]


def _faked_probe(tmp_path, monkeypatch, recalls_after: str, answer: str):
    """The probe module over the small corpus and a tiny checkpoint, its decoder faked: greedy decoding
    completes the place only for prompts that start with recalls_after, and every question gets answer.
    -> (probe, checkpoint, the prompts the fake decoder saw)."""
    _corpus(tmp_path)
    probe = _probe()
    _, vocab = load_wiki(tmp_path / "wiki.txt")
    prompts_seen = []
    monkeypatch.setattr(probe, "completions", _fake_greedy(vocab, prompts_seen, recalls_after))
    monkeypatch.setattr(probe, "predict", lambda model, vocab, qs: [answer for _ in qs])
    return probe, _checkpoint(tmp_path, vocab), prompts_seen


def test_recall_counts_what_greedy_decoding_produces(tmp_path, monkeypatch):
    probe, ckpt, prompts_seen = _faked_probe(tmp_path, monkeypatch, "Ann Lee.", "Paris")  # the own line only
    res = probe.recall(ckpt, tmp_path, "birth_dev.tsv")
    assert res == {"own line": (1, 1), "after question": (0, 1), "question": (1, 1)}
    assert prompts_seen == ["Ann Lee. Ann Lee was born in ", "Where was Ann Lee born? Ann Lee was born in "]


def test_prefix_adds_the_own_line_shifted_off_the_start(tmp_path, monkeypatch):
    probe, ckpt, prompts_seen = _faked_probe(tmp_path, monkeypatch, "Ann", "Oslo")  # only from the start
    res = probe.recall(ckpt, tmp_path, "birth_dev.tsv", prefix="Zed. ")
    assert res == {"own line": (1, 1), "after question": (0, 1), "after 'Zed. '": (0, 1), "question": (0, 1)}
    assert prompts_seen[-1] == "Zed. Ann Lee. Ann Lee was born in "


def test_focus_prompt_by_hand():
    line = "Ann Lee. Ann Lee was a painter born in Paris , France ."
    i = line.index("Paris")
    # at most four words before the answer ("a painter born in"), then the rest of the line: it ends before
    # the drawn length would (the name's 9 characters + the 4 words + 50 - 9 characters of what follows)
    assert _probe().focus_prompt("Ann Lee", "Paris", line[:i], line[i + 5:]) == "Ann Lee. a painter born in ⁇ , France .⁇"


def test_focus_prompt_is_a_focus_example_without_its_answer():
    """The second implementation: corpus.focus_example, its draw of the window's start made the earliest one."""
    from spangpt.corpus import capitalised_runs, focus_example, head_length

    class Earliest:
        def choice(self, xs):
            return xs[0]

    line = ("Cy Dee. Cy Dee (born 1 May 1950 in Rome, Lazio) was an Italian painter of large canvases whose work "
            "hangs in Milan .")
    head = head_length(line)
    probe = _probe()
    for start, end in capitalised_runs(line, head):
        answer = line[start:end]
        expected = focus_example(line, head, (start, end), probe.FOCUS_LENGTH, Earliest())
        assert probe.focus_prompt("Cy Dee", answer, line[:start], line[end:]) + answer + "⁇" == expected


def test_focus_adds_the_focus_form(tmp_path, monkeypatch):
    probe, ckpt, prompts_seen = _faked_probe(tmp_path, monkeypatch, "Ann Lee. Ann", "Paris")
    res = probe.recall(ckpt, tmp_path, "birth_dev.tsv", focus=True)
    assert res == {"own line": (1, 1), "after question": (0, 1), "focus form": (0, 1), "question": (1, 1)}
    assert prompts_seen[-1] == "Ann Lee. Lee was born in ⁇ .⁇"  # four words before the answer


def test_a_prefix_too_long_for_the_block_is_refused_before_any_model_is_read(tmp_path, monkeypatch, capsys):
    probe = _probe()
    monkeypatch.setattr("sys.argv", ["recall_probe.py", str(tmp_path / "missing.safetensors"), "--data", str(tmp_path),
                                     "--prefix", "x" * (probe.MAX_PREFIX + 1)])
    with pytest.raises(SystemExit) as e:
        probe.main()
    assert e.value.code == 2 and "--prefix: at most 16 characters" in capsys.readouterr().err


def test_a_checkpoint_is_read_as_one_whatever_its_name(tmp_path):
    """`spangpt pretrain --out m.pt` writes a checkpoint named m.pt; the probe must not take it for a
    training state (it did, by the suffix, and refused it as "not a spangpt training state")."""
    _corpus(tmp_path)
    ckpt = _checkpoint(tmp_path, load_wiki(tmp_path / "wiki.txt")[1]).rename(tmp_path / "m.pt")
    model, _ = _probe().load_model(ckpt, tmp_path)
    assert isinstance(model, GPT) and model.cfg.n_embd == 16


def test_a_file_with_the_state_header_is_read_as_a_state_whatever_its_name(tmp_path):
    """The other way round: the header routes to the state reader, here refusing a damaged one."""
    path = tmp_path / "run.safetensors"
    path.write_bytes(state.MAGIC + b"not a digest, not a pickle")
    with pytest.raises(UserError, match="damaged training state"):
        _probe().load_model(path, tmp_path)
