"""Where and how a run computes: the device, bf16 or fp32, the attention kernel, the dropout masks and, on
CUDA, the fast path (torch.compile with CUDA graphs, static batch shapes, batch workers).
Each choice is "auto" by default and made here from what the hardware does fastest (measured: docs/speed.md).
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import torch

from spangpt.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """auto: cuda, then mps, then cpu. A device asked for by name that this torch cannot use is a one-line error."""
    if name != "auto":
        device = _parsed(name)
        if device is None:
            raise UserError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:1, mps)")
        return _available(device, name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def is_device_name(name: str) -> bool:
    """auto, or a name torch reads as a device (whether this machine has it is pick_device's question)."""
    return name == "auto" or _parsed(name) is not None


def _parsed(name: str) -> torch.device | None:
    """The device, if it is one spangpt runs on (torch also reads meta, xpu, ... as devices)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return None
    if device.type not in ("cpu", "cuda", "mps") or device.index is not None and device.index < 0:
        return None
    return device


def _available(device: torch.device, name: str) -> torch.device:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: there {'is' if count == 1 else 'are'} {count} CUDA "
                            f"device{'' if count == 1 else 's'} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {name}: this torch ({torch.__version__}) has no MPS device (Apple GPUs)")
    return device


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


# The fast path on CUDA: a step of this 3.3M-parameter model is bound by kernel launches and host work, not
# arithmetic (~12 ms eager on an H200 for ~1 ms of math), so replay each step as one CUDA graph.
# Rows padded to a multiple of 32: the recipes' packed batches (21-30 rows for `best`'s 64 examples, 47-59 for
# `paper`'s 128) then take one shape, so one compilation and one graph. At a multiple of 8 they took two or three,
# and the second shape recompiles the model with dynamic shapes (64 s more on a 2-core AVX2 CPU); the padded rows cost
# arithmetic, which a launch-bound step has to spare.
CUDA_ROW_MULTIPLE = 32
# Compiling takes about a minute (50 s for a small model's forward and backward on a 2-core AVX2 CPU) and could save
# ~10 ms a step: worth it for the recipes' pretrainings (14,950 and 31,200 steps), not for their fine-tunings
# (a few hundred steps, seconds eager).
COMPILE_MIN_STEPS = 5000


def fast_path(cfg, device: torch.device, world: int = 1, steps: int | None = None):
    """A TrainConfig with its device-chosen values (None, or "auto" for compile_mode) made concrete.

    On one CUDA device: torch.compile with mode "reduce-overhead" (each batch shape captured once as a CUDA
    graph and replayed) for a run of at least COMPILE_MIN_STEPS steps (steps: the run's; None: long), its rows
    padded to a multiple of CUDA_ROW_MULTIPLE so that there is one shape, and batch workers. Elsewhere none
    of it: on a CPU the step is bound by arithmetic, compiling costs minutes of start-up, and a worker would
    take a core from the model. Under torchrun (world > 1) compile stays off unless asked for, and then in
    mode "default": DDP's bucketed all-reduce and a captured graph have not been measured together.
    """
    cuda = device.type == "cuda"
    long_run = steps is None or steps >= COMPILE_MIN_STEPS
    compile_ = cfg.compile if cfg.compile is not None else cuda and world == 1 and long_run
    mode = cfg.compile_mode if cfg.compile_mode != "auto" else "reduce-overhead" if cuda and world == 1 else "default"
    # padding only serves a compiled step (fewer shapes: fewer compilations, fewer graphs)
    rows = cfg.row_multiple if cfg.row_multiple is not None else CUDA_ROW_MULTIPLE if cuda and compile_ else 0
    workers = cfg.workers if cfg.workers is not None else default_workers(device)
    return dataclasses.replace(cfg, compile=compile_, compile_mode=mode, row_multiple=rows, workers=workers)


def default_workers(device: torch.device) -> int:
    """Batch-preparation processes: none on a CPU (its cores are busy with the model); on CUDA one per four
    of this process's threads, 1 to 4. A batch takes ~1-2 ms of Python on one core
    (docs/speed.md#batches-for-a-gpu), as long as a whole graph-replayed step, and the workers lay out
    alternate runs of batches. The thread count is this process's share of the cores: `reproduce --jobs N`
    divides the cores between its runs, and torchrun gives each of several ranks one thread."""
    if device.type != "cuda":
        return 0
    return max(1, min(4, torch.get_num_threads() // 4))
