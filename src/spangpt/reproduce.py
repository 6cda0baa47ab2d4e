"""The experiment table: no pretraining vs vanilla vs RoPE (and 'always London'), over one or more seeds.

Writes into OUT one folder per run and seed (OUT/vanilla/seed0/: checkpoints with their configs and
metrics, dev/test predictions of the final model and of the pretrained one before fine-tuning, result.json),
then results.json, report.md and (with matplotlib) two plots, losses.png and accuracy.png.
The report reads finished results only; it never touches tensors.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, CancelledError, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from spangpt import checkpoint, stages
from spangpt.config import load_recipe, model_config, stage_table
from spangpt.errors import Stopped, UserError
from spangpt.fileio import atomic_write
from spangpt.data import load_wiki, numbered_questions
from spangpt.evaluate import answer_loss, london_baseline, prompts_for
from spangpt.train import TrainConfig, read_metrics
from spangpt.trainlog import check_tensorboard, log_scalar

DEV, TEST = "birth_dev.tsv", "birth_test_inputs.tsv"
# The original CS224N run's numbers (../shared/docs/prior-results.md): dev exact match in %, and its logged
# pretraining loss (the last batch of each epoch) for its two runs at the epochs it was read at.
PAPER_DEV = {"london": 5.0, "scratch": 1.2, "vanilla": 26.2, "rope": 20.6}
PAPER_PRETRAIN_LOSS = {1: (3.48, 3.48), 5: (2.86, 2.84), 10: (2.70, 2.68), 20: (2.57, 2.56), 30: (2.50, 2.54),
                       40: (2.40, 2.43), 50: (2.21, 2.32), 60: (2.04, 2.15), 100: (1.52, 1.55),
                       150: (1.17, 1.18), 200: (1.09, 1.09), 650: (0.55, None)}
ROWS = (("london", "always 'London'"), ("scratch", "no pretraining"), ("vanilla", "vanilla (learned positions)"),
        ("rope", "RoPE"))


def run_dir(out: Path, name: str, seed: int) -> Path:
    """runs/best, vanilla, 0 -> runs/best/vanilla/seed0: one folder per run and seed."""
    return Path(out) / name / f"seed{seed}"


def run_one(data: Path, out: Path, name: str, variant: str, pretrain: bool, recipe: str, seed: int,
            overrides: dict, run_options: dict | None = None) -> dict:
    """Pretrain (unless `scratch`), fine-tune, evaluate on dev, predict test, all in run_dir(out, name, seed).
    A run that finished before (its result.json exists, written last) is read back instead, so seeds can be
    added to a table later; one made with another recipe or other overrides is an error, not reused.
    An interrupted run resumes its stages from their saved states (--resume auto). run_options (save_every,
    deadline, keep_state, tensorboard) change how stages run, not what they compute, so they are not part
    of the key. A recipe that fine-tunes for 0 epochs after pretraining skips that stage: the pretrained
    model is the one evaluated."""
    o = {**overrides, "seed": seed}
    where = run_dir(out, name, seed)
    done = where / "result.json"
    # the recipe's content, not only its name: a changed recipe file must not reuse runs made with the old one
    key = {"recipe": recipe, "recipe_tables": _recipe_tables(recipe), "variant": variant, "pretrain": pretrain,
           "overrides": o}
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("key") != key:
            raise UserError(f"{done}: a finished run with other settings ({info.get('key')}); use another --out")
        print(f"{name} seed {seed}: finished before, dev {info['accuracy']:.1f}% (reusing {done})", flush=True)
        return info
    device = o.get("device", "auto")
    opts = dict(run_options or {})
    tb = opts.pop("tensorboard", None)
    stage_kw = {"quiet": True, "resume": "auto", "keep_state": opts.pop("keep_state", False)}
    info = {"name": name, "seed": seed, "key": key}
    final = init = None
    t0 = time.perf_counter()
    if pretrain:
        final = init = where / "pretrain.safetensors"
        info["pretrain"] = stages.pretrain(data, init, variant, recipe, train_overrides={**o, **_stage_options(opts)},
                                           tensorboard=_tb(tb, where, out, "pretrain"), **stage_kw)["result"]
        # The pretrained model asked the dev questions as it is: with the QA pairs mixed into pretraining it
        # already answers in their format, and fine-tuning can take answers away (docs/recipes.md#why-fast-and-best-skip-fine-tuning),
        # so the table shows both. Test predictions too, in case dev picks this model.
        _, (correct, total) = stages.evaluate(init, data / DEV, where / "pretrain.dev.predictions", device)
        info["before_finetune"] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}
        _predict_test(init, data, where / "pretrain.test.predictions", device)
        _log_accuracy(tb, where, out, "pretrain", info["before_finetune"]["accuracy"], info["pretrain"]["steps"])
    if not pretrain or finetune_epochs(recipe, variant, o) > 0:
        final = where / "finetune.safetensors"
        info["finetune"] = stages.finetune(data, final, variant, init, recipe,
                                           train_overrides={**o, **_stage_options(opts)},
                                           tensorboard=_tb(tb, where, out, "finetune"), **stage_kw)["result"]
    t = time.perf_counter()
    _, (correct, total) = stages.evaluate(final, data / DEV, where / "dev.predictions", device)
    info["eval_seconds"] = round(time.perf_counter() - t, 2)
    model, vocab, _ = checkpoint.load(final)
    numbered = numbered_questions(data / DEV)
    info["answer_loss"] = answer_loss(model, vocab, [(q, a) for _, q, a in numbered], str(data / DEV),
                                      [n for n, _, _ in numbered])
    _predict_test(final, data, where / "test.predictions", device)
    info.update(correct=correct, total=total, accuracy=100.0 * correct / total,
                minutes=round((time.perf_counter() - t0) / 60, 2))
    if "finetune" in info:
        _log_accuracy(tb, where, out, "finetune", info["accuracy"], info["finetune"]["steps"])
    atomic_write(done, lambda t: Path(t).write_text(json.dumps(info, indent=2)))
    before = info.get("before_finetune")
    after = "" if "finetune" in info else " (no fine-tuning after pretraining)"
    print(f"{name} seed {seed}: dev {correct}/{total} = {info['accuracy']:.1f}%{after}"
          + (f" ({before['accuracy']:.1f}% before fine-tuning)" if before and after == "" else "")
          + f", answer loss {info['answer_loss']:.3f}", flush=True)
    return info


def finetune_epochs(recipe: str, variant: str, overrides: dict) -> int:
    """The fine-tuning epochs after pretraining: 0 means the pretrained model is the answer."""
    epochs = overrides.get("epochs", stage_table(load_recipe(recipe), "finetune", variant).get("epochs"))
    return TrainConfig.epochs if epochs is None else epochs


def _tb(tensorboard, where: Path, out: Path, stage: str):
    """A stage's TensorBoard folder: TB/vanilla/seed0/pretrain, beside rope/seed0/pretrain for comparison."""
    return None if tensorboard is None else Path(tensorboard) / where.relative_to(out) / stage


