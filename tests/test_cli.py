"""The CLI end to end on a tiny synthetic corpus (tiny model, a few steps), and its error handling."""
import argparse
import json
import subprocess
import sys

import pytest

from spangpt.cli import main
from spangpt.errors import UserError, run_script

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--max-steps", "3", "--epochs", "5",
        "--device", "cpu", "--recipe", "demo"]


def test_help_lists_the_commands():
    r = subprocess.run([sys.executable, "-m", "spangpt", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("pretrain", "finetune", "evaluate", "predict", "baseline", "data", "reproduce", "demo"):
        assert cmd in r.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, synth_dir):
    out = tmp_path_factory.mktemp("run")
    pre, ft = out / "v.pretrain.safetensors", out / "v.finetune.safetensors"
    assert main(["pretrain", "--variant", "rope", "--data", str(synth_dir), "--out", str(pre), *TINY]) == 0
    assert main(["finetune", "--variant", "rope", "--data", str(synth_dir), "--init", str(pre), "--out", str(ft),
                 "--max-steps", "2", "--device", "cpu", "--recipe", "demo"]) == 0
    return out, pre, ft


def test_pretrain_writes_checkpoint_config_and_metrics(pipeline):
    out, pre, _ = pipeline
    cfg = json.loads((out / "v.pretrain.config.json").read_text())
    assert cfg["model"]["variant"] == "rope" and cfg["model"]["n_layer"] == 1 and cfg["train"]["max_steps"] == 3
    metrics = [json.loads(line) for line in (out / "v.pretrain.metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3


def test_evaluate_predict_baseline(pipeline, synth_dir, capsys):
    out, _, ft = pipeline
    preds = out / "dev.predictions"
    assert main(["evaluate", str(ft), "--input", str(synth_dir / "birth_dev.tsv"), "--out", str(preds)]) == 0
    n_dev = len((synth_dir / "birth_dev.tsv").read_text().splitlines())
    assert len(preds.read_text().splitlines()) == n_dev
    assert f"out of {n_dev}:" in capsys.readouterr().out
    assert main(["predict", str(ft), "--input", str(synth_dir / "birth_test_inputs.tsv"), "--out",
                 str(out / "test.predictions")]) == 0
    assert "Correct" not in capsys.readouterr().out  # no answers, no score
    assert main(["baseline", "--input", str(synth_dir / "birth_dev.tsv")]) == 0
    pairs = [line.split("\t") for line in (synth_dir / "birth_dev.tsv").read_text().splitlines()]
    london = sum(a == "London" for _, a in pairs)
    assert capsys.readouterr().out.strip() == f"Correct: {london} out of {n_dev}: {100.0 * london / n_dev}%"


def test_evaluate_scores_exact_matches(pipeline, synth_dir, tmp_path, capsys):
    """Answers rewritten so that the model's own predictions are right for every third question (and
    wrong by one trailing character for the next): the score must count exactly those."""
    out, _, ft = pipeline
    dev = synth_dir / "birth_dev.tsv"
    assert main(["evaluate", str(ft), "--input", str(dev), "--out", str(tmp_path / "p")]) == 0
    preds = (tmp_path / "p").read_text().split("\n")[:-1]  # one line per question, possibly empty
    questions = [line.split("\t")[0] for line in dev.read_text().splitlines()]
    answers = [p if i % 3 == 0 else p + "x" for i, p in enumerate(preds)]
    (tmp_path / "dev.tsv").write_text("".join(f"{q}\t{a or 'x'}\n" for q, a in zip(questions, answers)))
    capsys.readouterr()
    assert main(["evaluate", str(ft), "--input", str(tmp_path / "dev.tsv"), "--out", str(tmp_path / "p2")]) == 0
    k = sum(1 for i, p in enumerate(preds) if i % 3 == 0 and p)  # an empty prediction got the answer "x"
    n = len(questions)
    assert k > 0  # else this would only test zero
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Correct: {k} out of {n}: {100.0 * k / n}%"


def test_wrong_variant_for_init_is_a_one_line_error(pipeline, synth_dir, capsys):
    out, pre, _ = pipeline
    code = main(["finetune", "--variant", "vanilla", "--data", str(synth_dir), "--init", str(pre),
                 "--out", str(out / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a 'rope' model" in err
    assert not (out / "x.safetensors").exists()


def test_bad_input_names_file_and_line_and_keeps_old_predictions(pipeline, tmp_path, capsys):
    _, _, ft = pipeline
    bad = tmp_path / "dev.tsv"
    bad.write_text("Where was Ann born?\tParis\nWhere was Ünïcødé born?\tRome\n", encoding="utf-8")
    preds = tmp_path / "preds.txt"
    preds.write_text("precious\n")
    code = main(["evaluate", str(ft), "--input", str(bad), "--out", str(preds)])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:2: character" in err and err.count("\n") == 1
    assert preds.read_text() == "precious\n"


def test_missing_data_and_unknown_recipe(tmp_path, capsys):
    assert main(["pretrain", "--variant", "vanilla", "--data", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "wiki.txt: file not found" in capsys.readouterr().err
    (tmp_path / "wiki.txt").write_text("Ann. Ann was born in Paris .")
    assert main(["pretrain", "--variant", "vanilla", "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                 "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_data_synth_refuses_to_overwrite(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--people", "20"]) == 0
    before = (tmp_path / "wiki.txt").read_bytes()
    assert main(["data", "synth", "--out", str(tmp_path), "--people", "30", "--seed", "5"]) == 2
    assert (tmp_path / "wiki.txt").read_bytes() == before


def test_errors_name_the_file_line_even_after_blank_lines(pipeline, synth_dir, tmp_path, capsys):
    """Blank lines are skipped, but an error found later (a character the model has never seen, a question
    too long for its block) must still name the line in the file, not the question's index."""
    _, _, ft = pipeline
    q = tmp_path / "q.tsv"
    q.write_text("Where was A born?\n\n\nWhere was \u2603 born?\n", encoding="utf-8")
    assert main(["predict", str(ft), "--input", str(q), "--out", str(tmp_path / "p")]) == 2
    assert f"{q}:4: character '\u2603'" in capsys.readouterr().err
    q.write_text("\nWhere was A born?\n\n" + "Where was " + "a" * 200 + " born?\n", encoding="utf-8")
    assert main(["predict", str(ft), "--input", str(q), "--out", str(tmp_path / "p")]) == 2
    assert f"{q}:4: question is" in capsys.readouterr().err
    qa = tmp_path / "data"
    qa.mkdir()
    for name in ("wiki.txt", "birth_dev.tsv"):
        (qa / name).write_text((synth_dir / name).read_text(encoding="utf-8"), encoding="utf-8")
    (qa / "birth_places_train.tsv").write_text("\nWhere was A born?\tParis\n\nWhere was B born?\tP\u2603\n",
                                               encoding="utf-8")
    assert main(["finetune", "--variant", "rope", "--data", str(qa), "--init", str(ft), "--out",
                 str(tmp_path / "f.safetensors"), "--max-steps", "1", "--device", "cpu", "--recipe", "demo"]) == 2
    assert f"birth_places_train.tsv:4: character '\u2603'" in capsys.readouterr().err


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", ["finetune --out = --init", "finetune --out = --init less .safetensors",
                                  "evaluate --out = --input", "evaluate --out = ckpt", "pretrain --out = wiki.txt"])
def test_an_out_that_is_an_input_is_refused_and_nothing_changes(pipeline, synth_dir, tmp_path, capsys, case):
    """`finetune --init X --out X` used to train and then overwrite the pretrained model, its metrics and
    its state; `evaluate --out` equal to --input replaced the questions with the predictions."""
    out, pre, ft = pipeline
    dev = tmp_path / "dev.tsv"
    dev.write_bytes((synth_dir / "birth_dev.tsv").read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    for name in ("wiki.txt", "birth_places_train.tsv"):
        (data / name).write_bytes((synth_dir / name).read_bytes())
    argv = {
        "finetune --out = --init": ["finetune", "--variant", "rope", "--data", str(synth_dir), "--init", str(pre),
                                    "--out", str(pre), "--max-steps", "1", "--recipe", "demo"],
        "finetune --out = --init less .safetensors": ["finetune", "--variant", "rope", "--data", str(synth_dir),
                                                      "--init", str(pre), "--out", str(pre.with_suffix("")),
                                                      "--max-steps", "1", "--recipe", "demo"],
        "evaluate --out = --input": ["evaluate", str(ft), "--input", str(dev), "--out", str(dev)],
        "evaluate --out = ckpt": ["evaluate", str(ft), "--input", str(dev), "--out", str(ft)],
        "pretrain --out = wiki.txt": ["pretrain", "--variant", "rope", "--data", str(data),
                                      "--out", str(data / "wiki.txt"), *TINY],
    }[case]
    before = {d: _snapshot(d) for d in (out, tmp_path, data)}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("writing there would destroy it" in err or "shares its state" in err)
    assert {d: _snapshot(d) for d in (out, tmp_path, data)} == before


@pytest.mark.parametrize("command", ["pretrain", "evaluate"])
def test_an_out_that_is_a_folder_is_refused_before_any_work(pipeline, synth_dir, tmp_path, capsys, command):
    """It used to fail only at the final rename, after the whole run, with a traceback."""
    _, _, ft = pipeline
    argv = {"pretrain": ["pretrain", "--variant", "rope", "--data", str(synth_dir), "--out", str(tmp_path), *TINY],
            "evaluate": ["evaluate", str(ft), "--input", str(synth_dir / "birth_dev.tsv"), "--out", str(tmp_path)]}
    assert main(argv[command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path}: is a folder" in err
    assert list(tmp_path.iterdir()) == [] and not tmp_path.with_name(tmp_path.name + ".metrics.jsonl").exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate", "predict", "reproduce", "synth", "download",
                                     "export", "tensorboard"])
def test_an_out_under_a_file_is_a_one_line_error_before_any_work(pipeline, synth_dir, tmp_path, capsys, command):
    """A file where a folder of --out should be: one line naming it, status 2, nothing written anywhere
    (a traceback from mkdir or the final rename otherwise)."""
    _, pre, ft = pipeline
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    out = blocker / "sub" / ("x.safetensors" if command in ("pretrain", "finetune") else "x")
    data, dev = ["--data", str(synth_dir)], ["--input", str(synth_dir / "birth_dev.tsv")]
    argv = {"pretrain": ["pretrain", "--variant", "rope", *data, *TINY],
            "finetune": ["finetune", "--variant", "rope", *data, "--init", str(pre), "--max-steps", "1"],
            "evaluate": ["evaluate", str(ft), *dev], "predict": ["predict", str(ft), *dev],
            "reproduce": ["reproduce", *data, "--max-steps", "1", "--recipe", "demo"],
            "synth": ["data", "synth", "--people", "20"],
            "download": ["data", "download", "--url", "http://127.0.0.1:9"],
            "export": ["export", str(ft)],
            # --out itself is fine; the TensorBoard folder is the one in the way
            "tensorboard": ["pretrain", "--variant", "rope", *data, *TINY, "--out", str(tmp_path / "x.safetensors"),
                            "--tensorboard"]}[command]
    if command == "export":
        pytest.importorskip("transformers")
    assert main([*argv, str(out)] if command == "tensorboard" else [*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip().endswith(f"{blocker} is a file, not a folder"), err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and blocker.read_text() == "keep me"


def test_check_writable_makes_nothing_and_refuses_an_unwritable_place(tmp_path, monkeypatch):
    from spangpt.fileio import check_writable

    check_writable(tmp_path / "a" / "b" / "model.safetensors")
    check_writable(tmp_path / "a" / "b", folder=True)
    assert list(tmp_path.iterdir()) == []  # the missing folders are not made, the probe is gone
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=r"/f/x: .*/f is a file, not a folder$"):
        check_writable(tmp_path / "f" / "x", folder=True)

    def refuse(*a, **k):  # a read-only place (root ignores permissions, so the refusal is simulated)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("spangpt.fileio.tempfile.mkstemp", refuse)
    with pytest.raises(UserError, match=rf"cannot write in {tmp_path} \(Permission denied\)$"):
        check_writable(tmp_path / "new" / "model.safetensors")


def test_a_block_too_small_for_span_corruption_is_a_one_line_error(synth_dir, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    assert main(["pretrain", "--variant", "vanilla", "--data", str(synth_dir), "--out", str(out), *TINY,
                 "--block-size", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "block_size 5 is too small for span-corruption pretraining" in err
    assert list(tmp_path.iterdir()) == []
    assert main(["pretrain", "--variant", "vanilla", "--data", str(synth_dir), "--out", str(out), *TINY,
                 "--block-size", "6", "--recipe", "paper"]) == 0  # the smallest that works (no QA pairs mixed in)


def test_run_script_makes_a_user_error_one_line_and_status_2(capsys, monkeypatch):
    """The benchmark scripts' entry point: a UserError as the CLI shows it; any other error keeps its traceback."""
    monkeypatch.setattr(sys, "argv", ["/somewhere/probe.py", "x"])

    def bad():
        raise UserError("x.tsv:3: no tab")

    with pytest.raises(SystemExit) as e:
        run_script(bad)
    assert e.value.code == 2 and capsys.readouterr().err == "probe.py: error: x.tsv:3: no tab\n"
    for rc, want in ((None, 0), (3, 3)):
        with pytest.raises(SystemExit) as e:
            run_script(lambda: rc)
        assert e.value.code == want
    with pytest.raises(ValueError):
        run_script(lambda: int("x"))


def test_optional_options_take_auto_and_refuse_other_words(capsys):
    from spangpt.cli import build_parser

    p = build_parser()
    args = p.parse_args(["pretrain", "--variant", "rope", "--data", "d", "--out", "o", "--workers", "auto",
                         "--fast-dropout", "false"])
    assert (args.workers, args.fast_dropout) == ("auto", False)
    with pytest.raises(SystemExit):
        p.parse_args(["pretrain", "--variant", "rope", "--data", "d", "--out", "o", "--workers", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_an_unknown_option_shows_the_commands_usage_not_the_top_levels(capsys):
    from spangpt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--variant", "rope", "--data", "d", "--out", "o", "--recipie", "demo"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: spangpt pretrain ")
    assert err.splitlines()[-1] == "spangpt pretrain: error: unrecognized arguments: --recipie demo"
    with pytest.raises(SystemExit) as e:
        main(["data", "synth", "--out", "o", "--bogus"])  # a sub-command's sub-command: its own usage too
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: spangpt data synth ")
    assert err.splitlines()[-1] == "spangpt data synth: error: unrecognized arguments: --bogus"


def test_ask_rows_stay_one_line_whatever_a_model_answers():
    from spangpt.cli import format_answers

    res = {"question": "Where was Ann born?", "answers": [
        {"model": "a", "answer": "Par\nis", "probability": 0.5,
         "alternatives": [{"text": " ", "closed": True, "probability": 0.1}, {"text": "", "closed": False,
                                                                             "probability": 0.05}]},
        {"model": "b", "answer": "Paris", "probability": 0.9, "alternatives": []}]}
    lines = format_answers(res).splitlines()
    assert len(lines) == 4 and lines[0] == "Where was Ann born?"
    assert lines[2].split()[:2] == ["a", '"Par\\nis"'] and lines[2].endswith('" " 10.0%  (empty)... 5.0%')
    assert lines[3].split()[:2] == ["b", "Paris"]


def test_help_states_each_options_default_but_not_the_recipes_values():
    from spangpt.cli import build_parser

    commands = build_parser().commands
    text = commands["reproduce"].format_help()
    assert "(default: paper)" in text and "a run per seed and variant (default: 0)" in text
    data = next(a for a in commands["data"]._actions if isinstance(a, argparse._SubParsersAction))
    assert "--people PEOPLE       (default: 600)" in data.choices["synth"].format_help()
    pretrain = commands["pretrain"].format_help()
    assert "(default: paper)" in pretrain and "(default: None)" not in pretrain  # --epochs: the recipe's value


def test_version(capsys):
    import spangpt

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"spangpt {spangpt.__version__} (torch ")
