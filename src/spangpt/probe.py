"""Looking inside a trained model: how sure it is of an answer, what else it considered, what it writes
after a prefix, and where it looks. Shared by `spangpt ask`, `spangpt complete`, `spangpt explore` and the
benchmark scripts, so each of these has one implementation.

An answer's probability is that of the characters the model must write after `question⁇`: the answer
itself and the closing ⁇ (P(answer⁇ | question⁇), the product of the per-character probabilities).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spangpt.corpus import name_in_question, question
from spangpt.errors import UserError
from spangpt.evaluate import prompts_for
from spangpt.generate import greedy_batched
from spangpt.model import GPT
from spangpt.vocab import MASK, MASK_ID, PAD, PAD_ID, Vocab

MAX_ANSWER = 32  # characters decoded per answer, as evaluation (the original decodes 32)


@dataclass
class Answer:
    text: str
    probability: float
    closed: bool = True  # False: the model had not closed the answer with ⁇ within MAX_ANSWER characters


def as_question(text: str) -> str:
    """A bare name ("Ada Lovelace") becomes "Where was Ada Lovelace born?"; a question stays as it is."""
    text = text.strip()
    if not text:
        raise UserError("empty question")
    return text if name_in_question(text) is not None or text.endswith("?") else question(text)


def prompt_ids(model: GPT, vocab: Vocab, q: str) -> list[int]:
    """question + ⁇ as ids, with one-line errors for what the model cannot read (evaluation's length check)."""
    _check_text(vocab, q)
    return prompts_for(vocab, [q], model.cfg.block_size, "the question", [None])[0]


def text_ids(model: GPT, vocab: Vocab, text: str) -> list[int]:
    """A text to complete as ids, with one-line errors for what the model cannot read."""
    if not text:
        raise UserError("empty text")
    _check_text(vocab, text, PAD)
    if len(text) >= model.cfg.block_size:
        raise UserError(f"text is {len(text)} characters; the model reads at most {model.cfg.block_size - 1}")
    return vocab.encode(text)


def _check_text(vocab: Vocab, text: str, markers: str = MASK + PAD) -> None:
    """A question may not hold the markers (⁇ would end it); a text to complete may hold ⁇ (the span
    corruption format: "NAME. ⁇"), never the padding character."""
    bad = sorted({c for c in text if c not in vocab.stoi or c in markers})
    if bad:
        raise UserError(f"characters the model cannot read: {''.join(bad)!r} (not in its vocabulary, or "
                        f"the markers {markers})")


def _device(model: GPT) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def answer_probability(model: GPT, vocab: Vocab, q: str, answer: str, closed: bool = True) -> float:
    """P(answer⁇ | question⁇), teacher-forced in one forward pass; closed=False: P(answer | question⁇), the
    probability of an answer the model had not finished."""
    model.eval()
    prompt = prompt_ids(model, vocab, q)
    target = vocab.encode(answer + (MASK if closed else ""))
    ids = prompt + target
    if len(ids) > model.cfg.block_size:  # cut, it would be the probability of a shorter answer
        raise UserError(f"question and answer are {len(ids)} characters with their {MASK}s; the model reads at "
                        f"most {model.cfg.block_size}")
    logits, _ = model(torch.tensor([ids], device=_device(model)))
    logp = F.log_softmax(logits[0].float(), dim=-1)
    steps = range(len(prompt) - 1, len(ids) - 1)  # position i predicts token i + 1
    return math.exp(float(torch.stack([logp[i, ids[i + 1]] for i in steps]).double().sum())) if target else 1.0


@torch.no_grad()
def top_answers(model: GPT, vocab: Vocab, q: str, k: int = 5, max_chars: int = MAX_ANSWER) -> list[Answer]:
    """The k most probable answers by beam search over characters, most probable first.

    Each step extends every beam by every character and keeps the 2k best candidates: those that close
    the answer (⁇) among the best k are finished, the best k others go on. It stops when no open beam can
    beat the k-th finished answer (probabilities only shrink as characters are added), or after max_chars
    characters, the closing ⁇ included, as evaluation decodes (or at the end of the block); the best open
    beams then fill the list, marked not closed. With k = 1 this is greedy decoding. Distinct answers are
    disjoint events, so their probabilities sum to at most 1.
    """
    if k < 1:
        raise UserError(f"top-k must be at least 1, got {k}")
    model.eval()
    prompt = prompt_ids(model, vocab, q)
    device = _device(model)
    beams: list[tuple[list[int], float]] = [([], 0.0)]  # (answer ids so far, log-probability)
    done: list[tuple[list[int], float]] = []
    for _ in range(min(max_chars, model.cfg.block_size - len(prompt))):
        x = torch.tensor([prompt + ids for ids, _ in beams], device=device)
        logits, _ = model(x)
        logp = F.log_softmax(logits[:, -1].float(), dim=-1) + torch.tensor([s for _, s in beams], device=device)[:, None]
        scores, flat = logp.flatten().topk(min(2 * k, logp.numel()))
        nxt = []
        for rank, (score, i) in enumerate(zip(scores.tolist(), flat.tolist())):
            beam, char = divmod(i, logp.size(1))
            if char == MASK_ID:
                if rank < k:
                    done.append((beams[beam][0], score))
            elif len(nxt) < k:
                nxt.append((beams[beam][0] + [char], score))
        done.sort(key=lambda d: -d[1])
        beams = nxt
        if not beams or (len(done) >= k and beams[0][1] <= done[k - 1][1]):
            break
    answers = [Answer(vocab.decode(ids), math.exp(s)) for ids, s in done[:k]]
    if len(answers) < k:  # the block or max_chars ran out first: the open beams, marked so
        answers += [Answer(vocab.decode(ids), math.exp(s), closed=False)
                    for ids, s in beams[: k - len(answers)]]
    return sorted(answers, key=lambda a: -a.probability)


def greedy_answer(model: GPT, vocab: Vocab, q: str) -> Answer:
    """The answer evaluation gives (greedy decoding, MAX_ANSWER characters at most) and its probability;
    one the model did not close with ⁇ is marked so, with the probability of what it wrote."""
    out = greedy_batched(model, [prompt_ids(model, vocab, q)], max_new=MAX_ANSWER)[0]
    closed = bool(out) and out[-1] == MASK_ID
    text = vocab.decode(out[:-1] if closed else out)
    return Answer(text, answer_probability(model, vocab, q, text, closed), closed)


def completions(model: GPT, vocab: Vocab, prefixes: list[str], max_chars: int = 96) -> list[str]:
    """What the model writes after each prefix, greedily, up to its first ⁇ (not included) or max_chars
    characters or the end of the block."""
    outs = greedy_batched(model, [text_ids(model, vocab, p) for p in prefixes], max_new=max_chars)
    return [vocab.decode(o).split(MASK)[0] for o in outs]


def complete(model: GPT, vocab: Vocab, prefix: str, max_chars: int = 96, temperature: float = 0.0,
             seed: int = 0, top_k: int = 0) -> str:
    """completions for one prefix; temperature > 0 samples each character from softmax(logits / temperature)
    instead, never the padding character, and only among the top_k likeliest when top_k > 0 (one generator
    seeded with `seed`: the same call gives the same text). Below 1e-6 a temperature is greedy: sampling
    would give the argmax anyway."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise UserError(f"max_chars must be a whole number >= 1, got {max_chars!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not (isinstance(seed, int) and 0 <= seed < 2**63):
        raise UserError(f"seed must be a whole number from 0 to 2^63 - 1, got {seed!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise UserError(f"top_k must be a whole number >= 0 (0: every character), got {top_k!r}")
    if temperature < 1e-6:
        return completions(model, vocab, [prefix], max_chars)[0]
    ids = text_ids(model, vocab, prefix)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(min(max_chars, model.cfg.block_size - len(ids))):
            logits, _ = model(torch.tensor([ids + new], device=_device(model)))
            logits = logits[0, -1].double().cpu() / temperature
            logits[PAD_ID] = -math.inf
            if top_k:
                logits[logits < torch.topk(logits, min(top_k, logits.numel())).values[-1]] = -math.inf
            c = int(torch.multinomial((logits - logits.max()).softmax(-1), 1, generator=gen))
            if c == MASK_ID:
                break
            new.append(c)
    return vocab.decode(new)


@contextmanager
def _recording(model: GPT):
    """Run the model's attention as explicit softmax ("math") and keep each layer's weights."""
    attns = [b.attn for b in model.blocks]
    saved = [(a.impl, a.record) for a in attns]
    for a in attns:
        a.impl, a.record = "math", True
    try:
        yield attns
    finally:
        for a, (impl, record) in zip(attns, saved):
            a.impl, a.record, a.weights = impl, record, None


@torch.no_grad()
def attention(model: GPT, vocab: Vocab, q: str) -> tuple[list[str], torch.Tensor]:
    """Where the model looks when it writes the first answer character: -> (the prompt's characters,
    question + ⁇; weights of shape (layers, heads, prompt length)), each row a softmax over the prompt."""
    model.eval()
    ids = prompt_ids(model, vocab, q)
    with _recording(model) as attns:
        model(torch.tensor([ids], device=_device(model)))
        rows = torch.stack([a.weights[0, :, -1] for a in attns])  # the last position: it predicts the answer
    return [vocab.chars[i] for i in ids], rows.float().cpu()
