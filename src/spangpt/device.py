"""Where and how a run computes: the device, bf16 or fp32, the attention kernel and the dropout masks.
Each choice is "auto" by default and made here from what the hardware does fastest (measured: docs/speed.md).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch


def pick_device(name: str = "auto") -> torch.device:
    """auto: cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_bf16(precision: str, device: torch.device) -> bool:
    """auto: bf16 autocast only on CPUs with native bf16; fp32 (TF32 matmuls) on CUDA; fp32 elsewhere."""
    if precision in ("fp32", "bf16"):
        return precision == "bf16"
    if device.type == "cuda":
        # Measured on an H200 with the paper model: fp32 (TF32 matmuls) ran 486k real tok/s against
        # 322-385k for bf16 (the model is too small to be matmul-bound), and bf16 with SDPA let the
        # loss drift up (2.63 -> 2.81 over steps 300-1200) while fp32 kept falling. So fp32 by default.
        return False
    if device.type == "cpu":  # native bf16 (AVX512-BF16 / AMX) makes autocast fast; emulated bf16 is slow
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return False


def wants_fast_dropout(cfg) -> bool:
    """A TrainConfig's fast_dropout: its own value, or by device when None."""
    return cfg.fast_dropout if cfg.fast_dropout is not None else default_fast_dropout(pick_device(cfg.device))


def default_fast_dropout(device: torch.device) -> bool:
    """Cheap keep-masks (model.FastDropout) on CPU; on CUDA torch.nn.Dropout is one fused kernel, measured faster."""
    return device.type == "cpu"


def pick_attention(name: str, device: torch.device) -> str:
    """auto: SDPA on CUDA (flash / memory-efficient kernels), explicit math elsewhere (measured faster on CPU)."""
    return name if name != "auto" else ("sdpa" if device.type == "cuda" else "math")


def autocast_context(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
