"""Resumable training: stop anywhere (SIGKILL, a signal, a time budget, a kill in the middle of a save) and
`--resume auto` ends with exactly the weights and metrics of a run that was never interrupted (CPU, fp32).

SPANGPT_TEST_DEVICE=cuda runs the killed-and-resumed CLI runs on a GPU (benchmarks/gpu_speed.sh does, with
the device's defaults: batch workers; 40 steps are too few for the default to compile, so it runs again with
SPANGPT_TEST_COMPILE=1, compiled): the CUDA RNG restore path, with dropout. There the runs are equal
within float noise (cuBLAS and atomic adds need not sum in one order), not bit for bit; dropout masks drawn
from a wrongly restored RNG would differ by far more.

The kill tests run the real CLI in a subprocess; the rest call train() or cli.main() in-process (fast).
"""
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import PLAIN_RECIPE
from spangpt import state
from spangpt.cli import main
from spangpt.errors import Stopped, UserError
from spangpt.model import GPT, ModelConfig
from spangpt.train import TrainConfig, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: same float sums
DEVICE = os.environ.get("SPANGPT_TEST_DEVICE", "cpu")
# SPANGPT_TEST_COMPILE=1: the runs compiled (on CUDA: CUDA graphs), each process compiling afresh (~1 minute)
COMPILE = ["--compile", "true"] if os.environ.get("SPANGPT_TEST_COMPILE") == "1" else []
N = 40  # steps; 120 documents in batches of 16 = 8 steps per epoch, so resumes land in later epochs too
TINY = ["--recipe", PLAIN_RECIPE, "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
        "--dropout", "0.1", "--batch-size", "16", "--epochs", "100", "--max-steps", str(N), "--device", DEVICE,
        "--precision", "fp32", "--log-interval", "1", *COMPILE]
TIMING = {"real_tok_per_s", "elapsed_s", "gflops", "mfu"}


def pretrain_args(data, out, *extra):
    return ["pretrain", "--variant", "vanilla", "--data", str(data), "--out", str(out), *TINY, *extra]


