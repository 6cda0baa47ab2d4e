import json
from pathlib import Path

import pytest
import torch

from spangpt import reproduce as rp
from spangpt import stages
from spangpt.errors import UserError
from spangpt.report import format_table, plot_losses
from spangpt.train import read_metrics

from conftest import TINY_RECIPE

FAST = {"max_steps": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def table(tmp_path_factory, synth_dir):
    out = tmp_path_factory.mktemp("table")
    recipe = out / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    results = rp.reproduce(synth_dir, out, recipe=str(recipe), seeds=(0,), train_overrides=FAST)
    return out, recipe, results


def test_every_run_writes_dev_and_test_predictions_and_a_report(table, synth_dir):
    out, _, results = table
    assert [r["name"] for r in results["runs"]] == ["scratch", "vanilla", "rope"]
    n_dev = len((synth_dir / "birth_dev.tsv").read_text().splitlines())
    n_test = len((synth_dir / "birth_test_inputs.tsv").read_text().splitlines())
    answers = [line.split("\t")[1] for line in (synth_dir / "birth_dev.tsv").read_text().splitlines()]

    def correct(predictions):  # counted here from the file, not by the code under test
        return sum(p == a for p, a in zip(predictions.read_text().split("\n")[:-1], answers))

    for name in ("scratch", "vanilla", "rope"):
        assert len((out / name / "seed0" / "dev.predictions").read_text().splitlines()) == n_dev
        assert len((out / name / "seed0" / "test.predictions").read_text().splitlines()) == n_test
        result = json.loads((out / name / "seed0" / "result.json").read_text())
        assert result["total"] == n_dev and result["correct"] == correct(out / name / "seed0" / "dev.predictions")
        # the pretrained model, before fine-tuning: its own dev and test predictions and score
        before = out / name / "seed0" / "pretrain.dev.predictions"
        if name == "scratch":
            assert "before_finetune" not in result and not before.exists()
            continue
        assert len(before.read_text().splitlines()) == n_dev
        assert len((out / name / "seed0" / "pretrain.test.predictions").read_text().splitlines()) == n_test
        assert result["before_finetune"] == {"correct": correct(before), "total": n_dev,
                                             "accuracy": 100.0 * correct(before) / n_dev}
    report = (out / "report.md").read_text()
    assert "| RoPE |" in report and "always 'London'" in report
    assert "no fine-tuning after pretraining" not in report
    # a run cut short says so; how it ran (the device) is not a setting of the table
    assert f"with `--max-steps {FAST['max_steps']}`, data" in report and "--device" not in report


def test_a_finished_table_is_tidy_one_folder_per_run(table):
    """Every stage has finished: each run's folder keeps its models, configs, metrics, predictions and
    result, and no lock file or optimizer state (they are only there while a stage trains)."""
    out, _, _ = table
    model = ("{}.safetensors", "{}.config.json", "{}.metrics.jsonl")
    expect = {"scratch": {f.format("finetune") for f in model} | {"dev.predictions", "test.predictions", "result.json"}}
    for name in ("vanilla", "rope"):
        expect[name] = expect["scratch"] | {f.format("pretrain") for f in model} | \
            {"pretrain.dev.predictions", "pretrain.test.predictions"}
    for name, files in expect.items():
        assert {p.name for p in (out / name / "seed0").iterdir()} == files, name
    assert {p.name for p in out.iterdir() if p.is_file()} == {"tiny.toml", "results.json", "report.md", "losses.png",
                                                               "accuracy.png"}
    assert (out / "losses.png").stat().st_size > 0 and (out / "accuracy.png").stat().st_size > 0


def test_finished_runs_are_reused_and_only_new_seeds_train(table, synth_dir, monkeypatch):
    out, recipe, first = table
    trained = []
    real_pretrain, real_finetune = stages.pretrain, stages.finetune
    monkeypatch.setattr(stages, "pretrain", lambda data, ckpt, *a, **k: trained.append(ckpt) or real_pretrain(data, ckpt, *a, **k))
    monkeypatch.setattr(stages, "finetune", lambda data, ckpt, *a, **k: trained.append(ckpt) or real_finetune(data, ckpt, *a, **k))
    results = rp.reproduce(synth_dir, out, recipe=str(recipe), seeds=(0, 1), train_overrides=FAST)
    assert trained and all(ckpt.parent.name == "seed1" for ckpt in trained)
    assert len(trained) == 5  # seed 1: three fine-tunings, two pretrainings
    assert results["runs"][:3] == first["runs"]  # seed 0 read back as it was
    assert "seeds [0, 1]" in (out / "report.md").read_text()


def test_a_call_with_fewer_seeds_or_variants_keeps_the_earlier_rows_in_the_report(table, synth_dir, tmp_path, capsys):
    """Seed 1's control alone, in a copy of a finished seed-0 table: the report keeps seed 0's three rows
    (they were dropped before: only the runs asked for were reported); a run with other settings is left
    out and named."""
    import shutil

    done, recipe, first = table
    out = tmp_path / "t"
    # seed 0 alone: other tests of this module add seeds to the shared table
    shutil.copytree(done, out, ignore=lambda _, names: [n for n in names if n.startswith("seed") and n != "seed0"])
    other = out / "rope" / "seed0" / "result.json"
    info = json.loads(other.read_text())
    info["key"]["overrides"]["max_steps"] = 3  # as if trained with other settings
    other.write_text(json.dumps(info))
    results = rp.reproduce(synth_dir, out, recipe=str(recipe), seeds=(1,), variants=(), train_overrides=FAST)
    assert [(r["name"], r["seed"]) for r in results["runs"]] == [("scratch", 0), ("vanilla", 0), ("scratch", 1)]
    assert results["runs"][:2] == first["runs"][:2] and results["seeds"] == [0, 1]
    assert f"{other}: not a run of this table (other settings), left out of the report" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    vanilla = next(line for line in report.splitlines() if line.startswith("| vanilla"))
    assert f"| {first['runs'][1]['accuracy']:.1f}%" in vanilla and "| RoPE |" not in report
    assert "seeds [0, 1]" in report


def test_a_finished_run_with_other_settings_is_an_error_not_reused(table, synth_dir):
    out, recipe, _ = table
    with pytest.raises(UserError) as e:
        rp.reproduce(synth_dir, out, recipe=str(recipe), seeds=(0,), train_overrides={**FAST, "max_steps": 3})
    # the message names what differs, not the whole stored key
    assert str(e.value).endswith(f"a finished run with other settings (overrides.max_steps: {FAST['max_steps']!r} "
                                 "then, 3 now); use another --out")


def test_how_a_run_runs_does_not_keep_its_finished_runs_from_being_reused(table, synth_dir, monkeypatch):
    """Seeds added on another machine with --workers, --row-multiple, --device ...: the finished ones stand."""
    out, recipe, _ = table
    monkeypatch.setattr(rp.stages, "pretrain", lambda *a, **k: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(rp.stages, "finetune", lambda *a, **k: pytest.fail("a finished run was trained again"))
    results = rp.reproduce(synth_dir, out, recipe=str(recipe), seeds=(0,),
                           train_overrides={"max_steps": 2, "workers": 0, "row_multiple": 8, "compile": False})
    # seed 0 as asked (the table may also hold seeds other tests of this module added: they are reported too)
    assert [r["name"] for r in results["runs"] if r["seed"] == 0] == ["scratch", "vanilla", "rope"]


def test_a_finished_run_from_an_edited_recipe_is_an_error_not_reused(synth_dir, tmp_path):
    """Same recipe file, other contents: the finished run was made with the old file and must not be read back."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), variants=(), train_overrides=FAST)
    recipe.write_text(TINY_RECIPE.replace("lr = 1e-3", "lr = 2e-3", 1))
    with pytest.raises(UserError, match=r"other settings \(recipe_tables\.pretrain\.lr: 0\.001 then, 0\.002 now"):
        rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), variants=(), train_overrides=FAST)


def test_demo_refuses_an_earlier_corpus_of_another_size(synth_dir, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wiki.txt").write_text((synth_dir / "wiki.txt").read_text())  # 120 people
    with pytest.raises(UserError, match="a corpus of 120 people from an earlier demo, not 300"):
        rp.demo(tmp_path, people=300)


def test_a_demo_corpus_cut_short_is_written_again(tmp_path, monkeypatch):
    """A demo killed while writing its corpus left files without wiki.txt (or, before wiki.txt was written
    last, wiki.txt without the rest): the next demo refused them ("already exist") or failed on a missing
    file. The corpus is deterministic, so the rest of an interrupted write is simply written again."""
    from spangpt import fileio, synth

    whole = tmp_path / "whole"
    synth.write_corpus(whole, people=40, seed=0, style="simple")
    written = []
    real = fileio.atomic_write

    def killed_after_two(path, write):
        if len(written) == 2:
            raise KeyboardInterrupt  # the kill, between two files
        written.append(Path(path).name)
        return real(path, write)

    data = tmp_path / "demo" / "data"
    monkeypatch.setattr(synth, "atomic_write", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        synth.write_corpus(data, people=40, seed=0, style="simple")
    monkeypatch.setattr(synth, "atomic_write", real)
    assert len(written) == 2 and "wiki.txt" not in written
    rp._demo_corpus(data, 40)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == {p.name: p.read_bytes() for p in whole.iterdir()}


def test_an_interrupted_table_continues_where_it_stopped(table, synth_dir, tmp_path, capsys):
    """Stopped inside its first stage (a time budget here; a signal or a kill alike), the same call again
    resumes that stage from its state and ends with the very weights of the uninterrupted table."""
    from safetensors.torch import load_file

    from spangpt.errors import Stopped

    done, recipe, _ = table
    with pytest.raises(Stopped) as stop:
        rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), train_overrides=FAST,
                     run_options={"max_minutes": 1e-9})
    assert stop.value.step == 1 and not (tmp_path / "scratch" / "seed0" / "finetune.safetensors").exists()
    capsys.readouterr()
    rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), train_overrides=FAST)
    assert f"resuming from {tmp_path / 'scratch' / 'seed0' / 'finetune.state.pt'} at step 1" in capsys.readouterr().out
    for name in ("scratch/seed0/finetune", "vanilla/seed0/pretrain", "rope/seed0/finetune"):
        a, b = load_file(str(tmp_path / f"{name}.safetensors")), load_file(str(done / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in b), name


def test_max_minutes_is_one_budget_for_the_whole_table(table, synth_dir, tmp_path, monkeypatch):
    """Each stage gets the minutes left of the call's budget, not a budget of its own."""
    budgets = []
    for stage in ("pretrain", "finetune"):
        real = getattr(stages, stage)
        monkeypatch.setattr(stages, stage, lambda *a, _real=real, **k:
                            budgets.append(k["train_overrides"]["max_minutes"]) or _real(*a, **k))
    _, recipe, _ = table
    rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), train_overrides=FAST,
                 run_options={"max_minutes": 30})
    assert len(budgets) == 5 and 29 < budgets[-1] < budgets[0] <= 30
    assert all(a > b for a, b in zip(budgets, budgets[1:]))  # the clock runs down across stages
    with pytest.raises(UserError, match="--max-minutes must be >= 0"):
        rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), run_options={"max_minutes": -1})


