"""The training loop, top to bottom: AdamW, the original token-based LR schedule, bf16 autocast, packing.

The trainer knows nothing about birthplaces or span corruption: it gets a function that draws one epoch
of (x, y) examples and turns them into batches.
"""
from __future__ import annotations

import json
import math
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from spangpt import distributed, errors, state
from spangpt.data import batch_examples, batches, make_batch
from spangpt.errors import UserError
from spangpt.fileio import atomic_write
from spangpt.model import GPT
from spangpt.trainlog import TrainLog
from spangpt.vocab import PAD_ID

EXIT_BUDGET = 75  # --max-minutes used up (sysexits' EX_TEMPFAIL: "try again later"; SIGINT/SIGTERM give 130/143)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256  # examples per optimizer step, packed or not (the original's unit)
    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    # Which tensors weight decay touches (see decay_groups): "non-bias" is the original CS224N trainer
    # (every parameter but biases: embeddings, position table and LayerNorm gains too); "matrices" is
    # nanoGPT's (every tensor of 2+ dims: Linear weights and embeddings); "linear" is minGPT's (Linear
    # weights only). At the paper's lr 6e-3 "linear" stalls after ~17 epochs (docs/paper.md#the-loss-curve).
    decay_on: str = "non-bias"
    grad_clip: float = 1.0
    # LR schedule, counted in tokens as the original: every example counts block_size-1 tokens, PAD
    # included (the original adds (y >= 0).sum() of its padded rows), whatever layout we train with.
    schedule: str = "paper"  # "paper" | "cosine" | "linear" | "constant"
    warmup_tokens: int = 512 * 20
    final_tokens: int = 0  # paper: 200 * (pretraining documents) * block_size, resolved by the caller
    max_steps: int = 0  # 0 = no limit
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "fp32" | "bf16" | "auto" (bf16 only on CPUs with native bf16; see use_bf16)
    pack: bool = True  # several examples per row (same loss, ~2.5x fewer positions on span corruption)
    shuffle: bool = True  # a new order every epoch; false: the file's order, as the original's DataLoader
    attention: str = "auto"  # "math" | "sdpa" | "auto" (sdpa on CUDA, math on CPU: measured faster there)
    # cheap keep-masks (model.FastDropout) on CPU; on CUDA torch.nn.Dropout is one fused kernel and
    # measured faster. None = choose by device.
    fast_dropout: bool | None = None
    compile: bool = False
    log_interval: int = 20  # steps between loss syncs / metrics lines (and loss health checks)
    save_every: int = 0  # steps between resumable-state saves; 0 = only at the end and when stopped early
    max_minutes: float = 0.0  # stop (state saved, exit 75) after this much training time; 0 = no limit
    workers: int | None = None  # batch-preparation processes (0 or 1); None = 1 on CUDA, 0 on CPU
    peak_tflops: float = 0.0  # the device's peak at this precision; > 0 adds MFU to the metrics
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


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
    final = cfg.final_tokens if cfg.schedule == "paper" else total_tokens
    progress = (tokens - cfg.warmup_tokens) / max(1, final - cfg.warmup_tokens)
    if cfg.schedule == "linear":
        return max(0.0, 1.0 - progress)
    if cfg.schedule == "cosine":
        progress = min(progress, 1.0)
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_bf16(precision: str, device: torch.device) -> bool:
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


def wants_fast_dropout(cfg: TrainConfig) -> bool:
    return cfg.fast_dropout if cfg.fast_dropout is not None else default_fast_dropout(pick_device(cfg.device))


def default_fast_dropout(device: torch.device) -> bool:
    return device.type == "cpu"


def pick_attention(name: str, device: torch.device) -> str:
    """auto: SDPA on CUDA (flash / memory-efficient kernels), explicit math elsewhere (measured faster on CPU)."""
    return name if name != "auto" else ("sdpa" if device.type == "cuda" else "math")