def spawn(args, code=None, **popen):
    """The CLI in a subprocess: `python -m spangpt ARGS`, or `python -c CODE ARGS` to patch something first."""
    cmd = [sys.executable, "-m", "spangpt", *args] if code is None else [sys.executable, "-c", code, *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def messages(err: str) -> list[str]:
    """stderr without tqdm's progress bar (redrawn after a \\r, its last state starts with the stage name)."""
    lines = (line.split("\r")[-1] for line in err.split("\n"))
    return [line for line in lines if line and not line.startswith(("pretrain ", "finetune "))]


def metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def wait_for(cond, proc, what, timeout=600 if COMPILE else 120):
    t = time.monotonic()
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() - t < timeout, f"timed out waiting for {what}"
        time.sleep(0.005)


def logged_steps(path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synth_dir):
    """The uninterrupted run every interrupted one must equal."""
    out = tmp_path_factory.mktemp("ref") / "p.safetensors"
    code, _, err = finish(spawn(pretrain_args(synth_dir, out)))
    assert code == 0, err
    recs = metrics(out.with_name("p.metrics.jsonl"))
    assert [r["step"] for r in recs] == list(range(1, N + 1))
    return load_file(str(out)), recs


def assert_same_as_reference(out, reference):
    weights, recs = reference
    got = load_file(str(out))
    assert set(got) == set(weights)
    got_recs = metrics(out.with_name("p.metrics.jsonl"))
    if DEVICE == "cpu":
        assert all(torch.equal(got[k], weights[k]) for k in weights), "weights differ from the uninterrupted run"
        assert got_recs == recs  # steps 1..N once each, same losses
        return
    assert all(torch.allclose(got[k], weights[k], rtol=1e-3, atol=1e-5) for k in weights), \
        max(float((got[k] - weights[k]).abs().max()) for k in weights)
    assert [r["step"] for r in got_recs] == [r["step"] for r in recs]
    assert [r["loss"] for r in got_recs] == pytest.approx([r["loss"] for r in recs], rel=1e-3)


def test_sigkill_at_a_random_step_then_resume_auto_is_bitwise_identical(tmp_path, synth_dir, reference):
    k = random.randrange(3, N // 2)
    print(f"killed at step {k}")  # a random step; pytest shows this on a failure, to reproduce it
    out = tmp_path / "p.safetensors"
    proc = spawn(pretrain_args(synth_dir, out, "--save-every", "1"))
    wait_for(lambda: logged_steps(tmp_path / "p.metrics.jsonl") >= k, proc, f"step {k}")
    proc.kill()  # SIGKILL: no handler runs, no cleanup
    proc.wait()
    assert not out.exists(), "the run finished before it was killed"
    # the kill may land between a save's two renames, when only .prev exists: take what --resume auto takes
    killed_at = state.load_latest(tmp_path / "p.state.pt", warn=False)[0].step
    assert killed_at < N

    code, stdout, err = finish(spawn(pretrain_args(synth_dir, out, "--save-every", "1", "--resume", "auto")))
    assert code == 0, err
    assert f"at step {killed_at}" in stdout, (k, stdout)
    assert_same_as_reference(out, reference)


# Pause the k-th state save after its temp file is complete, before or between the renames, so the test can
# SIGKILL the process exactly there. (This wraps a private function; nothing in spangpt exists for tests.)
PAUSE_IN_SAVE = """
import os, sys, time
from pathlib import Path
import spangpt.state as st
where, k, marker = sys.argv.pop(1), int(sys.argv.pop(1)), Path(sys.argv.pop(1))
calls, commit = [0], st._commit
def paused(tmp, path):
    calls[0] += 1
    if calls[0] == k:
        if where == "between":
            os.replace(path, st.paths(path)[1])
        marker.with_suffix(".part").write_text(str(tmp))
        os.replace(marker.with_suffix(".part"), marker)  # appears complete, for the test to kill us now
        time.sleep(600)
    commit(tmp, path)
st._commit = paused
from spangpt.cli import main
raise SystemExit(main())
"""


@pytest.mark.parametrize("where", ["before", "between"])
def test_sigkill_during_a_state_save_keeps_a_good_state(tmp_path, synth_dir, reference, where):
    """Killed with the new state half-committed: before any rename, or after newest -> .prev but before
    the temp file becomes the newest. Either way a complete state remains and --resume auto finishes."""
    k, out, marker = random.randrange(3, N // 2), tmp_path / "p.safetensors", tmp_path / "paused"
    print(f"killed in save {k}")  # shown on a failure
    proc = spawn([where, str(k), str(marker), *pretrain_args(synth_dir, out, "--save-every", "1")], PAUSE_IN_SAVE)
    wait_for(marker.exists, proc, f"save {k}")
    proc.kill()
    proc.wait()
    newest, prev = state.paths(tmp_path / "p.state.pt")
    assert os.path.exists(marker.read_text())  # the new state's temp file, complete but never committed
    if where == "before":
        assert state.load(newest).step == k - 1 and state.load(prev).step == k - 2
    else:
        assert not newest.exists() and state.load(prev).step == k - 1

    code, stdout, err = finish(spawn(pretrain_args(synth_dir, out, "--save-every", "1", "--resume", "auto")))
    assert code == 0, err
    assert f"at step {k - 1}" in stdout
    assert_same_as_reference(out, reference)
    assert not list(tmp_path.glob(".*.tmp")), "the stale temp file was not cleaned up"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_sigterm_save_state_print_one_line_and_exit_128_plus_signal(tmp_path, synth_dir, reference, sig):
    out = tmp_path / "p.safetensors"
    proc = spawn(pretrain_args(synth_dir, out))  # no --save-every: the signal alone saves the state
    wait_for(lambda: logged_steps(tmp_path / "p.metrics.jsonl") >= 3, proc, "step 3")
    proc.send_signal(sig)
    code, _, err = finish(proc)
    assert code == 128 + sig
    step = state.load(tmp_path / "p.state.pt").step
    name = signal.Signals(sig).name
    assert messages(err) == [f"spangpt: interrupted by {name} at step {step}; state saved to {tmp_path / 'p.state.pt'}; "
                     "continue with the same command plus --resume auto"]
    assert 3 <= step < N and not out.exists()
    if sig == signal.SIGTERM:  # and it resumes to the same result (SIGINT differs only in the exit code)
        code, _, err = finish(spawn(pretrain_args(synth_dir, out, "--resume", "auto")))
        assert code == 0, err
        assert_same_as_reference(out, reference)


# ----------------------------------------------------------------------------- in-process: train() and main()

SMALL = dict(vocab_size=30, block_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.1)


def _count_task(rng):
    """Learnable toy data drawn from rng every epoch: count upward from a random start."""
    out = []
    for _ in range(40):
        start = rng.randrange(2, 14)
        x = list(range(start, start + rng.randint(4, 16)))
        out.append((x, x[1:] + [0]))
    return out


def _train(tmp_path, resume=None, hook=None, steps=17, **kw):
    tmp_path.mkdir(exist_ok=True)
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL))
    if hook:
        model.head.register_forward_hook(hook)
    cfg = TrainConfig(**{**dict(epochs=100, batch_size=16, lr=1e-2, schedule="cosine", warmup_tokens=0,
                                max_steps=steps, seed=0, device="cpu", precision="fp32", log_interval=4,
                                progress=False), **kw})
    res = train(model, _count_task, cfg, tmp_path / "m.jsonl", state_path=tmp_path / "s.pt", resume=resume)
    return model, res


def at_call(k, action):
    """A forward hook on the head that runs action(logits) on the k-th forward (= the k-th step)."""
    calls = [0]

    def hook(module, inputs, logits):
        calls[0] += 1
        return action(logits) if calls[0] == k else None
    return hook


def _kill_self(sig):
    return lambda logits: os.kill(os.getpid(), sig)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_signal_then_resume_in_process_equals_uninterrupted(tmp_path, workers):
    """The data order survives a resume in a later epoch, with batches made in-process or in a worker."""
    ref, ref_res = _train(tmp_path / "ref", workers=workers)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Stopped) as stop:
        _train(tmp_path / "cut", hook=at_call(7, _kill_self(signal.SIGINT)), workers=workers)  # epoch 3 of 3-step epochs
    assert stop.value.step == 7 and stop.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    model, res = _train(tmp_path / "cut", resume=state.load(tmp_path / "cut" / "s.pt"), workers=workers)
    ref_sd = ref.state_dict()
    assert all(torch.equal(t, ref_sd[n]) for n, t in model.state_dict().items())
    assert metrics(tmp_path / "cut" / "m.jsonl") == metrics(tmp_path / "ref" / "m.jsonl")
    assert (res.steps, res.tokens, res.real_tokens, res.final_loss) == \
        (ref_res.steps, ref_res.tokens, ref_res.real_tokens, ref_res.final_loss)


