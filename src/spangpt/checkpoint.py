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
    except (SafetensorError, OSError, ValueError):
        meta = {}
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a spangpt checkpoint (expected a .safetensors file written by spangpt)")
    return meta


def read_info(path) -> dict:
    """The run info saved with a checkpoint (its config and result), without loading the weights."""
    return json.loads(read_meta(path)["info"])


def load(path, device="cpu", variant: str | None = None, vocab: Vocab | None = None):
    """-> (model, vocab, info). Checks the variant and vocabulary the caller expects, if given."""
    meta = read_meta(path)
    cfg = ModelConfig(**json.loads(meta["model"]))
    ck_vocab = Vocab.from_list(json.loads(meta["vocab"]))
    if variant is not None and cfg.variant != variant:
        raise UserError(f"{path}: checkpoint is a '{cfg.variant}' model, but variant '{variant}' was asked for")
    if vocab is not None and ck_vocab != vocab:
        raise UserError(
            f"{path}: checkpoint vocabulary ({len(ck_vocab)} characters) differs from this data's "
            f"({len(vocab)} characters); fine-tune with the corpus the model was pretrained on"
        )
    try:
        state = load_file(str(path))
    except SafetensorError as e:
        raise UserError(f"{path}: damaged checkpoint ({e})") from None
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), ck_vocab, json.loads(meta["info"])
