"""Is a fact stored, and can a question reach it? Greedy recall of each person's birthplace three ways.

    python benchmarks/recall_probe.py CKPT [CKPT ...] --data ../shared/data/cs224n

CKPT: a checkpoint (.safetensors) or a resumable training state (.state.pt, e.g. copies taken during a run
with --save-every).

For every dev (and train) question whose answer occurs in the person's wiki.txt line, ending within the
first 96 characters (what the original's pretraining ever shows):
- own line:       the line itself up to the answer ("Khatchig Mouradian. Khatchig Mouradian is a ... born in ")
                  -> did pretraining store the fact, as the text it was trained on?
- after question: "Where was NAME born? " + the same words after the name's head: the same text, no longer
                  at the start of the sequence -> is the fact keyed on the name, or on where the line starts?
- question:       "Where was NAME born?⁇", the fine-tuning format (meaningful after fine-tuning, or after a
                  pretraining that mixed the training pairs in: mix_qa).
- after PREFIX:   with --prefix TEXT, the own line after TEXT ("Ab. Khatchig Mouradian. ... born in "): the same
                  words shifted off the start of the sequence -> does recall depend on standing at the start?
- focus form:     with --focus, the entity-centred examples' format (`focus` in a recipe; corpus.focus_example):
                  the name, the four words before the answer, ⁇, the line after it, ⁇ ("Khatchig Mouradian.
                  translator born in ⁇ .⁇") -> is the fact stored only in the form, and at the positions,
                  those examples put it?
A fact stored but not reached from a question is what fine-tuning cannot extract. Prints counts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spangpt import checkpoint, state
from spangpt.corpus import MAX_SHOWN, answer_position, focus_example, lines_by_name, name_in_question, question
from spangpt.data import load_corpus, load_questions, load_wiki
from spangpt.errors import run_script
from spangpt.evaluate import accuracy, predict
from spangpt.model import GPT, ModelConfig
from spangpt.probe import completions

MAX_PREFIX = 16  # line (<= MAX_SHOWN = 96) + prefix + a 16-character answer fit the 128-character block
FOCUS_LENGTH = (4 + MAX_SHOWN) // 2  # 50: a focus example's drawn length is uniform on [4, 96]; the mean


def cases(data: Path, split: str) -> list[tuple[str, str, str, str]]:
    """(name, answer, line up to the answer, line after it) for each question answerable from its own line.

    The line is found by its whole name, initials included ("Douglas P. Fry. ..."), as pretraining reads it."""
    lines = lines_by_name(load_corpus(data / "wiki.txt"))
    out = []
    for q, a in load_questions(data / split):
        name = name_in_question(q)
        line = lines.get(name, "")  # none for a question not of the usual form (name None)
        if answer_position(line, a) == "first 96":
            i = line.find(a)
            out.append((name, a, line[:i], line[i + len(a):]))
    return out


class _Earliest:
    """In place of focus_example's random generator: the window starts at the earliest word it allows."""
    @staticmethod
    def choice(xs):
        return xs[0]


def focus_prompt(name: str, answer: str, before: str, after: str) -> str:
    """The line as corpus.focus_example builds a focus example masking the answer, with the most words it
    allows before the masked run (four) and a drawn length of FOCUS_LENGTH, cut before the masked run itself."""
    start = len(before)
    line, run = before + answer + after, (start, start + len(answer))
    example = focus_example(line, len(name) + 2, run, FOCUS_LENGTH, _Earliest())
    return example[: -len(answer) - 1]  # the answer and its closing ⁇ are what the model must produce


def load_model(path: Path, data: Path):
    """A checkpoint, or the weights in a resumable training state (--save-every: a curve from one run).

    Told apart by the state's header, not the name: `spangpt pretrain --out m.pt` writes a checkpoint
    named m.pt, which the CLI reads as one."""
    with open(path, "rb") as f:
        is_state = f.read(len(state.MAGIC)) == state.MAGIC
    if not is_state:
        model, vocab, _ = checkpoint.load(path)
        return model, vocab
    st = state.load(path)
    model = GPT(ModelConfig(**st.run["model"]))
    model.load_state_dict(st.model)
    return model, load_wiki(data / "wiki.txt")[1]  # the vocabulary pretraining built from the same file


def recall(ckpt: Path, data: Path, split: str, prefix: str = "", focus: bool = False) -> dict[str, tuple[int, int]]:
    model, vocab = load_model(ckpt, data)
    found = cases(data, split)
    prompts = {
        "own line": [head for _, _, head, _ in found],
        "after question": [question(n) + " " + head[len(n) + 2:] for n, _, head, _ in found],
    }
    if prefix:
        prompts[f"after {prefix!r}"] = [prefix + head for _, _, head, _ in found]
    if focus:
        prompts["focus form"] = [focus_prompt(*c) for c in found]
    res = {}
    for kind, texts in prompts.items():
        outs = completions(model, vocab, texts, max_chars=32)
        res[kind] = (sum(o.startswith(a) for o, (_, a, _, _) in zip(outs, found)), len(found))
    preds = predict(model, vocab, [question(n) for n, _, _, _ in found])
    res["question"] = accuracy(preds, [a for _, a, _, _ in found])
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("ckpt", type=Path, nargs="+")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--splits", nargs="+", default=["birth_dev.tsv", "birth_places_train.tsv"])
    p.add_argument("--prefix", default="", help="also recall each own line after this text (e.g. 'Ab. ')")
    p.add_argument("--focus", action="store_true", help="also recall each answer from the line in focus form")
    args = p.parse_args()
    if len(args.prefix) > MAX_PREFIX:
        p.error(f"--prefix: at most {MAX_PREFIX} characters (lines run to {MAX_SHOWN}, and the answer needs room "
                "in the block)")
    for ckpt in args.ckpt:
        for split in args.splits:
            res = recall(ckpt, args.data, split, args.prefix, args.focus)
            print(f"{ckpt.name} {split}: " + ", ".join(f"{k} {c}/{n}" for k, (c, n) in res.items()), flush=True)


if __name__ == "__main__":
    run_script(main)
