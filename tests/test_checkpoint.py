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
    assert set(m2.state_dict()) == set(m.state_dict())


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
