"""`spangpt bench`: what the speed-ups buy on this machine, measured in one run. Never pass/fail.

Two ways to train the same model on the same examples:
- reference: what the original CS224N code computes: one example per row PAD-filled to block_size-1,
  fp32, the original's attention code (separate q/k/v projections, scores masked_fill'ed with -1e10;
  model.CausalSelfAttention._reference), torch.nn.Dropout;
- fast: what `spangpt pretrain` runs: packed rows, FastDropout, SDPA on CUDA / explicit attention on
  CPU, bf16 autocast where the hardware has native bf16 (device.use_bf16).

Measured:
1. training throughput in real target tokens/s (non-PAD targets) of whole optimizer steps on fresh
   batches of 128 span-corruption examples, batch preparation included (on CPU, as the trainer does).
   The two paths alternate (ref, fast, ref, fast, ...) for --repeats rounds of --seconds each after one
   warm-up step each, and see identical examples in each round; we report medians and their ratio;
2. time to answer the dev questions: the original one-question-at-a-time full-recompute greedy decoder
   (timed on as many questions as fit in --seconds, extrapolated linearly) vs evaluate.predict
   (batched, KV cache), on a randomly initialised model, plus how many answers the two agree on;
3. peak memory: CUDA max_memory_allocated, or elsewhere the peak RSS (Linux: VmHWM) of a fresh spawned
   process that runs a few steps of one path, and how much it grew over the RSS before them;
4. model FLOP/s achieved (see GPT.training_flops) and, with --peak-tflops, MFU;
5. with --scaling: synthetic corpora of 3k / 30k / 300k people: generation time, time and Python-heap
   peak of preparing one epoch of examples and batches, and fast-path training throughput.

The output ends with a line such as `train speedup: 6.4x  eval speedup: 75.0x` (ratios of medians).
"""
from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from spangpt import benchreport, checkpoint, synth
from spangpt.benchreport import MEMORY_STEPS
from spangpt.data import (batches, corpus_docs, load_questions, load_wiki, make_batch, pack_batch, pad_batch,
                          pretrain_example)
from spangpt.errors import UserError
from spangpt.evaluate import extract_answer, predict
from spangpt.generate import greedy_plain
from spangpt.device import autocast_context, default_fast_dropout, pick_attention, pick_device, use_bf16
from spangpt.model import GPT, ModelConfig
from spangpt.train import TrainConfig, make_optimizer, train_step
from spangpt.vocab import MASK, MASK_ID, Vocab

DEFAULT_DATA = Path("data") / "cs224n"  # where `spangpt data download --out data/cs224n` puts it (README)
SCALING_PEOPLE = (3_000, 30_000, 300_000)
MAX_NEW = 32  # the original decodes 32 characters per question


@dataclass(frozen=True)
class TrainPath:
    name: str
    pack: bool
    fast_dropout: bool
    attention: str
    bf16: bool

    def describe(self, batch_size: int, block: int) -> str:
        rows = f"packed rows of {block}" if self.pack else f"padded rows ({batch_size} x {block - 1})"
        drop = "FastDropout" if self.fast_dropout else "torch.nn.Dropout"
        attn = {"reference": "the original's attention code", "math": "explicit attention",
                "sdpa": "SDPA attention"}[self.attention]
        return f"{rows}, {'bf16 autocast' if self.bf16 else 'fp32'}, {attn}, {drop}"


def reference_path() -> TrainPath:
    return TrainPath("reference", pack=False, fast_dropout=False, attention="reference", bf16=False)


def fast_path(device: torch.device, bf16: bool) -> TrainPath:
    return TrainPath("fast", pack=True, fast_dropout=default_fast_dropout(device), attention=pick_attention("auto", device),
                     bf16=bf16)


# ----------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _draw(docs, vocab: Vocab, block: int, n: int, rng: random.Random):
    """n fresh span-corruption examples of randomly chosen documents."""
    return [pretrain_example(docs[rng.randrange(len(docs))], vocab, block, rng) for _ in range(n)]


def _make_batch(path: TrainPath, examples, block: int):
    return make_batch(examples, block, path.pack)


