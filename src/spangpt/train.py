"""The training loop, top to bottom: AdamW, the original token-based LR schedule, bf16 autocast, packing.

The trainer knows nothing about birthplaces or span corruption: it gets a function that draws one epoch
of (x, y) examples and turns them into batches.
"""
from __future__ import annotations

import functools
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from spangpt import distributed, errors, loader, state
from spangpt.data import batch_examples, length_sums, make_batch, pad_rows
from spangpt.errors import BadValue, UserError
from spangpt.fileio import atomic_write
from spangpt.device import autocast_context, fast_path, is_device_name, pick_attention, pick_device, use_bf16
from spangpt.model import GPT
from spangpt.trainlog import TrainLog
from spangpt.vocab import PAD_ID

EXIT_BUDGET = 75  # --max-minutes used up (sysexits' EX_TEMPFAIL: "try again later"; SIGINT/SIGTERM give 130/143)


DECAY_ON = ("non-bias", "matrices", "linear")


def option(default, help: str = "", *, choices: tuple = (), run_only: bool = False, metavar: str | None = None):
    """A field and its command-line option in one declaration (cli.add_options builds the option).
    choices: the values it takes, the default first (checked in __post_init__, offered by the CLI);
    run_only: how a run is run, not what it trains, so a run may resume with another value (state.fingerprint)."""
    if choices and default not in choices:
        choices = (default, *choices)
    return field(default=default, metadata={"help": help, "choices": tuple(choices), "run_only": run_only,
                                            "metavar": metavar})


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    epochs: int = option(10, "passes over the data")
    batch_size: int = option(256, "examples per optimizer step, packed or not (the original's unit)")
    lr: float = option(6e-4, "peak learning rate")
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW betas", metavar="B")
    weight_decay: float = option(0.1, "AdamW weight decay")
    # "non-bias" is the original CS224N trainer (every parameter but biases: embeddings, position table and
    # LayerNorm gains too); "matrices" is nanoGPT's; "linear" is minGPT's. At the paper's lr 6e-3 "linear"
    # stalls after ~17 epochs (docs/paper.md#the-loss-curve).
    decay_on: str = option("non-bias", "tensors weight decay applies to: non-bias (the original: all but "
                           "biases), matrices (nanoGPT: 2+ dims), linear (minGPT: Linear weights only)",
                           choices=DECAY_ON)
    grad_clip: float = option(1.0, "gradient norm clip")
    # LR schedule, counted in tokens as the original: every example counts block_size-1 tokens, PAD
    # included (the original adds (y >= 0).sum() of its padded rows), whatever layout we train with.
    schedule: str = option("paper", "learning-rate schedule (lr_multiplier)",
                           choices=("paper", "cosine", "linear", "constant"))
    warmup_tokens: int = option(512 * 20, "linear warmup length, in tokens")
    final_tokens: int = option(0, "paper schedule: tokens to the end of the cosine (a recipe sets decay_epochs)")
    max_steps: int = option(0, "stop after this many optimizer steps (the learning-rate schedule stays the "
                            "full run's; 0 = no limit)")
    seed: int = option(0)
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps", run_only=True)
    precision: str = option("auto", "auto: bf16 only on CPUs with native bf16 (device.use_bf16)",
                            choices=("fp32", "bf16"))
    pack: bool = option(True, "several examples per row (same loss, ~2.5x fewer positions on span corruption)")
    shuffle: bool = option(True, "a new order every epoch; false: the file's order, as the original's DataLoader")
    attention: str = option("auto", "auto: sdpa on CUDA, math on CPU (measured faster there)",
                            choices=("math", "sdpa"))
    # on CUDA torch.nn.Dropout is one fused kernel and measured faster than model.FastDropout's keep-masks
    fast_dropout: bool | None = option(None, "cheap dropout masks, model.FastDropout (default: on CPU, off on CUDA)")
    # On one CUDA device the default is the fast path (device.fast_path): the model compiled, each batch shape
    # replayed as one CUDA graph ("reduce-overhead"), rows padded to a multiple of 32: one shape.
    compile: bool | None = option(None, "torch.compile the model (default: on one CUDA device for a run of 5,000 "
                                  "steps or more; off elsewhere)", run_only=True)
    compile_mode: str = option("auto", "torch.compile mode (auto: reduce-overhead on CUDA, each batch shape one "
                               "CUDA graph; default elsewhere)", choices=("default", "reduce-overhead",
                                                                          "max-autotune"), run_only=True)
    row_multiple: int | None = option(None, "pad each batch with empty rows to a multiple of N rows: "
                                      "static shapes, the same loss and gradients (default: 32 when compiled on "
                                      "CUDA, else 0 = off)", run_only=True, metavar="N")
    log_interval: int = option(20, "steps between loss syncs and metrics lines (and loss health checks)",
                               run_only=True)
    save_every: int = option(0, "also save the resumable state every N steps (default 0: only at the end, on "
                             "SIGINT/SIGTERM and when --max-minutes is up)", run_only=True, metavar="N")
    max_minutes: float = option(0.0, "stop after M minutes of training, state saved, exit status 75 "
                                "(default 0: no limit)", run_only=True, metavar="M")
    workers: int | None = option(None, "batch-preparation processes: 0 = in the training process (default: one "
                                 "per 4 of the process's threads on CUDA, 1 to 4; 0 on CPU); N > 1 lay out "
                                 "every N-th run of batches each, the same batches", run_only=True)
    peak_tflops: float = option(0.0, "the device's peak TFLOP/s at this precision, to log MFU", run_only=True)
    progress: bool = option(True, "a progress bar on a terminal", run_only=True)

    def __post_init__(self):
        if isinstance(self.betas, list):  # TOML and JSON have arrays, not tuples
            self.betas = tuple(self.betas)
        for key in ("epochs", "max_steps", "warmup_tokens", "final_tokens", "seed", "save_every"):
            if not (_whole(getattr(self, key)) and getattr(self, key) >= 0):
                raise BadValue(key, "a whole number >= 0" + (" (0 = no limit)" if key == "max_steps" else
                                                             " (0 = off)" if key == "save_every" else ""),
                               getattr(self, key))
        for key in ("batch_size", "log_interval"):
            if not (_whole(getattr(self, key)) and getattr(self, key) >= 1):
                raise BadValue(key, "a whole number >= 1", getattr(self, key))
        for key, low in (("lr", 0), ("grad_clip", 0), ("weight_decay", None), ("peak_tflops", None),
                         ("max_minutes", None)):
            v = getattr(self, key)
            if not (_number(v) and (v > 0 if low == 0 else v >= 0)):
                raise BadValue(key, "a number > 0" if low == 0 else "a number >= 0", v)
        b = self.betas
        if not (isinstance(b, tuple) and len(b) == 2 and all(_number(x) and 0 <= x < 1 for x in b)):
            raise BadValue("betas", "two numbers in [0, 1), e.g. [0.9, 0.95]", b)
        for key, options in CHOICES.items():
            if getattr(self, key) not in options:
                raise BadValue(key, f"one of {', '.join(options)}", getattr(self, key))
        for key in ("pack", "shuffle", "compile", "progress", "fast_dropout"):  # None: the device's choice
            if not (isinstance(getattr(self, key), bool) or getattr(self, key) is None and key in OPTIONAL):
                raise BadValue(key, "true or false", getattr(self, key))
        if self.workers is not None and not (_whole(self.workers) and self.workers >= 0):
            raise BadValue("workers", "a whole number >= 0", self.workers)
        if not isinstance(self.device, str) or not is_device_name(self.device):
            raise BadValue("device", "a device name (auto, cpu, cuda, cuda:1, mps)", self.device)
        if self.seed >= 2**63:  # torch.manual_seed takes 64 bits, and the seed is offset per rank and step
            raise BadValue("seed", "a whole number below 2^63", self.seed)
        if self.row_multiple is not None and not (_whole(self.row_multiple) and 0 <= self.row_multiple <= 1024):
            raise BadValue("row_multiple", "a whole number from 0 to 1024", self.row_multiple)

    def to_dict(self) -> dict:
        return asdict(self)

    def trained(self) -> dict:
        """The values that say what is trained: what a resumed run keeps. Every field but the run-only ones and
        max_steps, which says where a run stops, not what a step trains (the schedule is the whole run's), so
        that a run kept with --keep-state can be continued to more steps."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY and k != "max_steps"}


OPTIONAL = tuple(f.name for f in fields(TrainConfig) if f.default is None)  # None: the device decides (device.py)
CHOICES = {f.name: f.metadata["choices"] for f in fields(TrainConfig) if f.metadata["choices"]}
RUN_ONLY = tuple(f.name for f in fields(TrainConfig) if f.metadata["run_only"])


def lr_multiplier(tokens: int, cfg: TrainConfig, total_tokens: int) -> float:
    """Linear warmup, then cosine to 0.1x (or straight to zero).

    "paper" is the original exactly: progress is never clamped, so once tokens pass final_tokens the
    cosine climbs back up (650 pretraining epochs against final_tokens of 200 epochs: ~1.6 cycles).
    "cosine" decays once over this run's own total and then stays at 0.1x.
    The total is the run's epochs, not --max-steps: a capped run stops partway along the full schedule.
    "linear" decays linearly to zero over this run's total ("straight to zero", Bergsma et al. 2025: it beat
    cosine to 0.1x, more so the more tokens per parameter a run sees; ours see hundreds of epochs).
    """
    if cfg.schedule == "constant":
        return 1.0
    if tokens < cfg.warmup_tokens:
        return tokens / max(1, cfg.warmup_tokens)
    # "paper" without final_tokens (recipes must set it; a bare TrainConfig() has none) decays over the run
    final = (cfg.final_tokens or total_tokens) if cfg.schedule == "paper" else total_tokens
    progress = (tokens - cfg.warmup_tokens) / max(1, final - cfg.warmup_tokens)
    if cfg.schedule == "linear":
        return max(0.0, 1.0 - progress)
    if cfg.schedule == "cosine":
        progress = min(progress, 1.0)
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_step(model: GPT, optimizer, batch, ctx, grad_clip: float, forward=None, scale=None) -> torch.Tensor:
    """One whole optimizer step on a batch already on the device; returns the loss, not synced.
    forward: what to call for the loss (a torch.compile'd and/or DDP model), default the model itself.
    scale: None = minimise the mean token loss; a number = minimise scale * the summed token loss
    (a data-parallel shard; the summed loss is returned)."""
    forward = model if forward is None else forward  # not `forward or model`: a compiled module has no truth value
    with ctx:
        if scale is None:
            _, loss = forward(batch.x, batch.y, pos=batch.pos, doc=batch.doc)
        else:
            _, loss = forward(batch.x, batch.y, pos=batch.pos, doc=batch.doc, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    (loss if scale is None else loss * scale).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def decay_groups(model: torch.nn.Module, decay_on: str) -> tuple[list[str], list[str]]:
    """-> (names of the parameters weight decay applies to, names of the others)."""
    if decay_on not in DECAY_ON:
        raise ValueError(f"decay_on must be one of {DECAY_ON}, got {decay_on!r}")
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    rule = {
        "non-bias": lambda n, p: not n.endswith("bias"),  # the original: its LayerNorms are not named "LayerNorm"
        "matrices": lambda n, p: p.dim() >= 2,
        "linear": lambda n, p: id(p) in linear,
    }[decay_on]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, p in named if rule(n, p)], [n for n, p in named if not rule(n, p)]


def param_rms(model: torch.nn.Module) -> dict[str, float]:
    """Root-mean-square of each kind of tensor: every embedding table on its own, all LayerNorm gains,
    all Linear weights. Logged with the loss: without decay, tables that Adam moves at ~lr per step
    whatever their gradient grow without bound, and this is where that shows."""
    groups: dict[str, list[torch.Tensor]] = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Embedding):
            groups.setdefault(name, []).append(m.weight)
        elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
            groups.setdefault("ln_gain", []).append(m.weight)
        elif isinstance(m, torch.nn.Linear):
            groups.setdefault("linear", []).append(m.weight)
    with torch.no_grad():
        return {k: round(float(torch.cat([t.detach().flatten().float() for t in ts]).pow(2).mean().sqrt()), 5)
                for k, ts in groups.items()}


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay, keep = (set(names) for names in decay_groups(model, cfg.decay_on))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if n in keep], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"  # fused on CPU measured no faster for this model size
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


@dataclass
class TrainResult:
    steps: int = 0
    tokens: int = 0  # schedule tokens (padded-equivalent)
    real_tokens: int = 0  # non-PAD targets actually trained on
    final_loss: float = float("nan")
    seconds: float = 0.0
    history: list = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # what makes it this run (state.fingerprint)
    path: dict = field(default_factory=dict)  # how it ran: the device's choices made (device.fast_path)


@dataclass
class BatchStats:
    """A global batch's numbers. They drive the schedule, the counters and the loss normalisation, so they
    are the same in one process and under torchrun, where every rank computes them for the whole batch
    (no communication) while it trains on its shard."""
    examples: int
    real: int  # non-PAD targets
    sum_len: int  # Σ example lengths and Σ squares: what training_flops needs
    sum_len_sq: int
    weight: float = 1.0  # this rank's share of the real targets (distributed.shard)

    @classmethod
    def of_batch(cls, batch) -> "BatchStats":
        return cls(batch.n_examples, batch.n_targets, batch.sum_len, batch.sum_len_sq)

    @classmethod
    def of_examples(cls, chosen, weight: float) -> "BatchStats":
        sums = length_sums(chosen)
        return cls(len(chosen), sum(len(y) - y.count(PAD_ID) for _, y in chosen), sums["sum_len"],
                   sums["sum_len_sq"], weight)


class MetricsWindow:
    """The steps since the last metrics line. The loss is summed on the device and read only at log steps
    (reading it syncs); under torchrun each rank holds its shards' part of the sum."""

    def __init__(self, device: torch.device, world: int):
        self.loss_sum = torch.zeros((), device=device)
        self.world = world
        self.steps, self.real, self.flops, self.start = 0, 0, 0.0, time.perf_counter()
        self._before = 0.0  # seconds a restored window had run before its stop

    def add(self, loss: torch.Tensor, real: int, flops: float) -> None:
        self.loss_sum += loss.detach()
        self.steps, self.real, self.flops = self.steps + 1, self.real + real, self.flops + flops

    def total_loss(self) -> torch.Tensor:
        """The summed loss over all ranks (a collective under torchrun: every rank must call it)."""
        return distributed.all_reduce(self.loss_sum.detach().clone()) if self.world > 1 else self.loss_sum

    def mean_loss(self) -> float:
        return self.total_loss().item() / self.steps if self.steps else 0.0

    def to_dict(self) -> dict:
        return {"loss_sum": self.total_loss().detach().cpu().clone(), "steps": self.steps, "real": self.real,
                "flops": self.flops, "seconds": time.perf_counter() - self.start}

    def restore(self, saved: dict, main: bool) -> None:
        if main:  # the loss sum is saved summed over ranks: add it in once
            self.loss_sum.copy_(saved["loss_sum"])
        self.steps, self.real, self.flops = saved["steps"], saved["real"], saved["flops"]
        self._before = saved["seconds"]

    def restart(self, now: float) -> None:
        """The clock starts now, counting the time a resumed window took before its stop, too."""
        self.start = now - self._before
        self._before = 0.0

    def reset(self, now: float) -> None:
        self.loss_sum.zero_()
        self.steps, self.real, self.flops, self.start = 0, 0, 0.0, now


def _epochs(draw_examples, first, rng, epoch0_rng, cfg: TrainConfig, block: int, start_epoch: int, skip: int,
            rank: int, world: int, share: int = 0, shares: int = 1, group: int = 1):
    """-> (epoch, batch index, data RNG state at the epoch's start, batch, BatchStats), from (start_epoch,
    skip) on. Epoch 0's examples are `first`, drawn before; each later epoch draws afresh from rng.
    share/shares/group: in one of `shares` DataLoader workers (spangpt.loader), lay out only the share-th of
    every `shares` runs of `group` batches. Every worker draws and shuffles every epoch (the one rng stream:
    the same data however many workers)."""
    n = 0  # batches so far, across epochs: whose turn it is
    for epoch in range(start_epoch, cfg.epochs):
        epoch_rng = epoch0_rng if epoch == 0 else rng.getstate()
        examples = first if epoch == 0 else draw_examples(rng)
        b0 = skip if epoch == start_epoch else 0
        for i, chosen in enumerate(batch_examples(examples, cfg.batch_size, rng, skip=b0, shuffle=cfg.shuffle), b0):
            n += 1
            if (n - 1) // group % shares != share:
                continue
            if world == 1:
                batch = make_batch(chosen, block, cfg.pack)
                stats = BatchStats.of_batch(batch)
            else:
                mine, weight = distributed.shard(chosen, rank, world)
                batch, stats = make_batch(mine, block, cfg.pack), BatchStats.of_examples(chosen, weight)
            yield epoch, i, epoch_rng, pad_rows(batch, cfg.row_multiple), stats


def _setup(model: GPT, cfg: TrainConfig, world: int, steps: int):
    """-> (device, cfg with the device's choices made (device.fast_path), autocast context, optimizer, what to
    call for the loss): the model moved and set up."""
    device = distributed.device_for(pick_device(cfg.device))
    cfg = fast_path(cfg, device, world, steps)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 weights, TF32 tensor-core matmuls
        torch.backends.cudnn.allow_tf32 = True
    model.to(device).train()
    model.set_attention(pick_attention(cfg.attention, device))
    ctx = autocast_context(device, use_bf16(cfg.precision, device))
    optimizer = make_optimizer(model, cfg, device)
    return device, cfg, ctx, optimizer, torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model


class _Steps:
    """One optimizer step per call (_step) through what _setup chose to call.

    A compiled model may replay CUDA graphs whose outputs the next replay overwrites: marking each step's
    start tells torch the last step's outputs are done with (the loss was added to the metrics window at
    once). A compile that "auto" chose and that fails (torch._dynamo's errors: no working compiler, an op it
    cannot capture) falls back to the eager model, once, with a warning: the failed call stopped before
    optimizer.step (forward, then backward, then the step), so no weight moved and the retry is the same
    step. Asked for by name (--compile true), the failure is the run's error; so is any other error."""

    def __init__(self, model, optimizer, ctx, cfg: TrainConfig, step_fn, world: int, auto: bool, desc: str):
        self.model, self.optimizer, self.ctx, self.grad_clip = model, optimizer, ctx, cfg.grad_clip
        self.step_fn, self.world, self.desc = step_fn, world, desc
        self.compiled = cfg.compile
        self.fallback = cfg.compile and auto
        self.fell_back = False  # what the run's result reports

    def __call__(self, batch, stats: BatchStats) -> torch.Tensor:
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self._step(batch, stats)
        except torch._dynamo.exc.TorchDynamoException as err:
            if not self.fallback:
                raise
            self.fallback, self.compiled, self.fell_back = False, False, True
            torch._dynamo.reset()  # frees the compiled code and its graphs' memory
            self.step_fn = distributed.wrap(self.model, batch.x.device)
            if distributed.is_main():
                why = (str(err).strip().splitlines() or [""])[0][:200]
                print(f"spangpt: warning: {self.desc}: torch.compile failed ({type(err).__name__}: {why}); "
                      "training on without it (--compile false skips it, --compile true makes it an error)",
                      file=sys.stderr, flush=True)
            return self._step(batch, stats)

    def _step(self, batch, stats: BatchStats) -> torch.Tensor:
        return _step(self.model, self.optimizer, batch, stats, self.ctx, self.grad_clip, self.step_fn, self.world)


def _restore(saved: state.TrainState, st: state.TrainState, model, optimizer, rng, window: MetricsWindow,
             cfg: TrainConfig, device, rank: int, state_path, metrics_path) -> tuple:
    """Everything the next step depends on, as it was after step saved.step; the metrics file cut back to
    that step. -> (step, file) of the state resumed from."""
    state.check_same_run(saved.run, st.run, saved.path)
    model.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    for name in ("step", "tokens", "real_tokens", "final_loss", "seconds", "epoch", "batch"):
        setattr(st, name, getattr(saved, name))
    if saved.epoch > 0:  # replay that epoch's draw and shuffle; epoch 0's is `first`, drawn before
        rng.setstate(saved.rng)
    torch.set_rng_state(saved.torch_rng)  # dropout
    if device.type == "cuda" and saved.cuda_rng:
        torch.cuda.set_rng_state_all(saved.cuda_rng)
    if rank != 0:  # the state holds rank 0's dropout RNG: the others continue on fresh streams of their own
        torch.manual_seed(cfg.seed + rank + 1_000_003 * st.step)
    window.restore(saved.window, main=rank == 0)
    if metrics_path and rank == 0:
        keep_metrics_until(metrics_path, st.step)
    return saved.step, saved.path or state_path


def _check_health(window: MetricsWindow, model, step: int, loss_limit: float, last_saved) -> float:
    """The window's mean loss; raises if it, or any weight, is not finite, or the loss exploded (syncs).
    Under torchrun every rank calls it at the same step and gets the same answer."""
    loss = window.mean_loss()
    if window.steps and (not math.isfinite(loss) or loss > loss_limit):
        bad = f"mean loss {loss:.4g} over steps {step - window.steps + 1}-{step} (limit {loss_limit:.2f})"
    elif not bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()):
        bad = f"non-finite weights after step {step}"
    else:
        return loss
    kept = f"the last good state (step {last_saved[0]}) is kept in {last_saved[1]}" if last_saved \
        else "no state was saved"
    raise UserError(f"training diverged: {bad}; {kept}; try a lower --lr")