def _log_accuracy(tensorboard, where: Path, out: Path, stage: str, accuracy: float, step: int) -> None:
    if tensorboard is not None:  # at the stage's last step, where its curves end
        log_scalar(_tb(tensorboard, where, out, stage), "dev/exact_match", accuracy, step)


def _check_pairs(data: Path, recipe: str) -> list[str]:
    """The dev answers, once every training and dev pair is known to encode with the corpus's vocabulary
    and fit the recipe's block, and every test question too: fine-tuning trains on the first, each run
    scores its answer loss on the second and predicts the third, and a bad line must stop the table before
    hours of pretraining, not after (the error names the file and line)."""
    _, vocab = load_wiki(data / stages.WIKI)
    block = model_config(load_recipe(recipe), len(vocab), "vanilla", {}).block_size
    stages.qa_examples(data / stages.TRAIN_QA, vocab, block)
    numbered = numbered_questions(data / DEV)
    stages.qa_examples(data / DEV, vocab, block, numbered)
    if (data / TEST).is_file():
        test = numbered_questions(data / TEST, need_answers=False)
        prompts_for(vocab, [q for _, q, _ in test], block, str(data / TEST), [n for n, _, _ in test])
    return [a for _, _, a in numbered]


def _stage_options(run_options: dict | None) -> dict:
    """run_options for a stage about to start: the table's deadline (reproduce --max-minutes) becomes the
    minutes left, at least a moment (0 would mean no limit): a stage that starts late takes one step, saves
    its state and stops, and the same command again goes on from there."""
    opts = dict(run_options or {})
    deadline = opts.pop("deadline", None)
    if deadline is not None:
        opts["max_minutes"] = max((deadline - time.time()) / 60, 1e-9)
    return opts