def test_reproduce_cli_stops_at_max_minutes_with_exit_75_then_goes_on(table, synth_dir, tmp_path, capsys):
    from spangpt.cli import main

    _, recipe, _ = table
    argv = ["reproduce", "--data", str(synth_dir), "--out", str(tmp_path), "--recipe", str(recipe),
            "--variants", "rope", "--max-steps", "2", "--device", "cpu"]
    assert main(argv + ["--max-minutes", "0.000001"]) == 75
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("spangpt: --max-minutes 1e-06 used up at step 1; state saved to ")
    assert err.endswith("run the same command again to continue")
    assert main(argv) == 0 and (tmp_path / "rope" / "seed0" / "result.json").is_file()


def test_a_recipes_own_time_budget_stops_reproduce_with_exit_75(table, synth_dir, tmp_path, capsys):
    """max_minutes set in a recipe rather than on the command line: the stage's own message, not a crash."""
    from spangpt.cli import main

    _, recipe, _ = table
    timed = tmp_path / "timed.toml"
    timed.write_text(f'base = "{recipe}"\n[pretrain]\nmax_minutes = 0.000001\n')
    argv = ["reproduce", "--data", str(synth_dir), "--out", str(tmp_path / "out"), "--recipe", str(timed),
            "--variants", "vanilla", "--max-steps", "2", "--device", "cpu"]
    assert main(argv) == 75
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("spangpt: --max-minutes 1e-06 used up at step 1; state saved to ")