def train(model: GPT, draw_examples, cfg: TrainConfig, metrics_path=None, desc: str = "train",
          state_path=None, resume: state.TrainState | None = None, init: str | None = None,
          tensorboard=None, final_state: bool = True) -> TrainResult:
    """Train `model` in place. draw_examples(rng) -> list of (x, y) id lists for one epoch.

    state_path: where to keep the resumable state (spangpt.state): saved every cfg.save_every steps, at
    the end, and when SIGINT/SIGTERM or cfg.max_minutes stops the run early (then errors.Stopped is
    raised). resume: a state from state.load, to continue exactly where it was saved: on the CPU in fp32
    the weights and losses then equal an uninterrupted run's, bit for bit. init: state.weights_digest of
    the pretrained weights a fine-tuning run starts from, so that a state is resumed only from the same.
    tensorboard: a folder for TensorBoard event files (trainlog.TrainLog), or None. final_state: also save
    the state after the last step (False: a caller that keeps only the model saves the write).
    """
    # ---- setup. Under torchrun (spangpt.distributed) every rank runs this same loop on its shard of each batch.
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0  # only rank 0 writes: metrics, state, progress bar
    torch.manual_seed(cfg.seed + rank)  # dropout: each rank its own masks (weights were initialised before)
    rng = random.Random(cfg.seed)  # the data: the same draws and shuffles on every rank
    epoch0_rng = rng.getstate()  # the data RNG at the start of epoch 0 (what a state records per epoch)
    block = model.cfg.block_size
    tokens_per_example = block - 1
    first = draw_examples(rng)  # sizes the progress bar, the "cosine" schedule and whether to compile
    total_steps, total_tokens = _lengths(len(first), cfg, tokens_per_example)
    auto_compile = cfg.compile is None
    device, cfg, ctx, optimizer, step_fn = _setup(model, cfg, world, total_steps)
    # training_flops is linear in (Σn, Σn²): take its two coefficients once, not a parameter count per step
    flops_per_len, flops_per_sq = model.training_flops(1, 0), model.training_flops(0, 1)
    # A mean loss above twice that of a uniform guess (ln V, about where training starts) means the model
    # is confidently wrong: training diverged, and more steps would only save damaged weights.
    loss_limit = 2 * math.log(model.cfg.vocab_size)
    st = state.TrainState(run=state.fingerprint(model.cfg.to_dict(), cfg.trained(), first, init),
                          total_steps=total_steps)
    window = MetricsWindow(device, world)
    last_saved = None  # (step, file) of the newest state written
    if resume is not None:
        last_saved = _restore(resume, st, model, optimizer, rng, window, cfg, device, rank, state_path, metrics_path)
    res = TrainResult(fingerprint=st.run)
    seconds_before = st.seconds
    step_fn = distributed.wrap(step_fn, device)  # after loading: DDP starts from identical weights
    stepper = _Steps(model, optimizer, ctx, cfg, step_fn, world, auto_compile, desc)
    shown = TrainLog(desc, total_steps, st.step, show=cfg.progress and main, tensorboard=tensorboard if main else None,
                     metrics=metrics_path if main else None)
    make = functools.partial(_epochs, draw_examples, first, rng, epoch0_rng, cfg, block, start_epoch=st.epoch,
                             skip=st.batch, rank=rank, world=world)
    stream = loader.stream(make, cfg.workers, cfg.seed, device.type == "cuda")
    stops = state.StopRequests(enabled=state_path is not None)
    t0 = time.perf_counter()
    window.restart(t0)

    # ---- the loop: one optimizer step per global batch
    try:
        for epoch, i, epoch_rng, batch, stats in (stream if st.step < total_steps else ()):
            st.tokens += stats.examples * tokens_per_example
            lr = cfg.lr * lr_multiplier(st.tokens, cfg, total_tokens)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss = stepper(batch.to(device), stats)
            st.step += 1
            st.real_tokens += stats.real
            window.add(loss, stats.real, flops_per_len * stats.sum_len + flops_per_sq * stats.sum_len_sq)
            shown.step()
            last = st.step == total_steps
            if st.step % cfg.log_interval == 0 or last:
                st.final_loss = _check_health(window, model, st.step, loss_limit, last_saved)
                rec = _record(st, epoch, lr, window, seconds_before + time.perf_counter() - t0, model, cfg)
                res.history.append(rec)
                shown.log(rec)
                window.reset(time.perf_counter())
            # stop early only between steps, after saving; the last step just finishes the run
            stop = None if last else _early_stop(stops, cfg, time.perf_counter() - t0, st.step, state_path,
                                                 world, device)
            if state_path and ((last and final_state) or stop or (cfg.save_every and st.step % cfg.save_every == 0)):
                _check_health(window, model, st.step, loss_limit, last_saved)  # only a healthy run is saved
                st.epoch, st.batch, st.rng = epoch, i + 1, epoch_rng  # the next step's batch
                st.seconds = seconds_before + time.perf_counter() - t0
                last_saved = _save(state_path, st, window, model, optimizer, device, main)
            if stop:
                raise stop
            if last:
                break
    finally:
        stream.close()  # a run stopped early: shut the batch workers down now, not when the traceback is freed
        stops.restore()
        shown.close()
        if stepper.compiled:
            torch._dynamo.reset()  # the compiled code and its CUDA graphs' memory, not needed after training
    res.steps, res.tokens, res.real_tokens, res.final_loss = st.step, st.tokens, st.real_tokens, st.final_loss
    res.path = {"device": str(device), "precision": "bf16" if use_bf16(cfg.precision, device) else "fp32",
                "compile": stepper.compiled, "compile_mode": cfg.compile_mode,
                "row_multiple": cfg.row_multiple, "workers": cfg.workers, "compile_failed": stepper.fell_back}
    res.seconds = seconds_before + time.perf_counter() - t0
    model.eval()
    return res