def _predict_test(ckpt: Path, data: Path, out: Path, device: str) -> None:
    if (data / TEST).is_file():
        stages.evaluate(ckpt, data / TEST, out, device, need_answers=False)


def _recipe_tables(recipe: str) -> dict:
    return {k: v for k, v in load_recipe(recipe).items() if k not in ("name", "path")}  # the values, not where


def reproduce(data, out, recipe: str = "paper", seeds=(0,), variants=("vanilla", "rope"), train_overrides=None,
              header: str = "", run_options: dict | None = None, jobs: int = 1) -> dict:
    """jobs > 1 trains that many runs at once, in processes that share the CPU threads (or the GPU): on a
    2-core CPU a small model gains little from a second thread, so two models side by side finish sooner."""
    data, out = Path(data), Path(out)
    run_options = dict(run_options or {})
    minutes = run_options.pop("max_minutes", 0)
    if minutes < 0:
        raise UserError(f"--max-minutes must be >= 0 (0 = no limit), got {minutes:g}")
    if minutes:  # a budget for this whole call, not for each stage: a wall-clock deadline
        run_options["deadline"] = time.time() + 60 * minutes
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if run_options.get("tensorboard") is not None:
        check_tensorboard()
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--jobs > 1 does not combine with torchrun (every rank would start its own workers); "
                        "use --jobs 1")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    answers = _check_pairs(data, recipe)
    c, n = london_baseline(answers)
    results = {"recipe": recipe, "data": str(data), "seeds": list(seeds), "runs": [],
               "london": {"correct": c, "total": n, "accuracy": 100.0 * c / n}}
    plan = [(name, variant, pretrain, seed) for seed in seeds
            for name, variant, pretrain in [("scratch", "vanilla", False)] + [(v, v, True) for v in variants]]
    args = [(data, out, name, variant, pretrain, recipe, seed, train_overrides or {}, run_options)
            for name, variant, pretrain, seed in plan]
    results["runs"] = _run_all(args, jobs)
    results["minutes"] = round((time.perf_counter() - t0) / 60, 1)  # this invocation (reused runs cost ~0)
    results["run_minutes"] = round(sum(r.get("minutes", 0.0) for r in results["runs"]), 1)
    table = format_table(results)
    if any(finetune_epochs(recipe, v, train_overrides or {}) == 0 for v in variants):
        table += ("\n\nThis recipe does no fine-tuning after pretraining (`[finetune] epochs = 0`): the training "
                  "pairs are mixed into pretraining, so the pretrained models are the ones evaluated (the "
                  "no-pretraining control is still fine-tuned from scratch).")
    plots = plot_losses(out, recipe) and plot_accuracy(out, results)
    report = (f"# spangpt results\n\n{header}recipe `{recipe}`, data `{data}`, seeds {list(seeds)}; "
              f"{results['run_minutes']} min of training and evaluation in all ({results['minutes']} min this time)\n\n"
              f"{table}\n" + ("\n![dev exact match](accuracy.png)\n\n![training loss](losses.png)\n" if plots else ""))
    atomic_write(out / "results.json", lambda t: Path(t).write_text(json.dumps(results, indent=2)))
    atomic_write(out / "report.md", lambda t: Path(t).write_text(report))
    print("\n" + table)
    print(f"(full report: {out / 'report.md'})")
    return results


