"""Fetch the original CS224N birthplace data and check it byte for byte.

The files are pinned to one commit of a public GitHub mirror and to their SHA-256, so every user
trains on exactly the same bytes. Nothing is ever half-written: each file goes to a temp file in
the target folder, is verified, and only then renamed into place.

    from spangpt import download
    download.download("data/cs224n")
    download.verify("data/cs224n")
"""

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from spangpt.errors import UserError
from spangpt.fileio import atomic_write, check_writable

BASE_URL = ("https://raw.githubusercontent.com/joshua-andreychuk/NLP-Deep-Learning-Transformers/"
            "de40b4f831c562d04858ecc43fa97af2fbbe3f40/Data")

SHA256 = {
    "wiki.txt": "17e381468abd91b60be8acaff006c66b77532b4ea4c0ce097b0a686d2e8e8219",
    "birth_places_train.tsv": "02364dfca78e23d2583a19f03a2d8cddd90ee3e1a3795ddec7f0addadea30b0d",
    "birth_dev.tsv": "101a56073eba0db9aad5e2aaf1aa9bf8bdae966ae3aaed8fc8cda5edfa7856da",
    "birth_test_inputs.tsv": "5ccd3b2a1682e0daf90d59488aef8805ef21b9d35795cc3bdabdea79d293aa1f",
}


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(data_dir) -> None:
    """Raise UserError unless data_dir holds all four files with the published checksums."""
    d = Path(data_dir)
    problems = []
    for name, want in SHA256.items():
        path = d / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif sha256(path) != want:
            problems.append(f"{name} has the wrong checksum")
    if problems:
        raise UserError(f"{d}: {'; '.join(problems)} (run the download again, with overwrite to "
                        "replace changed files)")


def download(out_dir, base_url: str = BASE_URL, timeout: float = 30.0,
             overwrite: bool = False) -> list[Path]:
    """Download the four files into out_dir, skipping those already there and correct."""
    out = Path(out_dir)
    todo = []
    # Check what is already there before touching the network, so a refusal costs nothing.
    for name, want in SHA256.items():
        path = out / name
        if not path.exists():
            todo.append(name)
        elif sha256(path) != want:
            if not overwrite:
                raise UserError(f"{path}: exists with a different checksum than the original "
                                "data; not overwriting it (move it away or pass --force)")
            todo.append(name)
    check_writable(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in todo:
        _fetch(f"{base_url.rstrip('/')}/{name}", out / name, SHA256[name], timeout)
    return [out / name for name in SHA256]


def _fetch(url: str, path: Path, want: str, timeout: float) -> None:
    # Streamed into a temp file and hashed on the way; a failed download or checksum raises before the
    # temp file replaces anything (atomic_write then removes it).
    atomic_write(path, lambda tmp: _download_verified(url, Path(tmp), want, timeout, path))


def _download_verified(url: str, tmp: Path, want: str, timeout: float, path: Path) -> None:
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    h.update(chunk)
                    f.write(chunk)
        except urllib.error.HTTPError as e:
            raise UserError(_offline(url, f"HTTP {e.code} {e.reason}", path.parent)) from None
        # Network trouble only (refused, DNS, timeout, reset, cut short); a failing disk write
        # is not the user's connection and keeps its own error.
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise UserError(_offline(url, reason, path.parent)) from None
    got = h.hexdigest()
    if got != want:
        raise UserError(f"{url}: checksum mismatch for {path.name}: expected {want}, got {got} "
                        "(the download was discarded)")


def _offline(url, reason, folder) -> str:
    return (f"cannot download {url}: {reason} (are you offline? the files can also be copied by "
            f"hand into {folder})")
