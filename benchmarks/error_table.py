"""Why is each dev answer wrong? A row per model: the right answers, and the wrong ones by cause.

    python benchmarks/error_table.py DATA CKPT|RUN_DIR [...] [--questions birth_dev.tsv]

Each wrong answer gets the first cause that applies:
- not in line:   the gold answer is not in the person's wiki.txt line after the name (only a guess can answer);
- past 96:       it is, but ends past the 96 characters plain span corruption ever shows;
- not stored:    the model's greedy completion of the line up to the answer does not write the answer;
- not reached:   it does (the fact is stored as the text it read), but the question does not bring it out.
Two more counts of the wrong: answers of several words ("New York City"), and wrong answers that are a
place of the person's own line (a distractor). Models: checkpoints, run folders or reproduce outputs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt.corpus import answer_position, head_length, lines_by_name, name_in_question
from spangpt.data import load_corpus, load_questions
from spangpt.errors import run_script
from spangpt.evaluate import predict
from spangpt.explore import load_entries
from spangpt.probe import completions

CAUSES = ("not in line", "past 96", "not stored", "not reached")


def classify(model, vocab, lines: dict[str, str], pairs: list[tuple[str, str]]) -> dict:
    """Counts: right, wrong, each cause, several words, own-line distractors."""
    preds = predict(model, vocab, [q for q, _ in pairs])
    counts = dict.fromkeys(("right", "wrong", *CAUSES, "several words", "own line"), 0)
    stored_asked, heads = [], []
    for (q, gold), pred in zip(pairs, preds):
        if pred == gold:
            counts["right"] += 1
            continue
        counts["wrong"] += 1
        line = lines.get(name_in_question(q) or "", "")
        counts["several words"] += " " in gold
        counts["own line"] += bool(pred) and pred in line
        head = head_length(line)  # the fact is the answer after the name ("Florence" of "Florence Nightingale. ")
        where = answer_position(line, gold, head)
        if where != "first 96":
            counts[where] += 1
            continue
        heads.append(line[: line.find(gold, head)])  # the line up to the answer: is the fact stored?
        stored_asked.append(gold)
    for gold, written in zip(stored_asked, completions(model, vocab, heads, max_chars=32) if heads else []):
        counts["not reached" if written.startswith(gold) else "not stored"] += 1
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with wiki.txt and the questions")
    ap.add_argument("models", type=Path, nargs="+", help="checkpoints, run folders or reproduce outputs")
    ap.add_argument("--questions", default="birth_dev.tsv", help="question<TAB>answer file in DATA")
    args = ap.parse_args(argv)
    lines = lines_by_name(load_corpus(args.data / "wiki.txt"))
    pairs = load_questions(args.data / args.questions)
    entries, _ = load_entries(args.models)
    cols = ("right", "wrong", *CAUSES, "several words", "own line")
    print("| model | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for e in entries:
        c = classify(e.model, e.vocab, lines, pairs)
        print(f"| {e.name} | " + " | ".join(str(c[k]) for k in cols) + " |", flush=True)
    print(f"({len(pairs)} questions; the four causes sum to the wrong ones)")


if __name__ == "__main__":
    run_script(main)
