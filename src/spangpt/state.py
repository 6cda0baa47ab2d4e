"""Resumable training: the state file beside a checkpoint, the lock on a run's --out, and stop requests.

runs/x/pretrain.safetensors is the finished model; while it trains, beside it:
  pretrain.state.pt       weights, optimizer, step, data position and RNG states (the newest)
  pretrain.state.prev.pt  the one before, kept in case the newest is damaged
  pretrain.safetensors.lock  held (flock) while a process trains this --out
Once the model is written, the lock and (unless asked to keep them) the states are removed.

A state file is a header line, the SHA-256 of the payload, and the payload: torch.save of plain dicts,
lists, numbers, strings and tensors. It is written to a temp file, fsync'ed, then renamed over the old one
(the old one moving to .prev first), so a crash at any moment leaves at least one complete state.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from spangpt.errors import UserError
from spangpt.fileio import fsync_dir, plain_mode, read_bytes, temp_beside

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against a second process
    fcntl = None

FORMAT = "spangpt-state-v1"
MAGIC = FORMAT.encode() + b"\n"


@dataclass
class TrainState:
    """Where a run stands after step `step`: everything its next step depends on. The one owner of the
    state file's layout (to_dict / from_dict); the training loop fills it, stages reads it."""
    run: dict  # fingerprint(): what makes it this run (a resumed run must match it)
    step: int = 0
    total_steps: int = 0
    tokens: int = 0  # schedule tokens (padded-equivalent)
    real_tokens: int = 0  # non-PAD targets trained on
    final_loss: float = float("nan")
    seconds: float = 0.0  # training time so far
    epoch: int = 0  # the epoch to continue in,
    batch: int = 0  # at this batch
    rng: tuple | None = None  # the data RNG at the start of that epoch (its draw and shuffle are replayed)
    torch_rng: torch.Tensor | None = None  # dropout
    cuda_rng: list | None = None
    window: dict = field(default_factory=dict)  # the unfinished metrics window (train.MetricsWindow)
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    finished: bool = False
    path: str | None = None  # where it was read from, for messages (not saved)

    def to_dict(self) -> dict:
        # shallow on purpose: dataclasses.asdict would deep-copy every weight
        return {"format": FORMAT, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}}

    @classmethod
    def from_dict(cls, d: dict, path=None) -> "TrainState":
        names = {f.name for f in fields(cls)} - {"path"}
        return cls(**{k: v for k, v in d.items() if k in names}, path=None if path is None else str(path))


def paths(state: Path) -> tuple[Path, Path]:
    """-> (the newest state, the one before it)."""
    return state, state.with_name(state.name.removesuffix(".pt") + ".prev.pt")


# ----------------------------------------------------------------------------- the file