def train_step(model: GPT, optimizer, batch, ctx, grad_clip: float, forward=None, scale=None) -> torch.Tensor:
    """One whole optimizer step on a batch already on the device; returns the loss, not synced.
    forward: what to call for the loss (a torch.compile'd and/or DDP model), default the model itself.
    scale: None = minimise the mean token loss; a number = minimise scale * the summed token loss
    (a data-parallel shard; the summed loss is returned)."""
    with ctx:
        if scale is None:
            _, loss = (forward or model)(batch.x, batch.y, pos=batch.pos, doc=batch.doc)
        else:
            _, loss = (forward or model)(batch.x, batch.y, pos=batch.pos, doc=batch.doc, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    (loss if scale is None else loss * scale).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def autocast_context(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


DECAY_ON = ("non-bias", "matrices", "linear")


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


def workers(cfg: TrainConfig, device: torch.device) -> int:
    """Data-preparation processes: one on CUDA (batches take ~5 ms of Python, as long as a GPU step),
    none on CPU, where the two cores are busy with the model and a worker would only compete."""
    return cfg.workers if cfg.workers is not None else int(device.type == "cuda")


class _Stream(torch.utils.data.IterableDataset):
    """The trainer's own (epoch, batch) generator, run inside a single DataLoader worker: same order,
    same random draws as in-process (one worker consumes the one rng stream)."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return self.make()


@dataclass
class TrainResult:
    steps: int = 0
    tokens: int = 0  # schedule tokens (padded-equivalent)
    real_tokens: int = 0  # non-PAD targets actually trained on
    final_loss: float = float("nan")
    seconds: float = 0.0
    history: list = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # what makes it this run (state.fingerprint)


def train(model: GPT, draw_examples, cfg: TrainConfig, metrics_path=None, desc: str = "train",
          state_path=None, resume: dict | None = None, init: str | None = None, tensorboard=None) -> TrainResult:
    """Train `model` in place. draw_examples(rng) -> list of (x, y) id lists for one epoch.

    state_path: where to keep the resumable state (spangpt.state): saved every cfg.save_every steps, at
    the end, and when SIGINT/SIGTERM or cfg.max_minutes stops the run early (then errors.Stopped is
    raised). resume: a state from state.load, to continue exactly where it was saved: on the CPU in fp32
    the weights and losses then equal an uninterrupted run's, bit for bit. init: state.weights_digest of
    the pretrained weights a fine-tuning run starts from, so that a state is resumed only from the same.
    tensorboard: a folder for TensorBoard event files (trainlog.TrainLog), or None.
    """
    # Under torchrun (spangpt.distributed) every rank runs this same loop on its shard of each batch.
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0  # only rank 0 writes: metrics, state, progress bar
    torch.manual_seed(cfg.seed + rank)  # dropout: each rank its own masks (weights were initialised before)
    rng = random.Random(cfg.seed)  # the data: the same draws and shuffles on every rank
    epoch0_rng = rng.getstate()  # the data RNG at the start of epoch 0 (what a state records per epoch)
    device = distributed.device_for(pick_device(cfg.device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 weights, TF32 tensor-core matmuls
        torch.backends.cudnn.allow_tf32 = True
    model.to(device).train()
    model.set_attention(pick_attention(cfg.attention, device))
    bf16 = use_bf16(cfg.precision, device)
    ctx = autocast_context(device, bf16)
    optimizer = make_optimizer(model, cfg, device)
    step_fn = torch.compile(model) if cfg.compile else model
    block = model.cfg.block_size
    tokens_per_example = block - 1
    # training_flops is linear in (Σn, Σn²): take its two coefficients once, not a parameter count per step
    flops_per_len, flops_per_sq = model.training_flops(1, 0), model.training_flops(0, 1)
    # A mean loss above twice that of a uniform guess (ln V, about where training starts) means the model
    # is confidently wrong: training diverged, and more steps would only save damaged weights.
    loss_limit = 2 * math.log(model.cfg.vocab_size)

    first = draw_examples(rng)  # sizes the progress bar and the "cosine" schedule
    steps_per_epoch = math.ceil(len(first) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    total_tokens = cfg.epochs * len(first) * tokens_per_example
    run = state.fingerprint(model.cfg.to_dict(), cfg.to_dict(), first, init)

    res = TrainResult(fingerprint=run)
    loss_sum = torch.zeros((), device=device)  # summed on device; synced only every log_interval steps
    n_in_sum, window_real, window_flops = 0, 0, 0.0
    start_epoch, skip, seconds_before, last_saved = 0, 0, 0.0, None  # last_saved: (step, file)
    window_seconds = 0.0  # training time already in the unfinished metrics window (a resumed one)
    if resume is not None:  # everything the next step depends on, as it was after step resume["step"]
        state.check_same_run(resume["run"], run, resume.get("path", state_path))
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        res.steps, res.tokens, res.real_tokens = resume["step"], resume["tokens"], resume["real_tokens"]
        res.final_loss, seconds_before = resume["final_loss"], resume["seconds"]
        last_saved = (resume["step"], resume.get("path", state_path))
        start_epoch, skip = resume["epoch"], resume["batch"]
        if start_epoch > 0:  # replay that epoch's draw and shuffle; epoch 0's is `first`, drawn above
            rng.setstate(resume["rng"])
        torch.set_rng_state(resume["torch_rng"])  # dropout
        if device.type == "cuda" and resume.get("cuda_rng"):
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        if not main:  # the state holds rank 0's dropout RNG: the others continue on fresh streams of their own
            torch.manual_seed(cfg.seed + rank + 1_000_003 * res.steps)
        w = resume["window"]
        if main:  # the window's loss sum is saved summed over ranks: add it in once
            loss_sum.copy_(w["loss_sum"])
        n_in_sum, window_real, window_flops = w["steps"], w["real"], w["flops"]
        window_seconds = w.get("seconds", 0.0)  # absent in states saved before it was kept
        if metrics_path and main:
            keep_metrics_until(metrics_path, res.steps)

    step_fn = distributed.wrap(step_fn, device)  # after loading: DDP starts from identical weights
    metrics = open(metrics_path, "a" if resume else "w") if metrics_path and main else None
    shown = TrainLog(desc, total_steps, res.steps, show=cfg.progress and main, tensorboard=tensorboard if main else None)
    t0 = time.perf_counter()
    t_log = t0 - window_seconds  # the window's tokens/s counts the time it took before the stop, too

    def epochs():  # -> (epoch, batch index, data RNG state at the epoch's start, batch, shard)
        for epoch in range(start_epoch, cfg.epochs):
            epoch_rng = epoch0_rng if epoch == 0 else rng.getstate()
            examples = first if epoch == 0 else draw_examples(rng)
            b0 = skip if epoch == start_epoch else 0
            if world == 1:
                laid_out = batches(examples, cfg.batch_size, block, cfg.pack, rng, skip=b0, shuffle=cfg.shuffle)
                for i, batch in enumerate(laid_out, b0):
                    yield epoch, i, epoch_rng, batch, None
                continue
            chosen_batches = batch_examples(examples, cfg.batch_size, rng, skip=b0, shuffle=cfg.shuffle)
            for i, chosen in enumerate(chosen_batches, b0):
                mine, weight = distributed.shard(chosen, rank, world)
                # the global batch's numbers (every rank knows them: no communication): they drive the
                # schedule, the counters and the loss normalisation exactly as in one process
                lengths = [len(x) for x, _ in chosen]
                whole = (len(chosen), sum(len(y) - y.count(PAD_ID) for _, y in chosen), sum(lengths),
                         sum(n * n for n in lengths), weight)
                yield epoch, i, epoch_rng, make_batch(mine, block, cfg.pack), whole

    def window_loss_sum() -> torch.Tensor:
        """The window's summed loss over all ranks (each rank holds its shards' part of it)."""
        return distributed.all_reduce(loss_sum.detach().clone()) if world > 1 else loss_sum

    def check_health() -> float:
        """The window's mean loss; raises if it, or any weight, is not finite, or the loss exploded (syncs).
        Under torchrun every rank calls it at the same step and gets the same answer."""
        loss = window_loss_sum().item() / n_in_sum if n_in_sum else 0.0
        if n_in_sum and (not math.isfinite(loss) or loss > loss_limit):
            bad = f"mean loss {loss:.4g} over steps {res.steps - n_in_sum + 1}-{res.steps} (limit {loss_limit:.2f})"
        elif not bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()):
            bad = f"non-finite weights after step {res.steps}"
        else:
            return loss
        kept = f"the last good state (step {last_saved[0]}) is kept in {last_saved[1]}" if last_saved \
            else "no state was saved"
        raise UserError(f"training diverged: {bad}; {kept}; try a lower --lr")

    def save_state(epoch: int, next_batch: int, epoch_rng) -> None:
        nonlocal last_saved
        check_health()  # a state is only ever written from a healthy run
        window_loss = window_loss_sum().detach().cpu().clone()  # a collective: every rank takes part
        if not main:  # rank 0 writes the state
            last_saved = (res.steps, state_path)
            return
        version, internal, gauss = epoch_rng  # a DataLoader worker hands tuples over as lists
        state.save(state_path, {
            "format": state.FORMAT, "run": run, "finished": False,
            "step": res.steps, "total_steps": total_steps, "tokens": res.tokens, "real_tokens": res.real_tokens,
            "final_loss": res.final_loss, "seconds": seconds_before + time.perf_counter() - t0,
            "epoch": epoch, "batch": next_batch, "rng": (version, tuple(internal), gauss),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            "window": {"loss_sum": window_loss, "steps": n_in_sum, "real": window_real,
                       "flops": window_flops, "seconds": time.perf_counter() - t_log},
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        })
        last_saved = (res.steps, state_path)

    stream = epochs()
    if workers(cfg, device):  # prepare batches in another process, so a fast GPU never waits on Python
        loader = torch.utils.data.DataLoader(_Stream(epochs), batch_size=None, num_workers=1, prefetch_factor=8,
                                             pin_memory=device.type == "cuda",
                                             # its own generator, so dropout's global RNG stream stays as without it
                                             generator=torch.Generator().manual_seed(cfg.seed))
        stream = iter(loader)
    stops = state.StopRequests(enabled=state_path is not None)
    try:
        for epoch, i, epoch_rng, batch, whole in (stream if res.steps < total_steps else ()):
            n_examples, real, sum_len, sum_len_sq, weight = whole or (
                batch.n_examples, batch.n_targets, batch.sum_len, batch.sum_len_sq, 1.0)
            res.tokens += n_examples * tokens_per_example
            lr = cfg.lr * lr_multiplier(res.tokens, cfg, total_tokens)
            for g in optimizer.param_groups:
                g["lr"] = lr
            if world == 1:
                loss = train_step(model, optimizer, batch.to(device), ctx, cfg.grad_clip, forward=step_fn)
                loss_sum += loss.detach()
            else:
                # the summed loss, scaled so DDP's averaged gradient is the one-process one (loss_scale)
                loss = train_step(model, optimizer, batch.to(device), ctx, cfg.grad_clip, forward=step_fn,
                                  scale=distributed.loss_scale(weight, world, real))
                loss_sum += loss.detach() * (weight / max(1, real))  # summed over ranks: the batch's mean

            res.steps += 1
            res.real_tokens += real
            window_real += real
            window_flops += flops_per_len * sum_len + flops_per_sq * sum_len_sq
            n_in_sum += 1
            shown.step()
            last = res.steps == total_steps
            if res.steps % cfg.log_interval == 0 or last:
                now = time.perf_counter()
                res.final_loss = check_health()
                rec = {
                    "step": res.steps, "epoch": epoch + 1, "tokens": res.tokens, "real_tokens": res.real_tokens,
                    "loss": round(res.final_loss, 5), "lr": lr,
                    "real_tok_per_s": round(window_real / (now - t_log), 1), "elapsed_s": round(seconds_before + now - t0, 2),
                    "gflops": round(window_flops / (now - t_log) / 1e9, 2),
                }
                rec["rms"] = param_rms(model)
                if cfg.peak_tflops:
                    rec["mfu"] = round(rec["gflops"] / (cfg.peak_tflops * 1e3), 4)
                res.history.append(rec)
                if metrics:
                    metrics.write(json.dumps(rec) + "\n")
                    metrics.flush()
                shown.log(rec)
                loss_sum.zero_()
                n_in_sum, window_real, window_flops, t_log = 0, 0, 0.0, now
            # stop early only between steps, after saving; the last step just finishes the run
            stop = None if last else _early_stop(stops, cfg, time.perf_counter() - t0, res.steps, state_path,
                                                 world, device)
            if state_path and (last or stop or (cfg.save_every and res.steps % cfg.save_every == 0)):
                save_state(epoch, i + 1, epoch_rng)
            if stop:
                raise stop
            if last:
                break
    finally:
        stops.restore()
        shown.close()
        if metrics:
            metrics.close()
    res.seconds = seconds_before + time.perf_counter() - t0
    model.eval()
    return res


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
