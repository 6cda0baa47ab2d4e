import os
import stat

from pathlib import Path

import pytest
import torch

from spangpt import checkpoint
from spangpt.errors import UserError
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import Vocab

VOCAB = Vocab.from_text("abcdefgh ?.")
CFG = dict(vocab_size=len(VOCAB), block_size=32, n_layer=1, n_head=2, n_embd=16)


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
def test_round_trip(tmp_path, variant):
    m = GPT(ModelConfig(**CFG, variant=variant)).eval()
    p = tmp_path / "m.safetensors"
    checkpoint.save(p, m, VOCAB, {"note": "hi"})
    m2, v2, info = checkpoint.load(p, variant=variant, vocab=VOCAB)
    assert v2 == VOCAB and info == {"note": "hi"} and m2.cfg == m.cfg
    x = torch.randint(0, len(VOCAB), (2, 10))
    torch.testing.assert_close(m2(x)[0], m(x)[0])
    assert not p.read_bytes().startswith(b"PK")  # not a torch zip/pickle


def test_compiled_or_wrapped_model_saves_plain_weights(tmp_path):
    m = GPT(ModelConfig(**CFG))

    class Wrapper(torch.nn.Module):  # what DDP / torch.compile look like from outside
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    checkpoint.save(tmp_path / "w.safetensors", Wrapper(m), VOCAB)
    m2, _, _ = checkpoint.load(tmp_path / "w.safetensors")
    saved, orig = m2.state_dict(), m.state_dict()
    assert set(saved) == set(orig) and all(torch.equal(saved[k], orig[k]) for k in orig)


def test_wrong_variant_or_vocab_is_a_clear_error(tmp_path):
    p = tmp_path / "m.safetensors"
    checkpoint.save(p, GPT(ModelConfig(**CFG, variant="vanilla")), VOCAB)
    with pytest.raises(UserError, match="is a 'vanilla' model, but variant 'rope'"):
        checkpoint.load(p, variant="rope")
    with pytest.raises(UserError, match="vocabulary"):
        checkpoint.load(p, vocab=Vocab.from_text("xyz"))


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("hello")
    with pytest.raises(UserError, match="not a spangpt checkpoint"):
        checkpoint.load(bad)
    with pytest.raises(UserError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "m.safetensors"
    checkpoint.save(p, GPT(ModelConfig(**CFG)), VOCAB)
    before = p.read_bytes()

    def boom(tmp):
        open(tmp, "wb").write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write(p, boom)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_a_write_reaches_the_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """A power cut must not leave a new checkpoint's name on unwritten bytes: the file is fsync'ed before it is
    renamed into place, and its folder after (stages remove the training state once the checkpoint is written)."""
    import os
    from spangpt import fileio

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: events.append(("replace", None)) or real_replace(a, b))
    fileio.atomic_write(tmp_path / "m.txt", lambda tmp: Path(tmp).write_text("weights"))
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]  # the file, the rename, its folder
    assert (tmp_path / "m.txt").read_text() == "weights"


def _edit_header(path, edit):
    """Rewrite a safetensors file's JSON header with edit(header) (the weights' bytes stay as they are)."""
    import json
    import struct

    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    edit(header)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + blob[8 + n :])


def _set_model(**fields):
    import json

    def edit(header):
        meta = header["__metadata__"]
        meta["model"] = json.dumps({**json.loads(meta["model"]), **fields})
    return edit


def _set_meta(key, value):
    return lambda header: header["__metadata__"].__setitem__(key, value)


# Each of these once escaped checkpoint.load as a traceback (found by tests/test_fuzz.py), or would have
# tried to build a model of whatever size the damaged header asked for.
@pytest.mark.parametrize("edit, message", [
    (_set_meta("model", "{not json"), "damaged checkpoint metadata"),
    (_set_meta("model", "7"), "damaged checkpoint metadata"),
    (_set_meta("info", "null"), "run info is not a JSON object"),
    (_set_meta("vocab", '["\u25a1", "\u2047", null]'), "vocabulary entries must be single characters"),
    (_set_meta("vocab", '["a", "b"]'), "vocabulary must start with PAD"),
    (_set_model(n_head=0), "n_head must be a positive integer, got 0"),
    (_set_model(n_embd="16"), "n_embd must be a positive integer"),
    (_set_model(dropout=-1), r"dropout must be in \[0, 1\)"),
    (_set_model(vocab_size=12), "12 characters for vocab_size 12|characters for vocab_size 12"),
    (_set_model(n_embd=32, n_head=2), "weights do not match the config"),
    (_set_model(n_layer=10**12), "1 blocks of weights, n_layer 1000000000000"),
    (_set_model(variant="rope", block_size=10**9), "block_size 1000000000 is over 65536"),
    (lambda h: h.__setitem__("head.renamed", h.pop("head.weight")), r"missing \['head.weight'\], unexpected \['head.renamed'\]"),
    (lambda h: h.pop("head.weight"), r"not a spangpt checkpoint \(unreadable as \.safetensors: .*\)"),  # a gap in the data
])
def test_damaged_header_is_a_one_line_error_naming_the_file(tmp_path, edit, message):
    p = tmp_path / "m.safetensors"
    checkpoint.save(p, GPT(ModelConfig(**CFG)), VOCAB)
    _edit_header(p, edit)
    with pytest.raises(UserError, match=message) as e:
        checkpoint.load(p)
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


def test_non_finite_weights_are_refused(tmp_path):
    m = GPT(ModelConfig(**CFG))
    with torch.no_grad():
        m.head.weight[3, 1] = float("inf")
    p = tmp_path / "m.safetensors"
    checkpoint.save(p, m, VOCAB)
    with pytest.raises(UserError, match=r"non-finite weights in \['head.weight'\]"):
        checkpoint.load(p)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, umask):
    """mkstemp makes its temp file 0600 and the rename keeps it: checkpoints, predictions and states must
    follow the umask instead, as open() would (others can read a run's files on a shared machine)."""
    from spangpt import state

    old = os.umask(umask)
    try:
        plain = tmp_path / "plain"
        plain.write_text("x")
        ckpt = tmp_path / "m.safetensors"
        checkpoint.save(ckpt, GPT(ModelConfig(**CFG)), VOCAB)
        st = tmp_path / "m.state.pt"
        state.save(st, {"step": 1})
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == expected  # the independent reference
    assert stat.S_IMODE(ckpt.stat().st_mode) == expected
    assert stat.S_IMODE(st.stat().st_mode) == expected