def save(path, payload: dict) -> None:
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    blob = MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the state
        plain_mode(tmp)
        _commit(Path(tmp), path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the training state ({e.strerror or e})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _commit(tmp: Path, path: Path) -> None:
    """Newest -> .prev, then tmp -> newest. Killed between the two renames, only .prev is left: load_latest
    falls back to it."""
    _, prev = paths(path)
    if path.exists():
        os.replace(path, prev)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load(path) -> TrainState:
    path = Path(path)
    blob = read_bytes(path, "training state")
    head, digest, data = blob[: len(MAGIC)], blob[len(MAGIC) : len(MAGIC) + 64], blob[len(MAGIC) + 65 :]
    if head != MAGIC:
        raise UserError(f"{path}: not a spangpt training state")
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise UserError(f"{path}: damaged training state (checksum mismatch: truncated or modified)")
    try:
        # weights_only=True: the unpickler rebuilds only tensors and plain containers, never arbitrary
        # classes or functions, so even a state file from someone else cannot run code here. (The
        # checksum above catches damage, not malice: anyone can recompute it.)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # a payload that passed the checksum but is not ours
        raise UserError(f"{path}: unreadable training state ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a spangpt training state")
    return TrainState.from_dict(state, path)


def load_latest(state: Path, warn: bool = True) -> tuple[TrainState, Path] | None:
    """The newest state that loads, falling back to .prev (with a warning) when the newest is damaged.
    None when there is none; a UserError naming the files when every one is damaged."""
    errors = []
    for p in paths(state):
        if not p.exists():
            continue
        try:
            st = load(p)
        except UserError as e:
            errors.append(str(e))
            continue
        if errors and warn:
            print(f"spangpt: warning: {errors[0]}; resuming from {p.name} instead", file=sys.stderr)
        return st, p
    if errors:
        raise UserError("; ".join(errors))
    return None


def mark_finished(state: Path) -> None:
    """After the checkpoint is written: a later --resume auto then knows there is nothing left to do."""
    if state.exists():
        st = load(state)
        st.finished = True
        save(state, st.to_dict())
        paths(state)[1].unlink(missing_ok=True)  # the save moved the unfinished copy there: keep only the newest


def remove(state: Path) -> None:
    """Both state files of a finished run (its checkpoint is written: nothing is left to resume)."""
    for p in paths(state):
        p.unlink(missing_ok=True)


def clean_temp_files(state: Path) -> None:
    """Temp files of saves that were killed half-way (only ever stale: the caller holds the lock)."""
    for p in paths(state):
        for tmp in p.parent.glob(f".{p.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- is it the same run?


def fingerprint(model_cfg: dict, train_cfg: dict, examples, init: str | None = None) -> dict:
    """What a resumed run must share with the saved one: the model, the training settings (train_cfg:
    TrainConfig.trained(), without how they are run), the data (a hash of the first epoch's examples) and,
    for a fine-tuning run, the pretrained weights it started from (init: weights_digest of them; another
    --init is another run)."""
    data = hashlib.sha256(repr(examples).encode()).hexdigest()[:16]
    return json.loads(json.dumps({"model": model_cfg, "train": train_cfg, "data": data, "init": init}))  # tuples -> lists


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of a model's weights, names included (the init of a fine-tuning run: read from a file, so
    the same bytes on every machine; random initial weights are not hashed, being fixed by the seed)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_run(saved: dict, now: dict, path) -> None:
    """Refuse to resume a state saved by another run: a setting missing on one side is a difference too
    (but max_steps, which a fingerprint no longer holds: TrainConfig.trained)."""
    diffs = [f"{part}.{k}: {saved[part].get(k)!r} then, {now[part].get(k)!r} now"
             for part in ("model", "train") for k in sorted((set(saved[part]) | set(now[part])) - {"max_steps"})
             if saved[part].get(k) != now[part].get(k)]
    if saved["data"] != now["data"]:
        diffs.append("the training data differs")
    if saved.get("init") != now.get("init"):
        diffs.append("it started from other weights (another --init)")
    if diffs:
        raise UserError(f"{path}: saved by a run with other settings ({'; '.join(diffs[:3])}); "
                        "resume with the same options, or use another --out")


# ----------------------------------------------------------------------------- one process per --out


@contextmanager
def lock(out: Path):
    """Hold <out>.lock for the block, and remove it at the end. flock is released by the kernel when the
    process dies, even on SIGKILL, so a stale lock file never blocks a rerun. Removing the file while
    holding it is safe because a process that locks it checks that the name still leads to the inode it
    locked: if the holder removed it in between, the newcomer locked a file nobody else will see, and
    tries again on the name."""
    # `runs/v` and `runs/v.safetensors` share their state files, so they share one lock too
    path = out.with_name(out.name.removesuffix(".safetensors") + ".safetensors.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+")
        if fcntl is None:
            break
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            raise UserError(f"{path}: another spangpt process{f' (pid {pid})' if pid.isdigit() else ''} "
                            "is training this --out; wait for it or use another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()  # removed by the holder before we locked it: lock the name afresh
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: see above
        f.close()


# ----------------------------------------------------------------------------- stop requests


class StopRequests:
    """From creation until restore(), SIGINT and SIGTERM append their number to .signals instead of
    stopping the process, so the training loop can finish its step and save. A second signal stops at
    once (KeyboardInterrupt; the last saved state stays). restore() puts the previous handlers back.
    Off the main thread (where Python cannot set handlers) nothing is installed."""

    def __init__(self, enabled: bool = True):
        self.signals: list[int] = []
        self._old = {}
        if enabled and threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handler(self, signum, frame):
        if self.signals:
            raise KeyboardInterrupt
        self.signals.append(signum)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._old = {}
