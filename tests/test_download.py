"""The downloader against a local HTTP server on 127.0.0.1 serving a copy of the real files."""

import functools
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from spangpt import download
from spangpt.errors import UserError

REAL = Path(__file__).resolve().parents[2] / "shared/data/cs224n"

needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real data folder {REAL} is absent (it lives beside the checkout)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base_url, served_dir, request_log): serves a writable copy, so tests may tamper with it."""
    served = tmp_path / "served"
    served.mkdir()
    for name in download.SHA256:
        shutil.copyfile(REAL / name, served / name)
    log = []

    class Handler(QuietHandler):
        def do_GET(self):
            log.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, log
    httpd.shutdown()
    httpd.server_close()


@needs_real
def test_checksums_match_shared_sums():
    sums = dict(reversed(line.split()) for line in (REAL / "SHA256SUMS").read_text().splitlines())
    assert sums == download.SHA256
    download.verify(REAL)


@needs_real
def test_download_then_skip(server, tmp_path):
    url, _, log = server
    out = tmp_path / "out"
    paths = download.download(out, base_url=url, timeout=5)
    assert [p.name for p in paths] == list(download.SHA256)
    for p in paths:
        assert p.read_bytes() == (REAL / p.name).read_bytes()
    assert sorted(os.listdir(out)) == sorted(download.SHA256)  # no temp files left
    download.verify(out)
    assert len(log) == 4

    download.download(out, base_url=url + "/", timeout=5)  # all present and correct: no request
    assert len(log) == 4


@needs_real
def test_tampered_file_rejected(server, tmp_path):
    url, served, _ = server
    with open(served / "birth_dev.tsv", "ab") as f:
        f.write(b"Where was Nobody born?\tNowhere\n")
    out = tmp_path / "out"
    with pytest.raises(UserError, match="checksum") as e:
        download.download(out, base_url=url, timeout=5)
    assert "birth_dev.tsv" in str(e.value) and download.SHA256["birth_dev.tsv"] in str(e.value)
    assert "\n" not in str(e.value)
    left = os.listdir(out)
    assert not any("birth_dev" in name for name in left), left  # neither the file nor a temp
    for name in left:  # what did arrive is kept, and correct
        assert (out / name).read_bytes() == (REAL / name).read_bytes()


@needs_real
def test_missing_on_server(server, tmp_path):
    url, served, _ = server
    (served / "wiki.txt").unlink()
    with pytest.raises(UserError, match=r"cannot download .*wiki\.txt: HTTP 404"):
        download.download(tmp_path / "out", base_url=url, timeout=5)
    assert "wiki.txt" not in os.listdir(tmp_path / "out")


def test_unreachable(tmp_path):
    with socket.socket() as s:  # grab a free port, then close it: connecting is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "out"
    with pytest.raises(UserError, match="cannot download") as e:
        download.download(out, base_url=url, timeout=5)
    msg = str(e.value)
    assert url in msg and "offline" in msg and str(out) in msg and "\n" not in msg
    assert os.listdir(out) == []


@needs_real
def test_existing_wrong_file_kept(server, tmp_path):
    url, _, log = server
    out = tmp_path / "out"
    out.mkdir()
    (out / "wiki.txt").write_text("my own notes\n")
    with pytest.raises(UserError, match="wiki.txt.*not overwriting"):
        download.download(out, base_url=url, timeout=5)
    assert (out / "wiki.txt").read_text() == "my own notes\n"
    assert log == []  # refused before any download
    with pytest.raises(UserError, match="wiki.txt has the wrong checksum"):
        download.verify(out)

    download.download(out, base_url=url, timeout=5, overwrite=True)
    download.verify(out)


@needs_real
def test_verify_missing(tmp_path):
    shutil.copyfile(REAL / "wiki.txt", tmp_path / "wiki.txt")
    with pytest.raises(UserError, match="birth_dev.tsv missing"):
        download.verify(tmp_path)