def test_a_resumed_window_reports_the_speed_of_its_steps(tmp_path, monkeypatch):
    """The metrics window open at a stop is finished after the resume; its tokens/s must count the time its
    steps took before the stop too (it counted only the time after, so the first line after a resume
    overstated the speed). A fake clock that ticks one second per step makes the figures exact."""
    clock = [0.0]
    monkeypatch.setattr("spangpt.train.time.perf_counter", lambda: clock[0])

    def ticking(action=None):
        inner = at_call(7, action) if action else None

        def hook(module, inputs, logits):
            clock[0] += 1.0
            return inner(module, inputs, logits) if inner else None
        return hook

    _train(tmp_path / "ref", hook=ticking())
    with pytest.raises(Stopped):
        _train(tmp_path / "cut", hook=ticking(_kill_self(signal.SIGINT)))
    clock[0] += 1000.0  # the pause between the two processes is no training time
    _train(tmp_path / "cut", hook=ticking(), resume=state.load(tmp_path / "cut" / "s.pt"))
    speeds = lambda d: [(r["step"], r["real_tok_per_s"], r["gflops"])
                        for r in map(json.loads, (d / "m.jsonl").read_text().splitlines())]
    assert speeds(tmp_path / "cut") == speeds(tmp_path / "ref")
    assert len(speeds(tmp_path / "ref")) >= 3  # the window cut at step 7 is among them