def run_steps(examples: int, cfg: TrainConfig) -> int:
    """The run's optimizer steps for an epoch of `examples`: --max-steps caps the steps, never the schedule."""
    steps = math.ceil(examples / cfg.batch_size) * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def _lengths(examples: int, cfg: TrainConfig, tokens_per_example: int) -> tuple[int, int]:
    """-> (the run's optimizer steps, its schedule tokens)."""
    return run_steps(examples, cfg), cfg.epochs * examples * tokens_per_example


def _step(model, optimizer, batch, stats, ctx, grad_clip: float, step_fn, world: int) -> torch.Tensor:
    """One optimizer step -> this process's part of the batch's mean loss (not synced)."""
    if world == 1:
        return train_step(model, optimizer, batch, ctx, grad_clip, forward=step_fn)
    # the summed loss, scaled so DDP's averaged gradient is the one-process one (loss_scale); counted as
    # this shard's part of the batch's mean, so the metrics window sums over ranks to it
    loss = train_step(model, optimizer, batch, ctx, grad_clip, forward=step_fn,
                      scale=distributed.loss_scale(stats.weight, world, stats.real))
    return loss * (stats.weight / max(1, stats.real))


def _record(st: state.TrainState, epoch: int, lr: float, window: MetricsWindow, elapsed: float, model,
            cfg: TrainConfig) -> dict:
    """One metrics line: where the run is, and the window's loss, speed and FLOP rate."""
    seconds = time.perf_counter() - window.start
    rec = {
        "step": st.step, "epoch": epoch + 1, "tokens": st.tokens, "real_tokens": st.real_tokens,
        "loss": round(st.final_loss, 5), "lr": lr, "real_tok_per_s": round(window.real / seconds, 1),
        "elapsed_s": round(elapsed, 2), "gflops": round(window.flops / seconds / 1e9, 2), "rms": param_rms(model),
    }
    if cfg.peak_tflops:
        rec["mfu"] = round(rec["gflops"] / (cfg.peak_tflops * 1e3), 4)
    return rec