def test_a_bad_value_one_variant_reads_stops_the_table_before_any_run(table, synth_dir, tmp_path):
    """[pretrain] epochs = -1 is read by RoPE only (vanilla has its own): an error before the control and
    vanilla train, not after them."""
    _, recipe, _ = table
    bad = tmp_path / "bad.toml"
    bad.write_text(f'base = "{recipe}"\n[pretrain]\nepochs = -1\n[pretrain.vanilla]\nepochs = 1\n')
    with pytest.raises(UserError, match=r"bad\.toml \[pretrain\]: epochs must be a whole number >= 1, got -1"):
        rp.reproduce(synth_dir, tmp_path / "out", recipe=str(bad), seeds=(0,), train_overrides=FAST)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_jobs_train_side_by_side_to_the_same_results(table, synth_dir, tmp_path):
    """--jobs 2: the same runs in two worker processes give the table's weights and predictions, in its order."""
    from safetensors.torch import load_file

    done, recipe, first = table
    results = rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), train_overrides=FAST, jobs=2)
    assert [r["name"] for r in results["runs"]] == ["scratch", "vanilla", "rope"]
    for name in ("scratch", "vanilla", "rope"):
        a = load_file(str(tmp_path / name / "seed0" / "finetune.safetensors"))
        b = load_file(str(done / name / "seed0" / "finetune.safetensors"))
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b), name
        assert (tmp_path / name / "seed0" / "dev.predictions").read_text() == \
            (done / name / "seed0" / "dev.predictions").read_text()
    assert [r["correct"] for r in results["runs"]] == [r["correct"] for r in first["runs"]]


