"""How far a hand-written rule gets: answer each question with the place after "born ... in" in the
person's own wiki.txt line, no model at all.

    python benchmarks/regex_baseline.py DATA [--questions birth_dev.tsv]

A reference point beside always answering "London", not a method: the experiment's models may never be
given such a rule (docs/extraction.md, "The ceiling"). The rule: in the person's line (found by the name, as
the data code finds it), the first "born" followed, within the sentence, by "in" and a run of capitalised
words (hyphenated parts in any case: "Stratford-upon-Avon"); that run is the answer. A person without a line, or a line without a
match, counts as wrong.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from spangpt.corpus import lines_by_name, name_in_question
from spangpt.data import load_corpus, load_questions
from spangpt.errors import run_script

BORN_IN = re.compile(r"\bborn\b[^.]*?\bin ([A-Z][\w'’]*(?: [A-Z][\w'’]*|-[\w'’]+)*)")


def rule_answer(line: str | None) -> str:
    """The place the rule reads in a line ("" when it finds none)."""
    m = BORN_IN.search(line or "")
    return m.group(1) if m else ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with wiki.txt and the questions")
    p.add_argument("--questions", default="birth_dev.tsv", help="a question<TAB>answer file in DATA "
                   "(default birth_dev.tsv)")
    args = p.parse_args(argv)
    lines = lines_by_name(load_corpus(args.data / "wiki.txt"))
    questions = load_questions(args.data / args.questions)
    answers = [rule_answer(lines.get(name_in_question(q) or "")) for q, _ in questions]
    right = sum(a == gold for a, (_, gold) in zip(answers, questions))
    found = sum(bool(a) for a in answers)
    print(f"{args.questions}: the rule finds a place for {found} of {len(questions)} people and answers "
          f"{right} right: {100 * right / len(questions):.1f}% exact match")
    return 0


if __name__ == "__main__":
    run_script(main)