def test_nan_loss_stops_naming_the_steps_and_keeps_the_last_good_state(tmp_path):
    nan = at_call(7, lambda logits: logits * float("nan"))  # step 7's loss (and so its update) goes NaN
    with pytest.raises(UserError, match=r"training diverged: mean loss nan over steps "
                                        r"5-8 .*the last good state \(step 6\) is kept in"):
        _train(tmp_path, hook=nan, save_every=3)
    kept = state.load(tmp_path / "s.pt")
    assert kept.step == 6 and all(torch.isfinite(t).all() for t in kept.model.values())
    assert [r["step"] for r in metrics(tmp_path / "m.jsonl")] == [4]  # no line for the NaN window


def test_no_state_is_ever_saved_from_a_diverged_run(tmp_path):
    """A NaN right before a save is caught by the check every save makes, not only at log steps."""
    with pytest.raises(UserError, match=r"training diverged: mean loss nan over steps 1-4 \(limit 6.80\); "
                                        r"the last good state \(step 2\)"):
        _train(tmp_path, hook=at_call(3, lambda logits: logits * float("nan")), save_every=2, log_interval=100)
    assert state.load(tmp_path / "s.pt").step == 2


def test_exploding_loss_stops_past_twice_the_uniform_loss(tmp_path):
    # logits x 1e4 make the model confidently wrong: a finite loss far above 2 ln(30) = 6.80
    with pytest.raises(UserError, match=r"mean loss \d+(\.\d+)?(e\+\d+)? over steps 1-4 \(limit 6.80\); no state was saved"):
        _train(tmp_path, hook=at_call(2, lambda logits: logits * 1e4))
    assert not (tmp_path / "s.pt").exists()


def test_state_file_is_plain_tensors_and_numbers_and_loads_weights_only(tmp_path):
    _train(tmp_path, steps=5)
    st = state.load(tmp_path / "s.pt")
    assert st.step == 5 and st.finished is False and st.total_steps == 5
    blob = (tmp_path / "s.pt").read_bytes()
    assert blob.startswith(b"spangpt-state-v1\n")
    payload = blob[len(b"spangpt-state-v1\n") + 65:]
    torch.load(io.BytesIO(payload), weights_only=True)  # raises if anything but plain data were pickled


# ----------------------------------------------------------------------------- the CLI in-process

FAST = ["--recipe", PLAIN_RECIPE, "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
        "--batch-size", "16", "--max-steps", "6", "--device", "cpu", "--log-interval", "2"]


def _pretrain(synth_dir, out, *extra):
    return main(["pretrain", "--variant", "rope", "--data", str(synth_dir), "--out", str(out), *FAST, *extra])


def _one_line(err: str) -> str:
    lines = messages(err)
    assert len(lines) == 1, err
    return lines[0]


def test_max_minutes_stops_with_exit_75_then_resume_finishes(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out, "--max-minutes", "0.000001") == 75  # stops after the first step
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("spangpt: --max-minutes 1e-06 used up at step 1; state saved to ") and "--resume auto" in line
    assert not out.exists()
    assert _pretrain(synth_dir, out, "--resume", "auto") == 0
    assert [r["step"] for r in metrics(tmp_path / "p.metrics.jsonl")] == [2, 4, 6]


def test_finished_run_is_not_redone_and_only_force_trains_it_again(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out) == 0
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--resume", "auto") == 0
    assert f"{out}: finished before (6 steps" in capsys.readouterr().out
    assert _pretrain(synth_dir, out) == 2  # no --resume: refused, the model and its metrics untouched
    assert _one_line(capsys.readouterr().err) == (
        f"spangpt: error: {out}: a finished checkpoint is here; --resume auto leaves it as it is, --force trains it "
        "again from scratch, or give another --out")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    assert _pretrain(synth_dir, out, "--force", "--resume", "auto") == 2
    assert "--force starts over and --resume continues" in _one_line(capsys.readouterr().err)
    before = out.stat().st_mtime_ns
    assert _pretrain(synth_dir, out, "--force") == 0
    assert out.stat().st_mtime_ns != before
    assert [r["step"] for r in metrics(tmp_path / "p.metrics.jsonl")] == [2, 4, 6]  # the new run's, once