def test_a_workers_error_reaches_the_caller_as_itself(synth_dir, tmp_path):
    """--jobs 2 with no training pairs: the workers' one-line UserError, not a pool traceback."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("wiki.txt", "birth_dev.tsv"):
        (data / name).write_text((synth_dir / name).read_text())
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    with pytest.raises(UserError, match="birth_places_train.tsv"):
        rp.reproduce(data, tmp_path / "out", recipe=str(recipe), seeds=(0,), train_overrides=FAST, jobs=2)


def test_a_failed_run_ends_the_table_without_starting_the_queued_ones(synth_dir, tmp_path):
    """--jobs 2: vanilla fails at once (an lr no run can use, in its own table); RoPE, already running,
    finishes, but the fine-tuning-only runs queued behind them never start. They used to: the error came
    only after every run before it in the table's order had run."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE + "[pretrain.vanilla]\nlr = 0.0\n")
    with pytest.raises(UserError, match=r"\[pretrain\.vanilla\]: lr must be a number > 0"):
        rp.reproduce(synth_dir, tmp_path / "out", recipe=str(recipe), seeds=(0, 1, 2), train_overrides=FAST, jobs=2)
    started = sorted(p.name for p in (tmp_path / "out").glob("scratch.*"))
    assert started == [], started


def test_a_dev_pair_that_cannot_be_scored_stops_the_table_before_training(synth_dir, tmp_path):
    """Every run scores its answer loss on the dev pairs after training: a dev answer with a character the
    corpus lacks used to end the table there, after the training, naming a line off by the blank lines."""
    data = tmp_path / "data"
    data.mkdir()
    for f in synth_dir.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    lines = (data / "birth_dev.tsv").read_text().splitlines()
    q = lines[1].split("\t")[0]
    (data / "birth_dev.tsv").write_text("\n".join([lines[0], "", f"{q}\tZ\u00fcrich", *lines[2:]]) + "\n")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    with pytest.raises(UserError, match=r"birth_dev\.tsv:3: character"):
        rp.reproduce(data, tmp_path / "out", recipe=str(recipe), seeds=(0,), train_overrides=FAST)
    assert not list((tmp_path / "out").glob("*.safetensors"))