# ----------------------------------------------------------------------------- --jobs N: runs side by side
# _run_all hands the runs to a pool of N spawned workers, pretraining runs first. Each worker (_worker_init)
# takes its share of the threads, a process group of its own and a thread that watches its parent. Endings:
# - a run fails: _run_all raises its error at once; runs not started are cancelled, running ones finish;
# - Ctrl-C or `kill PID` of the parent: _forward_stops cancels the runs not started and passes the signal
#   on; each worker finishes its step, saves and stops, and _run_queued refuses any run handed over later;
# - the parent is killed outright: _watch_parent sends its worker one SIGTERM, so it saves and exits.

_stopped = False  # in a pool worker: set once one of its runs was stopped


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    # Stop requests reach a worker from the parent only (_forward_stops): in a process group of its own, a
    # terminal's Ctrl-C (sent to the whole foreground group) does not arrive twice, which would read as
    # "stop at once" instead of "save and stop".
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    # And if the parent dies, even by SIGKILL: one SIGTERM, so the worker saves and stops instead of training
    # on as an orphan that still holds its run's lock. (Not PR_SET_PDEATHSIG: Linux sends that once per
    # exiting thread of the parent, and a second signal means "stop at once, unsaved".)
    threading.Thread(target=_watch_parent, daemon=True).start()


def _watch_parent() -> None:
    multiprocessing.parent_process().join()  # returns once the parent has ended
    os.kill(os.getpid(), signal.SIGTERM)


def _run_queued(*args) -> dict:
    """run_one in a pool worker, unless this worker was stopped before: a stop ends the whole table, but
    the pool may already have handed the worker its next run, which the parent can no longer cancel."""
    global _stopped
    if _stopped:
        raise CancelledError(f"{args[2]} seed {args[6]}: not started, the table was stopped")
    try:
        return run_one(*args)
    except (Stopped, KeyboardInterrupt) as e:
        _stopped = True
        if not multiprocessing.parent_process().is_alive():  # orphaned (the parent was killed): nobody waits for a result, and the
            # pool's queues never close while the other workers hold them, so leave now; the state is saved
            with contextlib.suppress(OSError):
                print(f"spangpt: {args[2]} seed {args[6]}: {str(e) or 'interrupted'} (the parent process had died)",
                      file=sys.stderr, flush=True)
            os._exit(1)
        raise