def _build(cfg: ModelConfig, path: TrainPath, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = GPT(cfg, fast_dropout=path.fast_dropout).to(device).train()
    model.set_attention(path.attention)
    return model, make_optimizer(model, TrainConfig(), device)


def _step(model, opt, batch, device, ctx):
    """One whole optimizer step, as train.train does it."""
    return train_step(model, opt, batch.to(device), ctx, TrainConfig().grad_clip)


def _train_rate(model, opt, path: TrainPath, docs, vocab, block, batch_size, device, seconds, rng) -> dict:
    """Steps on fresh batches until `seconds` have passed (at least one); batch preparation is timed too."""
    ctx = autocast_context(device, path.bf16)
    steps = targets = rows = positions = inputs = sq = 0
    t0 = time.perf_counter()
    while True:
        examples = _draw(docs, vocab, block, batch_size, rng)
        batch = _make_batch(path, examples, block)
        targets += batch.n_targets
        rows += batch.x.size(0)
        positions += batch.x.numel()
        lens = [len(x) for x, _ in examples]
        inputs += sum(lens)
        sq += sum(n * n for n in lens)
        _step(model, opt, batch, device, ctx)
        steps += 1
        if time.perf_counter() - t0 >= seconds:
            break
    _sync(device)
    dt = time.perf_counter() - t0
    return {"tok_s": targets / dt, "seconds": dt, "steps": steps, "targets": targets, "rows": rows,
            "positions": positions, "inputs": inputs, "sq": sq}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({_cpu_name()})"
    return device.type


def _load_avg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _load_note(load: float | None) -> str | None:
    """A warning when other processes were busy as the run began (timings are then noisy and pessimistic)."""
    if load is None or load < max(0.5, 0.25 * (os.cpu_count() or 1)):
        return None
    return (f"note: load average {load:.1f} on {os.cpu_count()} cores before the run started: other processes "
            "compete for the CPUs, so these timings are noisy and pessimistic")


def _precision_note(precision: str, device: torch.device, bf16: bool) -> str:
    what = "bf16 autocast" if bf16 else "fp32"
    if precision != "auto":
        return f"{what} (--precision {precision})"
    if device.type == "cpu" and not bf16:
        return f"{what} (auto: this CPU has no native bf16, where emulated bf16 matmuls are far slower than fp32)"
    return f"{what} (auto)"


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- equivalence


def loss_agreement(cfg: ModelConfig, docs, vocab: Vocab, n_examples: int = 128, device="cpu",
                   attention: str = "math", seed: int = 0) -> dict:
    """Reference vs fast path on one batch, same weights, dropout off, fp32: loss and gradients.

    The reference model (padded rows, torch.nn.Dropout, the original's attention code) and the fast one (packed
    rows with per-example positions and block-diagonal masks, FastDropout, `attention`) should give the
    same mean loss over real targets and the same gradients, up to float rounding.
    """
    device = torch.device(device)
    cfg0 = replace(cfg, dropout=0.0)
    torch.manual_seed(seed)
    ref = GPT(cfg0, fast_dropout=False).to(device).train()
    ref.set_attention("reference")
    fast = GPT(cfg0, fast_dropout=True).to(device).train()
    fast.load_state_dict(ref.state_dict())
    fast.set_attention(attention)
    examples = _draw(docs, vocab, cfg.block_size, n_examples, random.Random(seed))
    padded = pad_batch(examples, cfg.block_size).to(device)
    packed = pack_batch(examples, cfg.block_size).to(device)
    _, l_ref = ref(padded.x, padded.y)
    _, l_fast = fast(packed.x, packed.y, pos=packed.pos, doc=packed.doc)
    l_ref.backward()
    l_fast.backward()
    g_ref = torch.cat([p.grad.flatten() for p in ref.parameters()])
    g_fast = torch.cat([p.grad.flatten() for p in fast.parameters()])
    return {
        "ref_loss": l_ref.item(), "fast_loss": l_fast.item(), "loss_diff": abs(l_ref.item() - l_fast.item()),
        "grad_rel_diff": float((g_ref - g_fast).abs().max() / g_ref.abs().max().clamp_min(1e-30)),
        "ref_shape": tuple(padded.x.shape), "fast_shape": tuple(packed.x.shape),
    }


# ----------------------------------------------------------------------------- memory


def _memory_job(job: dict) -> dict:
    """Run a few steps of one path and report memory: CUDA allocator peak, or this process's peak RSS.

    On CPU this runs in a freshly spawned process, so that nothing another measurement allocated (and
    the allocator kept) counts: `before` is the RSS once torch is imported and the model built, `peak`
    the process's peak RSS during the work (its high-water mark, restarted at `before`).
    """
    device = torch.device(job["device"])
    torch.set_num_threads(job["threads"])
    cfg, vocab, kind = ModelConfig(**job["cfg"]), Vocab.from_list(job["vocab"]), job["kind"]
    cuda = device.type == "cuda"
    if kind.startswith("train"):
        path = TrainPath(**job["path"])
        model, opt = _build(cfg, path, device)
        ctx = autocast_context(device, path.bf16)
        rng = random.Random(0)
        before = _start_peak(device)
        for _ in range(MEMORY_STEPS):
            _step(model, opt, _make_batch(path, _draw(job["docs"], vocab, cfg.block_size, job["batch_size"], rng),
                                          cfg.block_size), device, ctx)
    else:
        if job.get("checkpoint"):
            model = checkpoint.load(job["checkpoint"], device)[0]
        else:
            torch.manual_seed(0)
            model = GPT(cfg).to(device).eval()
        before = _start_peak(device)
        if kind == "eval-plain":
            model.set_attention("reference")
            for q in job["questions"][:3]:
                greedy_plain(model, vocab.encode(q + MASK), MAX_NEW)
        else:
            predict(model, vocab, job["questions"], max_new=MAX_NEW)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _rss_peak()
    return {"before": before, "peak": peak}


def _start_peak(device: torch.device) -> float:
    """Restart the peak counter at what is held now (model and optimizer built), and return that."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_rss_peak()  # where it cannot, `before` is the RSS now and the peak may predate it
    return _mem_now(device)


def _proc_status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_rss_peak() -> bool:
    """Linux: make VmHWM (this process's peak RSS) restart from the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _mem_now(device: torch.device) -> float:
    """MiB: CUDA bytes allocated now, or this process's resident set size now."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mib("VmRSS") or _rss_peak()


def _rss_peak() -> float:
    """MiB: this process's peak RSS. Linux: VmHWM, since ru_maxrss also counts the parent's peak, which a
    spawned child inherits across exec."""
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _measure_memory(jobs: list[dict], device: torch.device) -> list[dict | None]:
    if device.type == "cuda":
        return [_memory_job(j) for j in jobs]
    if not Path("/proc/self/status").exists():
        try:
            import resource  # noqa: F401  (not on Windows)
        except ImportError:
            return [None] * len(jobs)
    ctx = multiprocessing.get_context("spawn")
    # one fresh process per job, side by side and on one thread each (only memory is measured here:
    # several multi-threaded processes on few cores slow each other down badly)
    jobs = [{**j, "threads": 1} for j in jobs]
    with ctx.Pool(processes=len(jobs), maxtasksperchild=1) as pool:
        return pool.map(_memory_job, jobs, chunksize=1)


# ----------------------------------------------------------------------------- sections


@dataclass
class Setup:
    docs: list
    vocab: Vocab
    questions: list
    cfg: ModelConfig
    device: torch.device
    batch_size: int
    ref: TrainPath
    fast: TrainPath


def _bench_train(s: Setup, seconds: float, repeats: int) -> dict:
    block = s.cfg.block_size
    built = {p.name: _build(s.cfg, p, s.device) for p in (s.ref, s.fast)}
    for p in (s.ref, s.fast):  # one warm-up step each (allocator, kernels, optimizer state)
        model, opt = built[p.name]
        batch = _make_batch(p, _draw(s.docs, s.vocab, block, s.batch_size, random.Random(-1)), block)
        _step(model, opt, batch, s.device, autocast_context(s.device, p.bf16))
    _sync(s.device)
    runs = {s.ref.name: [], s.fast.name: []}
    for r in range(repeats):
        for p in (s.ref, s.fast):
            _progress(f"training round {r + 1}/{repeats}: {p.name} path, {seconds:g} s")
            model, opt = built[p.name]
            res = _train_rate(model, opt, p, s.docs, s.vocab, block, s.batch_size, s.device, seconds,
                              random.Random(1000 + r))  # same examples for both paths in a round
            runs[p.name].append(res)
    out = {"runs": runs, "model": built[s.fast.name][0]}
    for name, rs in runs.items():
        out[name] = statistics.median(r["tok_s"] for r in rs)
    return out


def _bench_eval(s: Setup, seconds: float, repeats: int, model: GPT | None = None) -> dict:
    if model is None:
        torch.manual_seed(0)
        model = GPT(s.cfg).to(s.device).eval()  # random weights; attention as checkpoint.load builds it
    original = copy.deepcopy(model)  # the same weights, computed as the original code does
    original.set_attention("reference")
    qs = s.questions
    prompts = [s.vocab.encode(q + MASK, "<dev questions>", i) for i, q in enumerate(qs, 1)]
    greedy_plain(original, prompts[0], MAX_NEW)  # warm-up
    predict(model, s.vocab, qs[: min(8, len(qs))], max_new=MAX_NEW)
    _sync(s.device)

    _progress(f"evaluation: one-at-a-time decoding, {seconds:g} s")
    plain = []
    t0 = time.perf_counter()
    for p in prompts:
        plain.append(greedy_plain(original, p, MAX_NEW))
        if time.perf_counter() - t0 >= seconds:
            break
    _sync(s.device)
    t_plain = time.perf_counter() - t0

    _progress(f"evaluation: batched decoding of {len(qs)} questions x {repeats}")
    times, preds = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        preds = predict(model, s.vocab, qs, max_new=MAX_NEW)
        _sync(s.device)
        times.append(time.perf_counter() - t0)
    done = len(plain)
    agree = sum(extract_answer(q + MASK + s.vocab.decode(c)) == p for q, c, p in zip(qs, plain, preds))
    return {"n": len(qs), "plain_done": done, "plain_s": t_plain, "plain_total": t_plain / done * len(qs),
            "batched_total": statistics.median(times), "batched_runs": times, "agree": agree,
            "plain_stopped": sum(MASK_ID in c for c in plain)}


def _prep_epoch(docs, vocab: Vocab, block: int, batch_size: int, rng: random.Random) -> tuple[int, int]:
    """What the trainer does per pretraining epoch before any compute: every document corrupted, then
    shuffled and packed batch by batch (batches are made one at a time, as train.train consumes them)."""
    examples = [pretrain_example(d, vocab, block, rng) for d in docs]
    real = n = 0
    for b in batches(examples, batch_size, block, True, rng):
        real += b.n_targets
        n += 1
    return real, n


def _bench_scaling(s: Setup, people_list, seconds: float) -> list[dict]:
    rows = []
    for people in people_list:
        _progress(f"scaling: generating a synthetic corpus of {people:,} people"
                  + (" (about a minute)" if people >= 100_000 else ""))
        t0 = time.perf_counter()
        files = synth.generate(people=people, seed=0)
        t_gen = time.perf_counter() - t0
        wiki = files["wiki.txt"]
        docs = corpus_docs(wiki)
        vocab = Vocab.from_text(wiki)
        cfg = replace(s.cfg, vocab_size=len(vocab))
        block = cfg.block_size

        _progress(f"scaling: preparing one epoch of {len(docs):,} documents (timed, then traced)")
        t0 = time.perf_counter()
        real, n_batches = _prep_epoch(docs, vocab, block, s.batch_size, random.Random(0))
        t_prep = time.perf_counter() - t0
        tracemalloc.start()
        _prep_epoch(docs, vocab, block, s.batch_size, random.Random(0))
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

        _progress(f"scaling: fast-path training, {seconds:g} s")
        model, opt = _build(cfg, s.fast, s.device)
        warm = _make_batch(s.fast, _draw(docs, vocab, block, s.batch_size, random.Random(-1)), block)
        _step(model, opt, warm, s.device, autocast_context(s.device, s.fast.bf16))
        res = _train_rate(model, opt, s.fast, docs, vocab, block, s.batch_size, s.device, seconds, random.Random(7))
        t_train = real / res["tok_s"]
        rows.append({"people": people, "docs": len(docs), "gen_s": t_gen, "prep_s": t_prep, "heap_mb": heap_peak,
                     "batches": n_batches, "tok_s": res["tok_s"], "epoch_train_s": t_train,
                     "prep_share": t_prep / (t_prep + t_train)})
        del files, docs, model, opt
    return rows


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spangpt bench", description="Measure the reference (original) and fast "
                                 "training and evaluation paths on this machine, and print a table.")
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per timed measurement (default 15)")
    ap.add_argument("--data", type=Path, help=f"folder with wiki.txt and birth_dev.tsv (default: {DEFAULT_DATA} "
                    "if present, else a synthetic corpus of 3,000 people)")
    ap.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, ...")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="fast path precision (default auto: bf16 where the hardware has it natively)")
    ap.add_argument("--scaling", action="store_true", help="also time data preparation and training on "
                    "synthetic corpora of 3k/30k/300k people (generating 300k people takes minutes)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds per training path (default 3)")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s at this precision, to print MFU")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    ap.add_argument("--checkpoint", type=Path, help="time evaluation on this trained model (default: random "
                    "weights, which never emit the closing ⁇, so the batched decoder cannot stop early)")
    hide = argparse.SUPPRESS  # for tests and quick looks
    ap.add_argument("--batch-size", type=int, default=128, help=hide)
    ap.add_argument("--n-layer", type=int, help=hide)
    ap.add_argument("--n-head", type=int, help=hide)
    ap.add_argument("--n-embd", type=int, help=hide)
    ap.add_argument("--eval-questions", type=int, help=hide)
    ap.add_argument("--scaling-people", type=int, nargs="+", help=hide)
    ap.add_argument("--no-memory", action="store_true", help=hide)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    args.load_at_start = _load_avg()
    threads = torch.get_num_threads()
    try:
        return _run(args)
    except UserError as e:
        print(f"spangpt: error: {e}", file=sys.stderr)
        return 2
    finally:  # --threads is for this measurement only, also when main() is called in-process (the tests)
        torch.set_num_threads(threads)


def _run(args) -> int:
    if args.seconds <= 0 or args.repeats < 1 or args.batch_size < 1:
        raise UserError("--seconds must be > 0, --repeats and --batch-size >= 1")
    with tempfile.TemporaryDirectory(prefix="spangpt-bench-") as tmp:
        data, data_note = args.data, None
        if data is None:
            if (DEFAULT_DATA / "wiki.txt").is_file():
                data = DEFAULT_DATA
            else:
                _progress("real data not found: generating a synthetic corpus of 3,000 people")
                data = Path(tmp)
                synth.write_corpus(data, people=3000, seed=0)
                data_note = f"synthetic corpus, 3,000 people, seed 0 (no wiki.txt in {DEFAULT_DATA})"
        wiki, dev = Path(data) / "wiki.txt", Path(data) / "birth_dev.tsv"
        docs, vocab = load_wiki(wiki)
        questions = [q for q, _ in load_questions(dev, need_answers=False)]
        if args.eval_questions:
            questions = questions[: args.eval_questions]
        return _report(args, docs, vocab, questions, data_note or str(data))


def _report(args, docs, vocab, questions, data_desc) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    bf16 = use_bf16(args.precision, device)
    over = {k: getattr(args, k) for k in ("n_layer", "n_head", "n_embd") if getattr(args, k) is not None}
    cfg = ModelConfig(vocab_size=len(vocab), **over)
    s = Setup(docs, vocab, questions, cfg, device, args.batch_size, reference_path(), fast_path(device, bf16))
    block, bs = cfg.block_size, args.batch_size

    trained = None
    if args.checkpoint:
        trained, ck_vocab, _ = checkpoint.load(args.checkpoint, device)
        if ck_vocab != vocab:
            raise UserError(f"{args.checkpoint}: checkpoint vocabulary differs from that of {data_desc}")

    _progress("loss check: padded vs packed, dropout off, fp32")
    check = loss_agreement(cfg, docs, vocab, n_examples=bs, device=device, attention=s.fast.attention)
    tr = _bench_train(s, args.seconds, args.repeats)
    ev = _bench_eval(s, args.seconds, args.repeats, trained)
    mem = None
    if not args.no_memory:
        _progress("memory: one fresh process per path" if device.type != "cuda" else "memory: CUDA allocator peaks")
        common = {"device": str(device), "threads": torch.get_num_threads(), "cfg": cfg.to_dict(),
                  "vocab": vocab.to_list(), "batch_size": bs,
                  "checkpoint": str(args.checkpoint) if args.checkpoint else None}
        jobs = [{**common, "kind": "train-ref", "path": asdict(s.ref), "docs": docs},
                {**common, "kind": "train-fast", "path": asdict(s.fast), "docs": docs},
                {**common, "kind": "eval-plain", "questions": questions},
                {**common, "kind": "eval-batched", "questions": questions}]
        mem = _measure_memory(jobs, device)
    scaling = _bench_scaling(s, args.scaling_people or SCALING_PEOPLE, args.seconds) if args.scaling else None

    model = tr["model"]
    R, F = tr["runs"]["reference"], tr["runs"]["fast"]
    useful = lambda rs: sum(model.training_flops(r["inputs"], r["sq"]) for r in rs) / sum(r["seconds"] for r in rs)  # noqa: E731
    m = {"device": _device_name(device), "cuda": device.type == "cuda", "torch": torch.__version__,
         "threads": torch.get_num_threads(), "precision": _precision_note(args.precision, device, bf16),
         "load": _load_note(args.load_at_start), "cfg": cfg, "params": model.num_params(),
         "non_embedding": model.training_flops(1, 0) / 6, "documents": len(docs), "questions": len(questions),
         "data": data_desc, "ref": s.ref.describe(bs, block), "fast": s.fast.describe(bs, block), "batch_size": bs,
         "repeats": args.repeats, "seconds": args.seconds, "train": tr, "eval": ev, "memory": mem, "check": check,
         "scaling": scaling, "checkpoint": args.checkpoint, "variant": trained.cfg.variant if trained else None,
         "gflops_fast": useful(F) / 1e9, "gflops_ref": useful(R) / 1e9,
         "t_avg": sum(r["sq"] for r in F) / max(1, sum(r["inputs"] for r in F)), "peak_tflops": args.peak_tflops}
    print(benchreport.format_report(m), flush=True)
    return 0
