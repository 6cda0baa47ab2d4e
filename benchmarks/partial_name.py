"""Does a model look a person up by the whole name, or by one word of it?

    python benchmarks/partial_name.py DATA CKPT [CKPT ...] [--questions birth_dev.tsv]

Every question about a person whose name has two or more words is asked three times: with the whole
name, with its first word only and with its last word only (`Where was Lee born?`). For each partial
question: is the answer the same as the whole name's, and is it still right? A model that keys a fact on
the whole name changes its answer when words are dropped; one that keys it on a single word keeps it.
"Same by chance" is how often a partial answer equals the whole-name answer of another person (the mean
over all others): a model that gives most people the same few places keeps its answer often, for no
reason of lookup.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt.corpus import name_in_question, question
from spangpt.data import load_questions
from spangpt.errors import run_script


def partial_questions(q: str) -> dict[str, str] | None:
    """{"first": ..., "last": ...}: the question with the name's first or last word alone; None when
    the name is one word (nothing to drop) or the question is not of the usual form."""
    words = (name_in_question(q) or "").split()
    if len(words) < 2:
        return None
    return {"first": question(words[0]), "last": question(words[-1])}


def compare(full: list[str], partial: list[str], answers: list[str]) -> dict:
    """Counts for one kind of partial question, people in the same order in all three lists."""
    n = len(full)
    same = sum(p == f for p, f in zip(partial, full))
    # chance: the partial answer equals another person's whole-name answer, averaged over the others
    counts: dict[str, int] = {}
    for f in full:
        counts[f] = counts.get(f, 0) + 1
    chance = sum((counts.get(p, 0) - (p == f)) / (n - 1) for p, f in zip(partial, full)) if n > 1 else 0.0
    return {"people": n, "right_full": sum(f == a for f, a in zip(full, answers)), "same": same,
            "same_by_chance": chance, "right_partial": sum(p == a for p, a in zip(partial, answers)),
            "same_when_full_right": sum(p == f == a for p, f, a in zip(partial, full, answers))}


def answers_of(ckpt: Path, questions: list[str]) -> list[str]:
    """Greedy answers of a checkpoint, as `spangpt evaluate` gives them."""
    from spangpt import checkpoint
    from spangpt.evaluate import predict

    model, vocab, _ = checkpoint.load(ckpt)
    return predict(model, vocab, questions, source=str(ckpt))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with the questions")
    ap.add_argument("checkpoints", type=Path, nargs="+", help="models to probe (pretrained or fine-tuned)")
    ap.add_argument("--questions", default="birth_dev.tsv", help="question<TAB>answer file in DATA (default birth_dev.tsv)")
    args = ap.parse_args(argv)
    pairs = [(q, a, partial_questions(q)) for q, a in load_questions(args.data / args.questions)]
    pairs = [(q, a, p) for q, a, p in pairs if p is not None]
    questions, answers = [q for q, _, _ in pairs], [a for _, a, _ in pairs]
    for ckpt in args.checkpoints:
        full = answers_of(ckpt, questions)
        print(f"{ckpt}: {len(questions)} people with a name of 2+ words, {sum(f == a for f, a in zip(full, answers))} "
              "right with the whole name")
        for kind in ("first", "last"):
            c = compare(full, answers_of(ckpt, [p[kind] for _, _, p in pairs]), answers)
            print(f"  {kind} word only: same answer {c['same']} ({c['same_by_chance']:.1f} by chance), "
                  f"{c['same_when_full_right']} of the {c['right_full']} right ones kept, "
                  f"{c['right_partial']} right")


if __name__ == "__main__":
    run_script(main)
