"""A data folder whose wiki.txt keeps only the start of each line: does less text to store make the facts
stored in fewer epochs?

    python benchmarks/short_lines.py DATA OUT [--chars 80]

Writes OUT/wiki.txt with every line cut at the last space within its first CHARS characters (a line that
fits is kept whole), and links DATA's question files beside it, so that `spangpt pretrain --data OUT` and
`spangpt evaluate` run on it unchanged. A view of the biography text (a window of each line), as the
experiment's rules allow; no person's birthplace is written in question form. Prints how many characters
are kept and, for each question file with answers, how many answers end within the kept text (the
ceiling of a model trained on it). Measurements: docs/recipes.md, "30 minutes without native bf16".
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt.corpus import lines_by_name, name_in_question
from spangpt.data import load_corpus, load_questions
from spangpt.errors import UserError, run_script
from spangpt.fileio import check_writable

ANSWERED = ("birth_places_train.tsv", "birth_dev.tsv")  # the question files with answers
QUESTION_FILES = (*ANSWERED, "birth_test_inputs.tsv")


def cut(line: str, chars: int) -> str:
    """The line's first `chars` characters, ending at a word: at the last space within them, unless that
    would keep less than half of them (one long word), then at `chars` itself."""
    if len(line) <= chars:
        return line
    space = line.rfind(" ", 0, chars + 1)
    return line[: space if space > chars // 2 else chars]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with wiki.txt and the question files")
    p.add_argument("out", type=Path, help="folder to write (must not hold a wiki.txt)")
    p.add_argument("--chars", type=int, default=80, help="characters kept of each line (default 80)")
    args = p.parse_args(argv)
    if args.chars < 1:
        raise UserError(f"--chars must be at least 1, got {args.chars}")
    if (args.out / "wiki.txt").exists():
        raise UserError(f"{args.out / 'wiki.txt'}: exists; give another OUT")
    lines = load_corpus(args.data / "wiki.txt")
    check_writable(args.out, folder=True)
    short = [cut(line, args.chars) for line in lines]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wiki.txt").write_text("\n".join(short) + "\n", encoding="utf-8")
    for name in QUESTION_FILES:
        if (args.data / name).is_file() and not (args.out / name).exists():
            (args.out / name).symlink_to((args.data / name).resolve())
    kept, total = sum(map(len, short)), sum(map(len, lines))
    print(f"{args.out / 'wiki.txt'}: {len(short)} lines, {kept:,} of {total:,} characters kept ({kept / total:.0%})")
    by_name = lines_by_name(short)
    for name in ANSWERED:
        if (args.data / name).is_file():
            pairs = load_questions(args.data / name)
            inside = sum(1 for q, a in pairs if a in by_name.get(name_in_question(q) or "", ""))
            print(f"{name}: the answer is in the kept text for {inside} of {len(pairs)} people "
                  f"({100 * inside / len(pairs):.1f}%)")
    return 0


if __name__ == "__main__":
    run_script(main)