def test_fresh_start_over_an_unfinished_run_is_refused_unless_forced(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out, "--max-minutes", "0.000001") == 75
    saved = (tmp_path / "p.state.pt").read_bytes()
    capsys.readouterr()
    assert _pretrain(synth_dir, out) == 2
    assert "an unfinished run is saved here (step 1); add --resume auto to continue it, or --force to start over" \
        in _one_line(capsys.readouterr().err)
    assert (tmp_path / "p.state.pt").read_bytes() == saved
    assert _pretrain(synth_dir, out, "--force") == 0
    assert out.is_file() and not (tmp_path / "p.state.pt").exists() and not (tmp_path / "p.state.prev.pt").exists()


def test_resume_with_other_settings_is_refused(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out, "--max-minutes", "0.000001") == 75
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--resume", "auto", "--lr", "0.1") == 2
    err = _one_line(capsys.readouterr().err)
    assert "p.state.pt: saved by a run with other settings (train.lr: 0.003 then, 0.1 now)" in err
    # how a run is run may change: the device, the log interval, save/budget options
    assert _pretrain(synth_dir, out, "--resume", "auto", "--log-interval", "3", "--save-every", "2") == 0


def test_finetune_from_other_pretrained_weights_is_another_run(tmp_path, synth_dir, capsys):
    """A fine-tuning state or checkpoint is only reused for the same --init weights: the settings and data
    alone cannot tell two pretrained models apart."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert _pretrain(synth_dir, a, "--block-size", "96") == 0  # room for the QA pairs
    assert _pretrain(synth_dir, b, "--block-size", "96", "--seed", "1") == 0
    ft = tmp_path / "f.safetensors"

    def finetune(init, *extra):
        no_model_options = FAST[:2] + FAST[10:]  # the model comes from --init
        return main(["finetune", "--variant", "rope", "--data", str(synth_dir), "--init", str(init), "--out", str(ft),
                     *no_model_options, *extra])

    assert finetune(a, "--max-minutes", "0.000001") == 75  # unfinished, from a
    capsys.readouterr()
    assert finetune(b, "--resume", "auto") == 2
    assert "f.state.pt: saved by a run with other settings (it started from other weights (another --init))" in \
        _one_line(capsys.readouterr().err)
    assert finetune(a, "--resume", "auto") == 0  # the same weights under another name would do as well
    capsys.readouterr()
    assert finetune(b, "--resume", "auto") == 2  # finished from a: not "finished before" for b
    assert "it started from other weights" in _one_line(capsys.readouterr().err)
    c = tmp_path / "copy of a.safetensors"
    c.write_bytes(a.read_bytes())
    assert finetune(c, "--resume", "auto") == 0
    assert f"{ft}: finished before" in capsys.readouterr().out


def test_second_run_on_the_same_out_is_refused_by_the_lock(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    with state.lock(out):  # another open file description: flock treats it as another process would
        assert _pretrain(synth_dir, out) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"{out}.lock: another spangpt process (pid {os.getpid()}) is training this --out" in err
    assert not out.exists()
    assert _pretrain(synth_dir, out) == 0  # released


def test_an_out_with_and_without_safetensors_takes_the_same_lock(tmp_path, synth_dir, capsys):
    """`runs/p` and `runs/p.safetensors` write the same state and metrics files: one lock for both."""
    with state.lock(tmp_path / "p"):
        assert _pretrain(synth_dir, tmp_path / "p.safetensors") == 2
    assert "another spangpt process" in _one_line(capsys.readouterr().err)


def test_a_finished_run_leaves_its_model_and_no_state_or_lock_unless_asked_to_keep_the_state(tmp_path, synth_dir):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out, "--save-every", "2") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.config.json", "p.metrics.jsonl", "p.safetensors"]
    kept = tmp_path / "kept" / "p.safetensors"
    assert _pretrain(synth_dir, kept, "--save-every", "2", "--keep-state") == 0
    assert {p.name for p in kept.parent.iterdir()} == {"p.config.json", "p.metrics.jsonl", "p.safetensors",
                                                       "p.state.pt"}  # the newest only: no .prev beside it
    st = state.load(kept.parent / "p.state.pt")
    assert st.finished and st.step == 6
    assert load_file(str(out)).keys() == load_file(str(kept)).keys()
    assert all(torch.equal(load_file(str(out))[k], load_file(str(kept))[k]) for k in load_file(str(out)))


def test_a_kept_run_goes_on_to_more_steps_as_if_it_had_never_stopped(tmp_path, synth_dir, capsys):
    """--keep-state, then a larger --max-steps: the run continues from its state, and ends with the weights and
    losses of one run of that many steps (the schedule is the whole run's either way)."""
    straight = tmp_path / "straight" / "p.safetensors"
    assert _pretrain(synth_dir, straight, "--max-steps", "10") == 0
    out = tmp_path / "kept" / "p.safetensors"
    assert _pretrain(synth_dir, out, "--keep-state") == 0  # 6 steps
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--keep-state", "--max-steps", "10", "--resume", "auto") == 0
    assert f"resuming from {out.parent / 'p.state.pt'} at step 6" in capsys.readouterr().out
    got, want = load_file(str(out)), load_file(str(straight))
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert metrics(out.with_name("p.metrics.jsonl")) == metrics(straight.with_name("p.metrics.jsonl"))
    assert _pretrain(synth_dir, out, "--max-steps", "10", "--resume", "auto") == 0
    assert "finished before (10 steps" in capsys.readouterr().out


def test_a_finished_run_without_its_state_or_asked_for_fewer_steps_says_why_it_cannot(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out) == 0  # 6 steps, state removed
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--max-steps", "10", "--resume", "auto") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"spangpt: error: {out}: a finished run of 6 steps whose training state was removed, so it cannot go on to "
        "step 10 (--keep-state keeps it to continue later); train it again without --resume, or give another --out")
    kept = tmp_path / "kept" / "p.safetensors"
    assert _pretrain(synth_dir, kept, "--keep-state") == 0
    capsys.readouterr()
    assert _pretrain(synth_dir, kept, "--max-steps", "4", "--resume", "auto") == 2
    assert "saved at step 6, past the 4 steps asked now (--max-steps)" in _one_line(capsys.readouterr().err)
    # another setting is refused before anything says it resumes
    assert _pretrain(synth_dir, kept, "--max-steps", "10", "--lr", "0.1", "--resume", "auto") == 2
    out_err = capsys.readouterr()
    assert "saved by a run with other settings (train.lr: 0.003 then, 0.1 now)" in _one_line(out_err.err)
    assert "resuming" not in out_err.out


