"""What a training run writes at each log step: a line of its metrics file (the record: JSON, one line per
log step), and the view of it: a progress bar on a terminal, one plain line elsewhere (a log file, CI: a
redrawn bar would fill it with carriage returns), and optionally TensorBoard.
"""
from __future__ import annotations

import json
import sys

from tqdm import tqdm

from spangpt.errors import UserError
from spangpt.fileio import check_writable


def check_tensorboard(logdir=None):
    """TensorBoard's SummaryWriter class, or one clear line saying how to install it or that logdir cannot be
    written (called before any work when --tensorboard is asked for)."""
    if logdir is not None:
        check_writable(logdir, folder=True)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module needs the tensorboard package, an optional extra
        raise UserError("--tensorboard needs the tensorboard package: pip install 'spangpt[tensorboard]' "
                        "(or pip install tensorboard)") from None
    return SummaryWriter


def summary_writer(logdir):
    """A TensorBoard SummaryWriter on logdir."""
    return check_tensorboard()(str(logdir))


class TrainLog:
    """desc: the run's name in every line; total/initial: steps in all and already done (a resumed run);
    show: False for a silent run (tests, torchrun ranks other than 0); tensorboard: a folder for event files;
    metrics: the metrics file, appended to when initial > 0 (a resumed run), else written afresh."""

    def __init__(self, desc: str, total: int, initial: int = 0, show: bool = True, tensorboard=None,
                 stream=None, metrics=None):
        self.desc, self.total = desc, total
        self.metrics = open(metrics, "a" if initial else "w", encoding="utf-8") if metrics else None
        self.stream = stream or sys.stderr
        self.bar = None
        self.plain = False
        if show and _is_terminal(self.stream):
            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=self.stream)
        elif show:
            self.plain = True
        self.tb = summary_writer(tensorboard) if tensorboard is not None else None

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, rec: dict) -> None:
        """One metrics record (train.py's): step, epoch, loss, lr, real_tok_per_s, rms, ..."""
        if self.metrics is not None:
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()
        if self.bar is not None:
            self.bar.set_postfix(epoch=rec["epoch"], loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}",
                                 tok_s=f"{rec['real_tok_per_s']:.0f}")
        if self.plain:
            print(f"{self.desc}: step {rec['step']}/{self.total} epoch {rec['epoch']} loss {rec['loss']:.4f} "
                  f"lr {rec['lr']:.2e} tok/s {rec['real_tok_per_s']:.0f}", file=self.stream, flush=True)
        if self.tb is not None:
            step = rec["step"]
            self.tb.add_scalar("train/loss", rec["loss"], step)
            self.tb.add_scalar("train/lr", rec["lr"], step)
            self.tb.add_scalar("train/real_tokens_per_s", rec["real_tok_per_s"], step)
            for name, value in rec.get("rms", {}).items():
                self.tb.add_scalar(f"rms/{name}", value, step)
            self.tb.flush()

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def log_scalar(logdir, tag: str, value: float, step: int = 0) -> None:
    """One value in a run's TensorBoard folder (the dev exact match, once the run is evaluated)."""
    writer = summary_writer(logdir)
    writer.add_scalar(tag, value, step)
    writer.close()