@contextlib.contextmanager
def _forward_stops(futures):
    """While the parent waits: SIGINT or SIGTERM (Ctrl-C, `kill PID`) cancels the runs not started yet and
    passes the signal on to the workers, which finish their step, save and stop; a second one stops them at
    once. Off the main thread (where Python cannot set handlers) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []

    def forward(signum, frame):
        got.append(signum)
        for f in futures:
            f.cancel()  # only those not running yet
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
        if len(got) > 1:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run_all(args: list[tuple], jobs: int) -> list[dict]:
    """run_one over args, `jobs` at a time; results in the order of args. Runs that pretrain start first so
    the short fine-tuning-only ones fill the end. Each worker gets an equal share of this process's threads."""
    if jobs == 1 or len(args) == 1:
        return [run_one(*a) for a in args]
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: a forked child inherits the parent's OpenMP thread pool state and can hang in it
    with ProcessPoolExecutor(min(jobs, len(args)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        pretrains = [a[4] for a in args]  # run_one's `pretrain` argument
        order = sorted(range(len(args)), key=lambda i: not pretrains[i])  # long runs first
        futures = [None] * len(args)
        for i in order:
            futures[i] = pool.submit(_run_queued, *args[i])
        with _forward_stops(futures):
            try:
                # the first failure ends the table at once (waiting in argument order would first sit
                # out runs queued behind it, and start more)
                wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
                if failed:
                    raise failed[0].exception()
                return [f.result() for f in futures]
            except BaseException:  # an error, or a stop: start no more runs; the running ones finish or save and stop
                pool.shutdown(cancel_futures=True)
                # a stop cancels the runs not started, so a cancelled one may come first: report the stop
                ended = [f.exception() for f in futures if f.done() and not f.cancelled()]
                stops = [e for e in ended if isinstance(e, Stopped)]
                if stops:
                    raise stops[0] from None
                raise


def _rows(results: dict):
    """-> [(key, label, [dev accuracy per seed], [answer loss per seed])], London first."""
    lo = results["london"]
    rows = [("london", ROWS[0][1], [lo["accuracy"]], [])]
    for key, label in ROWS[1:]:
        runs = [r for r in results["runs"] if r["name"] == key]
        if runs:
            rows.append((key, label, [r["accuracy"] for r in runs], [r["answer_loss"] for r in runs]))
    return rows


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def format_table(results: dict) -> str:
    """Markdown: mean ± std over seeds, each seed, the pretrained model's per seed before fine-tuning, the
    original's number (paper recipe), pretraining loss. A run finished before that column existed shows -."""
    paper = results["recipe"] == "paper"
    lines = ["| model | dev exact match (mean ± std) | per seed | before fine-tuning, per seed | " +
             ("the original | " if paper else "") + "final pretraining loss | dev answer loss (nats/char) |",
             "|---" * (6 + paper) + "|"]
    lo = results["london"]
    for key, label, accs, losses in _rows(results):
        runs = [r for r in results["runs"] if r["name"] == key]
        mean, std = _mean_std(accs)
        cell = f"{mean:.1f}% ({lo['correct']}/{lo['total']})" if key == "london" else \
            f"{mean:.1f}%" + (f" ± {std:.1f}" if len(accs) > 1 else "")
        each = "-" if key == "london" else ", ".join(f"{a:.1f}" for a in accs)
        before = ", ".join(f"{r['before_finetune']['accuracy']:.1f}" if "before_finetune" in r else "-"
                           for r in runs if "pretrain" in r) or "-"
        orig = f"{PAPER_DEV[key]:.1f}% | " if paper else ""
        pre = [r["pretrain"]["final_loss"] for r in runs if "pretrain" in r]
        pre_cell = ", ".join(f"{x:.3f}" for x in pre) if pre else "-"
        loss = f"{statistics.mean(losses):.3f}" if losses else "-"
        lines.append(f"| {label} | {cell} | {each} | {before} | {orig}{pre_cell} | {loss} |")
    return "\n".join(lines)


def epoch_losses(recs: list[dict]) -> dict[int, float]:
    """Metrics records -> {epoch: mean loss}, each window weighted by its steps and counted in the epoch it
    ended in (exact when --log-interval divides the epoch)."""
    sums: dict[int, list[float]] = {}
    prev = 0
    for r in recs:
        n = r["step"] - prev
        prev = r["step"]
        acc = sums.setdefault(r["epoch"], [0.0, 0])
        acc[0] += r["loss"] * n
        acc[1] += n
    return {e: s / n for e, (s, n) in sums.items()}


def _pyplot():
    """matplotlib's pyplot on a file backend, or None when the [plot] extra is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_losses(out: Path, recipe: str = "") -> bool:
    """Every run's training loss per epoch (losses.png); the paper recipe's panel also shows the original's."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, stage in zip(axes, ("pretrain", "finetune")):
        for f in sorted(out.glob(f"*/seed*/{stage}.metrics.jsonl")):
            per_epoch = epoch_losses(read_metrics(f))
            ax.plot(list(per_epoch), list(per_epoch.values()), label=f"{f.parent.parent.name} {f.parent.name}")
        if stage == "pretrain" and recipe == "paper":
            for i, marker in enumerate(("o", "s")):
                pts = [(e, v[i]) for e, v in PAPER_PRETRAIN_LOSS.items() if v[i] is not None]
                ax.plot(*zip(*pts), marker, color="k", fillstyle="none", label=f"the original, run {i + 1}")
        ax.set(title=stage, xlabel="epoch", ylabel="mean loss (non-PAD targets)", yscale="log")
        if ax.get_legend_handles_labels()[0]:  # a table without pretraining runs leaves that panel empty
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    plt.close(fig)
    return True


def plot_accuracy(out: Path, results: dict) -> bool:
    """Dev exact match per row (accuracy.png): bars at the mean, a dot per seed, a ring per seed for the
    pretrained model before fine-tuning, the original's as x."""
    plt = _pyplot()
    if plt is None:
        return False
    rows = _rows(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    labelled = set()

    def mark(x, ys, style, label, **kw):  # each label once in the legend
        ax.plot([x] * len(ys), ys, style, label=None if label in labelled else label, **kw)
        labelled.add(label)

    for i, (key, _, accs, _) in enumerate(rows):
        mean, std = _mean_std(accs)
        ax.bar(i, mean, yerr=std or None, color="C0" if key != "london" else "0.7", capsize=4)
        mark(i, accs, "o", "per seed", color="k", markersize=3)
        before = [r["before_finetune"]["accuracy"] for r in results["runs"]
                  if r["name"] == key and "before_finetune" in r]
        if before:
            mark(i + 0.2, before, "o", "before fine-tuning", color="C1", fillstyle="none", markersize=5)
        if results["recipe"] == "paper":
            mark(i, [PAPER_DEV[key]], "x", "the original", color="C3", markersize=9)
    ax.set_xticks(range(len(rows)), [label for _, label, _, _ in rows], fontsize=8)
    ax.set(ylabel="dev exact match (%)", title=f"recipe {results['recipe']}, seeds {results['seeds']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)
    return True


def _demo_corpus(data: Path, people: int) -> None:
    """The demo's corpus in `data`: written unless an earlier demo's is there, which is reused only if it is
    the one asked for. write_corpus writes wiki.txt last, so without it any files there are the rest of an
    interrupted write (the same deterministic corpus): they are written again."""
    from spangpt.synth import write_corpus

    if not (data / "wiki.txt").is_file():
        write_corpus(data, people=people, seed=0, style="simple", overwrite=True)
        return
    have = len((data / "wiki.txt").read_text(encoding="utf-8").splitlines())
    if have != people:
        raise UserError(f"{data / 'wiki.txt'}: a corpus of {have} people from an earlier demo, not {people}; "
                        f"use another --out (or --people {have})")


def demo(out, people: int = 500, seeds=(0,), jobs: int = 2) -> dict:
    out = Path(out)
    data = out / "data"
    _demo_corpus(data, people)
    header = (f"Demo: a synthetic corpus of {people} people, one plain biography each "
              f"(`spangpt data synth --style simple --people {people}`), and the small `demo` recipe "
              "(2 layers, 128 dims, the training QA pairs mixed into pretraining, strong weight decay; see "
              "spangpt/recipes/demo.toml): the real experiment's code and objective, scaled down to run in "
              "10-30 minutes on a 2-core CPU, depending on the CPU. The dev people are never in the QA pairs, "
              "so what the models answer about them comes from their biographies. Its numbers are not "
              "comparable with the paper's.\n\n")
    print(header.strip(), flush=True)
    return reproduce(data, out, recipe="demo", seeds=seeds, header=header, jobs=jobs)
