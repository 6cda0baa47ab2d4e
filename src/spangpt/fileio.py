"""Atomic file writes, shared by checkpoints, predictions, reports, the synthetic corpus and downloads."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from spangpt.errors import UserError


def atomic_write(path, write) -> Path:
    """Call write(tmp_path) on a temp file beside path, then move it over path in one step.

    If write raises (a crash, a failed checksum), the temp file is removed and path is untouched, so an
    interrupted run never leaves half a file over a good one. The bytes and then the rename are fsync'ed, so
    a power cut does not either: a finished checkpoint is on disk before its training state is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        plain_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def check_writable(path, folder: bool = False) -> None:
    """Refuse, before any work, a file (or with folder=True, a folder) that cannot be written: a file where
    one of its folders should be, a read-only place. Creates nothing: the folders still missing would be
    made in the nearest existing one, so that is where a probe file is made and removed."""
    path = Path(path)
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".spangpt-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{path}: cannot write in {existing} ({e.strerror})") from None


def fsync_dir(folder: Path) -> None:
    """Make renames in folder durable (a power cut, not just a killed process)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems cannot fsync a directory; the renames are still atomic
        pass


def temp_beside(path: Path) -> str:
    """A new empty temp file in path's folder, so that the final rename is atomic."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def plain_mode(tmp) -> None:
    """Give a finished temp file the permissions open() would have (0666 less the umask) before it is
    renamed into place: mkstemp makes it owner-only, some writers (safetensors) do too, and the rename
    keeps whatever it has."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def read_bytes(path, what: str = "file") -> bytes:
    """The file's bytes, or a one-line UserError naming it ("<path>: <what> not found", "cannot read")."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
