"""Where do a model's wrong answers come from? Dev predictions against the biographies.

    python benchmarks/wrong_answers.py DATA A.dev.predictions [B.dev.predictions ...]

For each wrong answer: is it a place named in the person's own line (a distractor), or in the line of
a namesake (another person who shares a word of the name: "Bob Lee" for "Ann Lee")? The namesake count
is set beside chance: as many random other lines per person, averaged over draws. Far above chance means
the model looks facts up partly by a single word of the name, not by the whole name.

It also counts the right answers by where the answer lies in the person's line: ending within the first
96 characters (all the original's span corruption ever shows), past them, or not in the line at all.
What lies past 96 characters is what `window` (or `focus`, whose runs come from the whole line) can add.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from spangpt.corpus import answer_position, lines_by_name, name_in_question
from spangpt.data import load_corpus, load_questions, read_text
from spangpt.errors import UserError, run_script


def classify(wiki: list[str], questions: list[tuple[str, str]], preds: list[str], draws: int = 20,
             seed: int = 0) -> dict:
    """Counts over the questions: right, wrong, wrong and in the own line, wrong for a person with
    namesakes, wrong and in a namesake's line, and that last count by chance (random lines, mean of draws)."""
    lines = lines_by_name(wiki)
    by_word: dict[str, list[str]] = {}
    for name in lines:
        for w in set(name.split()):
            by_word.setdefault(w, []).append(name)
    rng = random.Random(seed)
    names = list(lines)
    c = dict(right=0, wrong=0, own_line=0, with_namesakes=0, namesake_line=0, chance=0.0)
    for (q, answer), pred in zip(questions, preds):
        if pred == answer:
            c["right"] += 1
            continue
        c["wrong"] += 1
        name = name_in_question(q) or ""  # a question not of the usual form asks about no one
        own = lines.get(name, "")
        if pred and pred in own:
            c["own_line"] += 1
            continue
        mates = sorted({m for w in set(name.split()) for m in by_word.get(w, []) if m != name})
        if not pred or not mates:
            continue
        c["with_namesakes"] += 1
        c["namesake_line"] += any(pred in lines[m] for m in mates)
        others = [n for n in names if n != name]
        c["chance"] += sum(any(pred in lines[m] for m in rng.sample(others, len(mates))) for _ in range(draws)) / draws
    return c


def by_position(wiki: list[str], questions: list[tuple[str, str]], preds: list[str]) -> dict:
    """{where: (right, questions)} for where the answer ends in the person's line: "first 96", "past 96",
    "not in line" (its first occurrence; a person without a line counts as not in line)."""
    lines = lines_by_name(wiki)
    out = {"first 96": [0, 0], "past 96": [0, 0], "not in line": [0, 0]}
    for (q, answer), pred in zip(questions, preds):
        where = answer_position(lines.get(name_in_question(q), ""), answer)
        out[where][0] += pred == answer
        out[where][1] += 1
    return {k: tuple(v) for k, v in out.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with wiki.txt and the questions")
    ap.add_argument("predictions", type=Path, nargs="+", help="one prediction per line, as `spangpt evaluate` writes")
    ap.add_argument("--questions", default="birth_dev.tsv", help="question<TAB>answer file in DATA (default birth_dev.tsv)")
    args = ap.parse_args(argv)
    wiki = load_corpus(args.data / "wiki.txt")
    questions = load_questions(args.data / args.questions)
    for path in args.predictions:
        preds = read_text(path).splitlines()
        if len(preds) != len(questions):
            raise UserError(f"{path}: {len(preds)} predictions for {len(questions)} questions")
        c = classify(wiki, questions, preds)
        print(f"{path}: {c['right']} right, {c['wrong']} wrong; of the wrong, {c['own_line']} name a place of the "
              f"person's own line; {c['namesake_line']} of {c['with_namesakes']} (people with namesakes) a place of a "
              f"namesake's line, against {c['chance']:.1f} by chance")
        print("  right, by where the answer ends in the line: " +
              ", ".join(f"{k} {r}/{n}" for k, (r, n) in by_position(wiki, questions, preds).items()))


if __name__ == "__main__":
    run_script(main)
