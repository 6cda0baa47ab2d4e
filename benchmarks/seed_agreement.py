"""Do runs miss the same people? Dev predictions of several runs (seeds, variants) side by side.

    python benchmarks/seed_agreement.py DATA/birth_dev.tsv A.dev.predictions B.dev.predictions ...

Prints each run's exact match, then how many questions every run answers, how many at least one run
answers, and the majority vote (the most common prediction per question; a tie goes to the run listed
first). If runs miss the same people, those people are hard (a rare place, a name like another's); if
each run misses its own, the facts are there and each model reaches a random part of them.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from spangpt.data import load_questions, read_text
from spangpt.errors import run_script


def read_predictions(path: Path, n: int) -> list[str]:
    lines = read_text(path).splitlines()
    if len(lines) != n:
        raise SystemExit(f"{path}: {len(lines)} predictions for {n} questions")
    return lines


def agreement(answers: list[str], runs: list[list[str]]) -> dict:
    """Counts of correct answers: per run, by every run, by any run, and by the majority vote."""
    right = [[p == a for p, a in zip(preds, answers)] for preds in runs]
    votes = 0
    for i, a in enumerate(answers):
        counts = Counter(preds[i] for preds in runs)
        best = max(counts.values())
        top = next(preds[i] for preds in runs if counts[preds[i]] == best)  # ties: the first run listed
        votes += top == a
    return {
        "questions": len(answers),
        "per_run": [sum(r) for r in right],
        "all": sum(all(col) for col in zip(*right)),
        "any": sum(any(col) for col in zip(*right)),
        "vote": votes,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dev", type=Path, help="question<TAB>answer file the predictions answer")
    ap.add_argument("predictions", type=Path, nargs="+", help="one prediction per line, as `spangpt evaluate` writes")
    args = ap.parse_args(argv)
    answers = [a for _, a in load_questions(args.dev, need_answers=True)]
    runs = [read_predictions(p, len(answers)) for p in args.predictions]
    r = agreement(answers, runs)
    n = r["questions"]
    for path, c in zip(args.predictions, r["per_run"]):
        print(f"{c:4d} / {n}  {path}")
    for key, what in (("all", "answered by every run"), ("any", "answered by at least one run"), ("vote", "majority vote")):
        print(f"{r[key]:4d} / {n}  {what}")


if __name__ == "__main__":
    run_script(main)