def test_the_lock_file_goes_with_the_run_and_a_lock_on_a_removed_file_is_taken_again(tmp_path, monkeypatch):
    """The holder removes the lock file while still holding it. A newcomer that opened the file just before
    that, and then got its flock, holds a file no one else can see: it must notice and lock the name again,
    or two processes would train one --out."""
    out = tmp_path / "p.safetensors"
    lock_file = tmp_path / "p.safetensors.lock"
    with state.lock(out):
        assert lock_file.is_file()
    assert not lock_file.exists()

    real_flock, calls = state.fcntl.flock, []

    def holder_finishes_first(f, how):  # between the newcomer's open and its flock, the holder removes the file
        calls.append(os.fstat(f.fileno()).st_ino)
        if len(calls) == 1:
            lock_file.unlink()
        return real_flock(f, how)

    monkeypatch.setattr(state.fcntl, "flock", holder_finishes_first)
    with state.lock(out):
        assert len(calls) == 2 and os.stat(lock_file).st_ino == calls[1]  # locked the file under the name
        assert lock_file.read_text() == f"{os.getpid()}\n"
    assert not lock_file.exists()


def _damage(path, how, rng):
    blob = path.read_bytes()
    if how == "truncate":
        path.write_bytes(blob[: rng.randrange(0, len(blob))])
    else:  # one flipped bit anywhere
        i = rng.randrange(len(blob))
        path.write_bytes(blob[:i] + bytes([blob[i] ^ (1 << rng.randrange(8))]) + blob[i + 1:])


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_state_is_a_clear_error_and_auto_falls_back_to_prev(tmp_path, synth_dir, capsys, how):
    out = tmp_path / "p.safetensors"
    seed = random.randrange(2**32)
    print(f"damage seed {seed}")  # shown on a failure: random.Random(seed) redoes the same damage
    rng = random.Random(seed)
    assert _pretrain(synth_dir, out, "--save-every", "2", "--max-minutes", "0.000001") == 75  # state at step 1
    assert _pretrain(synth_dir, out, "--save-every", "2", "--max-minutes", "0.000001", "--resume", "auto") == 75
    newest, prev = state.paths(tmp_path / "p.state.pt")
    assert (state.load(newest).step, state.load(prev).step) == (2, 1)
    _damage(newest, how, rng)
    capsys.readouterr()

    assert _pretrain(synth_dir, out, "--resume", str(newest)) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"spangpt: error: {newest}: ") and ("damaged" in err or "not a spangpt" in err)

    assert _pretrain(synth_dir, out, "--resume", "auto") == 0
    captured = capsys.readouterr()
    assert f"resuming from {prev} at step 1" in captured.out
    assert f"spangpt: warning: {newest}: " in captured.err and "resuming from p.state.prev.pt instead" in captured.err