def test_a_test_question_that_cannot_be_asked_stops_the_table_before_training(synth_dir, tmp_path):
    """Each run predicts the test questions after its training: a bad one used to end the table there."""
    data = tmp_path / "data"
    data.mkdir()
    for f in synth_dir.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    lines = (data / "birth_test_inputs.tsv").read_text().splitlines()
    (data / "birth_test_inputs.tsv").write_text("\n".join([lines[0], "Where was " + "Ab " * 40 + "born?", *lines[1:]]))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    with pytest.raises(UserError, match=r"birth_test_inputs\.tsv:2: question is 135 characters"):
        rp.reproduce(data, tmp_path / "out", recipe=str(recipe), seeds=(0,), train_overrides=FAST)
    assert not list((tmp_path / "out").glob("*.safetensors"))


def test_jobs_below_one_is_an_error(synth_dir, tmp_path):
    with pytest.raises(UserError, match="--jobs must be at least 1"):
        rp.reproduce(synth_dir, tmp_path, recipe="demo", jobs=0)


def test_jobs_under_torchrun_is_an_error(synth_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="does not combine with torchrun"):
        rp.reproduce(synth_dir, tmp_path, recipe="demo", jobs=2)


def test_a_stop_crosses_process_boundaries_intact():
    """A worker's Stopped reaches the parent (pickled) with the step, state and exit code the CLI reports."""
    import pickle

    from spangpt.errors import Stopped

    e = pickle.loads(pickle.dumps(Stopped("interrupted by SIGINT", 7, "x.state.pt", 130)))
    assert (e.why, e.step, e.state, e.exit_code) == ("interrupted by SIGINT", 7, "x.state.pt", 130)
    assert str(e).startswith("interrupted by SIGINT at step 7; state saved to x.state.pt")


def test_table_mean_std_beside_the_original_hand_computed():
    def run(name, acc, seed, before=None):
        r = {"name": name, "seed": seed, "accuracy": acc, "answer_loss": 1.0}
        if name != "scratch":
            r["pretrain"] = {"final_loss": 0.5}
        if before is not None:
            r["before_finetune"] = {"correct": 0, "total": 500, "accuracy": before}
        return r

    results = {"recipe": "paper", "seeds": [0, 1], "london": {"correct": 25, "total": 500, "accuracy": 5.0},
               "runs": [run("scratch", 1.0, 0), run("vanilla", 20.0, 0, before=25.4), run("vanilla", 40.0, 1),
                        run("scratch", 2.0, 1)]}
    lines = format_table(results).splitlines()
    vanilla = next(line for line in lines if line.startswith("| vanilla"))
    # stdev(20, 40) = sqrt(200) = 14.14; seed 1 finished before the column existed: -
    assert "| 30.0% ± 14.1 | 20.0, 40.0 | 25.4, - | 26.2% |" in vanilla
    scratch = next(line for line in lines if line.startswith("| no pretraining"))
    assert scratch.startswith("| no pretraining | 1.5% ± 0.7 | 1.0, 2.0 | - | 1.2% |")
    assert len({line.count("|") for line in lines}) == 1  # every row has the header's columns
    assert next(line for line in lines if line.startswith("| always")).startswith("| always 'London' | 5.0% (25/500)")
    assert not any(line.startswith("| RoPE") for line in lines)  # no runs, no row


def test_loss_plot_skips_a_metrics_line_a_kill_cut_short(tmp_path):
    pytest.importorskip("matplotlib")
    good = [{"step": 2, "epoch": 1, "loss": 3.0}, {"step": 4, "epoch": 2, "loss": 2.0}]
    text = "".join(json.dumps(r) + "\n" for r in good) + '{"step": 6, "epoch": 3, "lo'  # killed mid-write
    (tmp_path / "old.pretrain.metrics.jsonl").write_text(text, encoding="utf-8")
    assert read_metrics(tmp_path / "old.pretrain.metrics.jsonl") == good
    assert plot_losses(tmp_path) and (tmp_path / "losses.png").stat().st_size > 0