def _save(state_path, st: state.TrainState, window: MetricsWindow, model, optimizer, device, main: bool):
    """Write the state after st.step (rank 0; every rank takes part in reading the window's loss).
    -> (step, file): the newest state, for the message if training diverges later."""
    st.window = window.to_dict()  # a collective under torchrun
    if not main:
        return st.step, state_path
    st.torch_rng = torch.get_rng_state()
    st.cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    st.model, st.optimizer = model.state_dict(), optimizer.state_dict()
    state.save(state_path, st.to_dict())
    st.model, st.optimizer = {}, {}  # not kept in memory between saves
    return st.step, state_path


def _early_stop(stops, cfg: TrainConfig, seconds: float, step: int, state_path, world: int, device):
    """After a step that is not the last: a Stopped to raise (once the state is saved), or None to go on.
    A signal (SIGINT/SIGTERM) or the --max-minutes clock asks for it. Under torchrun either may reach one
    rank only, so all ranks stop together at the next log step (agreeing is a sync; log steps sync anyway)."""
    stop = None
    if stops.signals:
        sig = stops.signals[0]
        stop = errors.Stopped(f"interrupted by {signal.Signals(sig).name}", step, state_path, 128 + sig)
    elif cfg.max_minutes and seconds >= 60 * cfg.max_minutes:
        stop = errors.Stopped(f"--max-minutes {cfg.max_minutes:g} used up", step, state_path, EXIT_BUDGET)
    if world == 1:
        return stop
    code = distributed.max_over_ranks(stop.exit_code if stop else 0, device) if step % cfg.log_interval == 0 else 0
    if not code:
        return None
    if stop is None:
        why = "--max-minutes used up" if code == EXIT_BUDGET else f"interrupted by {signal.Signals(code - 128).name}"
        stop = errors.Stopped(f"{why} (on another rank)", step, state_path, code)
    return stop


def read_metrics(path) -> list[dict]:
    """A metrics file's records, less any line a killed process left half-written."""
    recs = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            recs.append(rec)
    return recs


def keep_metrics_until(path, step: int) -> None:
    """Drop metrics lines after `step` (written after the state being resumed was saved, or cut short by
    a kill), so the resumed run appends each later step exactly once."""
    path = Path(path)
    if not path.is_file():
        return
    keep = "".join(json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= step)  # as written
    atomic_write(path, lambda tmp: Path(tmp).write_text(keep, encoding="utf-8"))