def test_every_state_damaged_is_one_line_naming_both(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir, out, "--save-every", "1", "--max-minutes", "0.000001") == 75
    assert _pretrain(synth_dir, out, "--save-every", "1", "--max-minutes", "0.000001", "--resume", "auto") == 75
    newest, prev = state.paths(tmp_path / "p.state.pt")
    newest.write_bytes(newest.read_bytes()[:100])
    prev.write_bytes(b"")
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--resume", "auto") == 2
    err = _one_line(capsys.readouterr().err)
    assert f"{newest}: damaged training state" in err and f"{prev}: not a spangpt training state" in err


def test_negative_save_every_or_budget_is_an_error(tmp_path, synth_dir, capsys):
    assert _pretrain(synth_dir, tmp_path / "p.safetensors", "--save-every", "-1") == 2
    assert "save_every must be a whole number >= 0" in _one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- reproduce --jobs 2: workers

JOBS_RECIPE = """
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 64
dropout = 0.0
[pretrain]
epochs = 1000
batch_size = 16
lr = 1e-3
schedule = "constant"
log_interval = 1
[finetune]
epochs = 1
batch_size = 16
lr = 1e-3
schedule = "constant"
"""


def _training_workers(tmp_path, synth_dir):
    """`reproduce --jobs 2` in a subprocess, once both pretraining workers have logged steps: (proc, out, pids)."""
    recipe = tmp_path / "long.toml"
    recipe.write_text(JOBS_RECIPE)
    out = tmp_path / "table"
    proc = spawn(["reproduce", "--data", str(synth_dir), "--out", str(out), "--recipe", str(recipe), "--seeds", "0",
                  "--jobs", "2", "--device", "cpu", "--precision", "fp32"],
                 start_new_session=True)  # a process group of its own: what a terminal's Ctrl-C reaches
    runs = [out / v / "seed0" / "pretrain" for v in ("vanilla", "rope")]
    wait_for(lambda: all(logged_steps(Path(f"{r}.metrics.jsonl")) >= 2 for r in runs), proc, "both workers' steps")
    children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
    pids = [int(p) for p in children if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(pids) == 2
    return proc, runs, pids


def _alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has stopped; only its exit status is left
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["kill-pid", "ctrl-c"])
def test_a_signal_to_reproduce_stops_its_workers_with_their_states_saved(tmp_path, synth_dir, sig, to_group):
    """`kill PID` of a `reproduce --jobs 2` reaches the parent only, Ctrl-C its whole process group: either
    way each worker gets the stop once, saves and stops, and the parent reports it as one line with status
    128 + signal, leaving no worker behind."""
    proc, runs, pids = _training_workers(tmp_path, synth_dir)
    os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
    code, _, err = finish(proc)
    assert code == 128 + sig, err
    assert re.fullmatch(rf"spangpt: interrupted by {signal.Signals(sig).name} at step \d+; state saved to {re.escape(str(runs[0]))}"
                        r"\.state\.pt; run the same command again to continue", messages(err)[-1]), err
    for run in runs:
        assert state.load(Path(f"{run}.state.pt")).step >= 2
    assert not any(_alive(p) for p in pids)
    assert not (runs[0].parents[1] / "scratch").exists()  # the run not started stays so


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_of_a_killed_reproduce_save_and_stop_instead_of_training_on(tmp_path, synth_dir):
    """SIGKILL of the parent cannot be passed on: each worker sees its parent gone, saves and stops."""
    proc, runs, pids = _training_workers(tmp_path, synth_dir)
    proc.kill()
    proc.wait()
    t = time.monotonic()
    while any(_alive(p) for p in pids):
        assert time.monotonic() - t < 60, "orphaned workers still running a minute after their parent died"
        time.sleep(0.05)
    _, _, err = finish(proc)  # the workers held its pipes open until now
    for run in runs:
        assert state.load(Path(f"{run}.state.pt")).step >= 2
        name = f"{run.parents[1].name} seed 0"
        assert re.search(rf"spangpt: {name}: interrupted by SIGTERM at step \d+; state saved to \S+; run the "
                         r"same command again to continue \(the parent process had died\)", err), err


