"""The table's report: results.json, report.md and (with matplotlib) losses.png and accuracy.png in OUT.

It reads finished results only (the dicts reproduce.run_one returns, and the metrics files beside each run's
checkpoints); it never touches tensors, so a table can be reported again without a model in memory.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from spangpt.fileio import atomic_write
from spangpt.train import read_metrics

# The original CS224N run's numbers (../shared/docs/prior-results.md): dev exact match in %, and its logged
# pretraining loss (the last batch of each epoch) for its two runs at the epochs it was read at.
PAPER_DEV = {"london": 5.0, "scratch": 1.2, "vanilla": 26.2, "rope": 20.6}
PAPER_PRETRAIN_LOSS = {1: (3.48, 3.48), 5: (2.86, 2.84), 10: (2.70, 2.68), 20: (2.57, 2.56), 30: (2.50, 2.54),
                       40: (2.40, 2.43), 50: (2.21, 2.32), 60: (2.04, 2.15), 100: (1.52, 1.55),
                       150: (1.17, 1.18), 200: (1.09, 1.09), 650: (0.55, None)}
ROWS = (("london", "always 'London'"), ("scratch", "no pretraining"), ("vanilla", "vanilla (learned positions)"),
        ("rope", "RoPE"))
NO_FINETUNE = ("\n\nThis recipe does no fine-tuning after pretraining (`[finetune] epochs = 0`): the training "
               "pairs are mixed into pretraining, so the pretrained models are the ones evaluated (the "
               "no-pretraining control is still fine-tuned from scratch).")


def write(out: Path, results: dict, header: str = "", no_finetune: bool = False) -> str:
    """results.json, the plots and report.md in out; -> the table. no_finetune: the recipe fine-tunes for 0
    epochs after pretraining, which the report says under the table. header: a paragraph above it."""
    out = Path(out)
    table = format_table(results)
    if no_finetune:
        table += NO_FINETUNE
    plots = plot_losses(out, results["recipe"]) and plot_accuracy(out, results)
    changed = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in results.get("overrides", {}).items())
    report = (f"# spangpt results\n\n{header}recipe `{results['recipe']}`"
              + (f" with `{changed}`" if changed else "") + f", data `{results['data']}`, "
              f"seeds {results['seeds']}; {results['run_minutes']} min of training and evaluation in all "
              f"({results['minutes']} min this time)\n\n"
              f"{table}\n" + ("\n![dev exact match](accuracy.png)\n\n![training loss](losses.png)\n" if plots else ""))
    atomic_write(out / "results.json", lambda t: Path(t).write_text(json.dumps(results, indent=2)))
    atomic_write(out / "report.md", lambda t: Path(t).write_text(report))
    return table


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