def test_a_recipe_without_fine_tuning_after_pretraining_reports_the_pretrained_models(synth_dir, tmp_path):
    """[finetune] epochs = 0 (the `fast` and `best` recipes): the pretrained model is the one evaluated, so
    the table's answer is exactly what pretraining reached; the no-pretraining control still fine-tunes."""
    recipe = tmp_path / "nofinetune.toml"
    recipe.write_text(TINY_RECIPE.replace("[finetune]\nepochs = 1", "[finetune]\nepochs = 0\nepochs_from_scratch = 1"))
    results = rp.reproduce(synth_dir, tmp_path / "out", recipe=str(recipe), seeds=(0,), train_overrides=FAST)
    scratch, *pretrained = results["runs"]
    assert "finetune" in scratch and (tmp_path / "out" / "scratch" / "seed0" / "finetune.safetensors").is_file()
    for run in pretrained:
        where = tmp_path / "out" / run["name"] / "seed0"
        assert "finetune" not in run and not list(where.glob("finetune.*"))
        assert (where / "dev.predictions").read_text() == (where / "pretrain.dev.predictions").read_text()
        assert run["accuracy"] == run["before_finetune"]["accuracy"]
    assert "no fine-tuning after pretraining" in (tmp_path / "out" / "report.md").read_text()


def test_keep_state_keeps_each_finished_stages_state_to_continue_it(synth_dir, tmp_path):
    from spangpt import state

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    rp.reproduce(synth_dir, tmp_path, recipe=str(recipe), seeds=(0,), variants=("rope",), train_overrides=FAST,
                 run_options={"keep_state": True})
    for stage in ("pretrain", "finetune"):
        saved = state.load(tmp_path / "rope" / "seed0" / f"{stage}.state.pt")
        assert saved.finished and saved.step == 2
    assert not list(tmp_path.rglob("*.lock"))


def test_tensorboard_gets_every_stage_as_its_own_run_with_the_dev_exact_match(synth_dir, tmp_path):
    """reproduce --tensorboard DIR: DIR/vanilla/seed0/pretrain beside DIR/rope/seed0/pretrain, so that
    `tensorboard --logdir DIR` overlays them; the values are the metrics file's."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    tb = tmp_path / "tb"
    results = rp.reproduce(synth_dir, tmp_path / "out", recipe=str(recipe), seeds=(0,), train_overrides=FAST,
                           run_options={"tensorboard": tb})
    for run in results["runs"]:
        stages_run = ("finetune",) if run["name"] == "scratch" else ("pretrain", "finetune")
        for stage in stages_run:
            events = EventAccumulator(str(tb / run["name"] / "seed0" / stage))
            events.Reload()
            tags = set(events.Tags()["scalars"])
            assert {"train/loss", "train/lr", "train/real_tokens_per_s", "rms/linear", "dev/exact_match"} <= tags
            metrics = read_metrics(tmp_path / "out" / run["name"] / "seed0" / f"{stage}.metrics.jsonl")
            logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
            assert logged == [(m["step"], pytest.approx(m["loss"], rel=1e-6)) for m in metrics]
            exact = events.Scalars("dev/exact_match")
            want = run["before_finetune"]["accuracy"] if stage == "pretrain" else run["accuracy"]
            assert [(e.step, e.value) for e in exact] == [(run[stage]["steps"], pytest.approx(want, abs=1e-4))]


def test_a_runs_key_holds_the_values_its_recipe_takes_from_a_base(tmp_path):
    """Editing a base changes the key of every recipe built on it, so their finished runs are not reused."""
    (tmp_path / "base.toml").write_text(TINY_RECIPE)
    (tmp_path / "child.toml").write_text('base = "base.toml"\n[pretrain]\nepochs = 2\n')
    before = rp._recipe_tables(str(tmp_path / "child.toml"))
    (tmp_path / "base.toml").write_text(TINY_RECIPE.replace("lr = 1e-3", "lr = 2e-3", 1))
    after = rp._recipe_tables(str(tmp_path / "child.toml"))
    assert before["pretrain"]["epochs"] == after["pretrain"]["epochs"] == 2
    assert before != after and after["pretrain"]["lr"] == 2e-3