def test_a_state_lacking_a_setting_or_the_init_hash_is_another_runs():
    """No setting is assumed for a state that lacks it: such a state was saved by another run."""
    now = state.fingerprint({"n_layer": 1}, {"lr": 0.1, "shuffle": True}, [([1], [2])], init="abc")
    state.check_same_run(json.loads(json.dumps(now)), now, "s.pt")  # the same run: accepted
    with pytest.raises(UserError, match=r"train\.shuffle: None then, True now"):
        state.check_same_run({**now, "train": {"lr": 0.1}}, now, "s.pt")
    with pytest.raises(UserError, match="it started from other weights"):
        state.check_same_run({k: v for k, v in now.items() if k != "init"}, now, "s.pt")
    with pytest.raises(UserError, match="it started from other weights"):
        state.check_same_run({**now, "init": None}, now, "s.pt")  # from scratch then, from weights now
    with pytest.raises(UserError, match=r"train\.momentum: None then, 0\.9 now"):
        state.check_same_run(now, {**now, "train": {**now["train"], "momentum": 0.9}}, "s.pt")


def test_a_run_records_its_data_as_an_absolute_path(tmp_path, synth_dir, monkeypatch):
    """explore and ask find the dev set from a run's recorded data folder, from wherever they are started."""
    monkeypatch.chdir(synth_dir.parent)
    out = tmp_path / "p.safetensors"
    assert _pretrain(synth_dir.name, out) == 0
    recorded = json.loads((tmp_path / "p.config.json").read_text())["data"]
    assert recorded == str(synth_dir.resolve())


def test_a_state_saved_with_max_steps_in_its_fingerprint_still_resumes():
    """States written when a fingerprint held max_steps: it is ignored on both sides, as on neither."""
    now = state.fingerprint({"n_layer": 1}, {"lr": 0.1}, [([1], [2])])
    old = {**now, "train": {**now["train"], "max_steps": 6}}
    state.check_same_run(old, now, "s.pt")
    state.check_same_run(now, old, "s.pt")


def test_an_unfinished_state_past_the_steps_asked_is_refused(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    for _ in range(2):  # a budget this small stops after one step each time: a state at step 2
        assert _pretrain(synth_dir, out, "--max-minutes", "0.000001", "--resume", "auto") == 75
    capsys.readouterr()
    assert _pretrain(synth_dir, out, "--max-steps", "1", "--resume", "auto") == 2
    assert "saved at step 2, past the 1 steps asked now (--max-steps)" in _one_line(capsys.readouterr().err)
    assert not out.exists()
