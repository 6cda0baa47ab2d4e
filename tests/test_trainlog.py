"""What a run shows: a bar on a terminal, plain lines elsewhere, TensorBoard on request."""
import io
import sys

import pytest

from conftest import PLAIN_RECIPE
from spangpt.cli import main
from spangpt.trainlog import TrainLog

REC = {"step": 40, "epoch": 3, "loss": 1.234567, "lr": 2.5e-4, "real_tok_per_s": 12345.6, "rms": {"linear": 0.02}}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_each_log_step_is_one_plain_line_and_nothing_else():
    stream = io.StringIO()
    log = TrainLog("pretrain rope", total=100, stream=stream)
    for _ in range(40):
        log.step()
    log.log(REC)
    log.close()
    assert stream.getvalue() == "pretrain rope: step 40/100 epoch 3 loss 1.2346 lr 2.50e-04 tok/s 12346\n"


def test_on_a_terminal_a_bar_shows_the_same_figures_and_no_plain_lines():
    stream = Terminal()
    log = TrainLog("pretrain rope", total=100, stream=stream)
    log.step()
    log.log(REC)
    log.close()
    drawn = stream.getvalue()
    assert "\r" in drawn and "loss=1.2346" in drawn and "lr=2.50e-04" in drawn
    assert "pretrain rope: step" not in drawn


def test_a_silent_log_writes_nothing():
    for stream in (io.StringIO(), Terminal()):
        log = TrainLog("x", total=5, show=False, stream=stream)
        log.step()
        log.log(REC)
        log.close()
        assert stream.getvalue() == ""


FAST = ["--variant", "rope", "--recipe", PLAIN_RECIPE, "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
        "--block-size", "32", "--batch-size", "16", "--max-steps", "6", "--device", "cpu", "--log-interval", "2"]


def test_the_cli_off_a_terminal_logs_one_line_per_interval(tmp_path, synth_dir, capsys):
    out = tmp_path / "p.safetensors"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(" epoch")[0] for line in lines] == [f"pretrain rope: step {s}/6" for s in (2, 4, 6)]


def test_tensorboard_without_its_package_is_one_line_and_nothing_is_trained(tmp_path, synth_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    out = tmp_path / "p.safetensors"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), *FAST, "--tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["spangpt: error: --tensorboard needs the tensorboard package: pip install 'spangpt[tensorboard]' "
                   "(or pip install tensorboard)"]
    assert not out.exists() and not (tmp_path / "p.metrics.jsonl").exists()


def test_the_cli_writes_tensorboard_events_with_the_metrics_values(tmp_path, synth_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spangpt.train import read_metrics

    out = tmp_path / "p.safetensors"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), *FAST, "--tensorboard", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    recs = read_metrics(tmp_path / "p.metrics.jsonl")
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/real_tokens_per_s", "real_tok_per_s")):
        assert [(e.step, e.value) for e in events.Scalars(tag)] == \
            [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in recs]
    assert [e.value for e in events.Scalars("rms/tok_emb")] == [pytest.approx(r["rms"]["tok_emb"], rel=1e-6) for r in recs]
