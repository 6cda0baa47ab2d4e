"""Checkpoints: one .safetensors file = weights + JSON metadata (model config, vocabulary, run info).

No pickle anywhere, so a checkpoint from a stranger cannot run code. Writes are atomic (temp file in the
same folder, then os.replace) so a crash never leaves a half-written checkpoint over a good one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from spangpt.device import pick_device
from spangpt.errors import UserError
from spangpt.fileio import atomic_write
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import Vocab

FORMAT = "spangpt-checkpoint-v1"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain GPT under DDP and/or torch.compile wrappers (saving a wrapper breaks loading elsewhere)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def save(path, model: torch.nn.Module, vocab: Vocab, info: dict | None = None) -> None:
    model = unwrap(model)
    meta = {
        "format": FORMAT,
        "model": json.dumps(model.cfg.to_dict()),
        "vocab": json.dumps(vocab.to_list(), ensure_ascii=False),
        "info": json.dumps(info or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_meta(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a spangpt checkpoint (unreadable as .safetensors: {_one_line(e)})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a spangpt checkpoint (expected a .safetensors file written by spangpt)")
    return meta


def read_info(path) -> dict:
    """The run info saved with a checkpoint (its config and result), without loading the weights."""
    return _parse(path, read_meta(path))[2]


def _one_line(e: Exception, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(path, meta: dict) -> tuple[ModelConfig, Vocab, dict]:
    """The metadata's model config, vocabulary and run info, or one UserError saying which is damaged."""
    try:
        cfg = ModelConfig(**json.loads(meta["model"]))
        vocab = Vocab.from_list(json.loads(meta["vocab"]))
        info = json.loads(meta["info"])
    except KeyError as e:
        raise UserError(f"{path}: damaged checkpoint (no '{e.args[0]}' in its metadata)") from None
    except (ValueError, TypeError, UserError) as e:  # bad JSON, wrong types, invalid values
        raise UserError(f"{path}: damaged checkpoint metadata ({_one_line(e)})") from None
    if len(vocab) != cfg.vocab_size:
        raise UserError(f"{path}: damaged checkpoint metadata ({len(vocab)} characters for vocab_size {cfg.vocab_size})")
    if not isinstance(info, dict):
        raise UserError(f"{path}: damaged checkpoint metadata (run info is not a JSON object)")
    return cfg, vocab, info


def _check_tensors(path, cfg: ModelConfig) -> None:
    """The file's tensor names, shapes and dtypes against what cfg builds, read from the header only, so a
    damaged config never makes us allocate a model of its size."""
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: damaged checkpoint ({_one_line(e)})") from None
    n_blocks = len({k.split(".")[1] for k in found if k.startswith("blocks.")})
    if n_blocks != cfg.n_layer:  # checked first: building a huge n_layer even on "meta" would take ages
        raise UserError(f"{path}: weights do not match the config ({n_blocks} blocks of weights, n_layer {cfg.n_layer})")
    with torch.device("meta"):  # shapes only, no memory
        expected = {k: (tuple(v.shape), "F32") for k, v in GPT(cfg).state_dict().items()}
    if found != expected:
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = [f"{k}: {found[k]} not {expected[k]}" for k in sorted(set(found) & set(expected)) if found[k] != expected[k]]
        raise UserError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                        f"wrong shape/dtype {wrong[:2]})")


def load(path, device="cpu", variant: str | None = None, vocab: Vocab | None = None):
    """-> (model, vocab, info). Checks the variant and vocabulary the caller expects, if given."""
    meta = read_meta(path)
    cfg, ck_vocab, info = _parse(path, meta)
    if variant is not None and cfg.variant != variant:
        raise UserError(f"{path}: checkpoint is a '{cfg.variant}' model, but variant '{variant}' was asked for")
    if vocab is not None and ck_vocab != vocab:
        raise UserError(
            f"{path}: checkpoint vocabulary ({len(ck_vocab)} characters) differs from this data's "
            f"({len(vocab)} characters); fine-tune with the corpus the model was pretrained on"
        )
    _check_tensors(path, cfg)
    try:
        state = load_file(str(path))
    except SafetensorError as e:
        raise UserError(f"{path}: damaged checkpoint ({_one_line(e)})") from None
    bad = [k for k, t in state.items() if not torch.isfinite(t).all()]
    if bad:  # training never saves these (train.py checks before every save): the bytes were damaged
        raise UserError(f"{path}: damaged checkpoint (non-finite weights in {bad[:3]})")
    model = GPT(cfg)
    model.load_state_dict(state)  # names and shapes were checked above
    return model.to(pick_device(device) if isinstance(device, str) else device).eval(), ck_vocab, info
