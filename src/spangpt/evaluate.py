"""Questions in, predicted birthplaces out; exact-match accuracy and the 'always London' baseline."""
from __future__ import annotations

from pathlib import Path

import torch

from spangpt.fileio import atomic_write
from spangpt.data import finetune_examples, pad_batch
from spangpt.errors import UserError, where
from spangpt.generate import greedy_batched
from spangpt.model import GPT
from spangpt.vocab import MASK, Vocab


def extract_answer(prompt_and_completion: str) -> str:
    """The text between the first and second ⁇ (the original's `completion.split('⁇')[1]`)."""
    parts = prompt_and_completion.split(MASK)
    return parts[1] if len(parts) > 1 else ""


def prompts_for(vocab: Vocab, questions: list[str], block_size: int, source="<questions>", lines=None) -> list:
    """Each question + ⁇ as ids; a character outside the vocabulary or a question too long for the block is
    an error naming its line."""
    prompts = []
    for i, q in zip(lines or range(1, len(questions) + 1), questions):
        prompt = vocab.encode(q + MASK, source, i)
        if len(prompt) >= block_size:
            raise UserError(f"{where(source, i)}: question is {len(prompt) - 1} characters; with the {MASK} after "
                            f"it the model reads at most {block_size - 1}")
        prompts.append(prompt)
    return prompts


def predict(model: GPT, vocab: Vocab, questions: list[str], source="<questions>", max_new: int = 32,
            lines=None) -> list[str]:
    """lines: each question's line number in source, for errors (default: 1, 2, ...)."""
    prompts = prompts_for(vocab, questions, model.cfg.block_size, source, lines)
    completions = greedy_batched(model, prompts, max_new=max_new)
    return [extract_answer(q + MASK + vocab.decode(c)) for q, c in zip(questions, completions)]


def accuracy(predictions: list[str], answers: list[str]) -> tuple[int, int]:
    """(correct, total) by exact string match, as the original's utils.evaluate_places."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    return sum(p == a for p, a in zip(predictions, answers)), len(answers)


def format_accuracy(correct: int, total: int) -> str:
    return f"Correct: {correct} out of {total}: {100.0 * correct / total}%"


def write_predictions(path, predictions: list[str]) -> None:
    if any("\n" in p for p in predictions):  # keep one prediction per line, whatever the model emits
        predictions = [p.replace("\n", " ") for p in predictions]
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text("".join(p + "\n" for p in predictions), encoding="utf-8"))


def london_baseline(answers: list[str]) -> tuple[int, int]:
    return accuracy(["London"] * len(answers), answers)


@torch.no_grad()
def answer_loss(model: GPT, vocab: Vocab, pairs, source="<questions>", lines=None) -> float:
    """Mean cross-entropy (nats per character) of the true `⁇answer⁇` given `question`, teacher-forced.

    Exact match is all-or-nothing; this shows how much probability the model puts on the right
    birthplace, so small gains from pretraining are visible before they flip greedy answers.
    lines: each pair's line number in source, for errors.
    """
    model.eval()
    device = next(model.parameters()).device
    examples = finetune_examples(pairs, vocab, model.cfg.block_size, source, lines)
    batch = pad_batch(examples, model.cfg.block_size).to(device)
    _, loss = model(batch.x, batch.y)
    return float(loss)
