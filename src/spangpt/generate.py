"""Greedy decoding. `greedy_batched` is the fast one (all prompts at once, KV cache, stops early);
`greedy_plain` is the original algorithm (one prompt at a time, full recompute each step), kept as the
reference the fast one must match, and for the benchmark.
"""
from __future__ import annotations

import torch

from spangpt.model import GPT, KVCache
from spangpt.vocab import MASK_ID


@torch.no_grad()
def greedy_plain(model: GPT, prompt: list[int], max_new: int = 32) -> list[int]:
    """Append up to max_new argmax tokens to prompt; returns only the new tokens.

    Unlike the original we never slide the window: we stop at block_size, where positions run out.
    """
    model.eval()
    device = next(model.parameters()).device
    idx = torch.tensor([prompt], device=device)
    out = []
    for _ in range(min(max_new, model.cfg.block_size - len(prompt))):
        logits, _ = model(idx)
        nxt = logits[0, -1].argmax()
        out.append(int(nxt))
        idx = torch.cat([idx, nxt.view(1, 1)], dim=1)
    return out


@torch.no_grad()
def greedy_batched(model: GPT, prompts: list[list[int]], max_new: int = 32, stop_id: int = MASK_ID,
                   batch_size: int = 128) -> list[list[int]]:
    """Greedy-decode many prompts; each row stops mattering once it emits stop_id, and decoding ends when
    all rows have. Returns the new tokens of each prompt: up to and including stop_id, or max_new, or as many
    as the block leaves after the longest prompt of its chunk; none for a prompt that fills the block (as the
    one-at-a-time decoder)."""
    model.eval()
    # Chunks of similar length: every prompt in a chunk is left-padded to the chunk's longest, so sorting
    # cuts the padding the prefill computes (dev prompts: 25-58 characters, mean 32).
    fits = [i for i in range(len(prompts)) if len(prompts[i]) < model.cfg.block_size]
    order = sorted(fits, key=lambda i: len(prompts[i]))
    # A chunk decodes as many steps as its longest prompt leaves room for in the block. Prompts too long
    # for max_new steps therefore share a chunk only with prompts of their own length, so that every
    # prompt gets the steps the one-at-a-time decoder would give it.
    room = model.cfg.block_size - max_new
    chunks: list[list[int]] = []
    for i in order:
        n = len(prompts[i])
        if not chunks or len(chunks[-1]) == batch_size or (n > room and n != len(prompts[chunks[-1][-1]])):
            chunks.append([])
        chunks[-1].append(i)
    outs: list[list[int]] = [[] for _ in prompts]
    for chunk in chunks:
        for i, out in zip(chunk, _greedy_chunk(model, [prompts[i] for i in chunk], max_new, stop_id)):
            outs[i] = out
    return outs


def _greedy_chunk(model, prompts, max_new, stop_id):
    device = next(model.parameters()).device
    B, P = len(prompts), max(len(p) for p in prompts)
    steps = min(max_new, model.cfg.block_size - P)  # the longest prompt bounds everyone (see greedy_batched)
    # Left-pad so every prompt ends at column P-1; pads get position 0 and are never attended to.
    lens = torch.tensor([len(p) for p in prompts], device=device)
    pad = P - lens  # (B,)
    idx = torch.zeros(B, P, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        idx[r, P - len(p) :] = torch.tensor(p)
    col = torch.arange(P, device=device)
    valid = col[None, :] >= pad[:, None]  # (B, P) real prompt tokens
    pos = (col[None, :] - pad[:, None]).clamp(min=0)  # (B, P) each prompt starts at position 0
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()
    # a pad query may see itself, so its softmax row is finite (a NaN there would leak into v later)
    mask = (causal & valid[:, None, :]) | torch.eye(P, dtype=torch.bool, device=device)
    cache = KVCache(model.cfg, B, P + steps, device, dtype=next(model.parameters()).dtype)

    logits, _ = model(idx, pos=pos, mask=mask[:, None], cache=cache)
    keys = torch.cat([valid, torch.ones(B, steps, dtype=torch.bool, device=device)], dim=1)  # (B, P+steps)
    new = torch.empty(B, 0, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(steps):
        nxt = logits[:, -1].argmax(-1)  # (B,)
        new = torch.cat([new, nxt[:, None]], dim=1)
        done |= nxt == stop_id
        if bool(done.all()) or t == steps - 1:
            break
        step_mask = keys[:, None, None, : P + t + 1]  # (B, 1, 1, S): this token sees prompt + generated
        logits, _ = model(nxt[:, None], pos=(lens + t)[:, None], mask=step_mask, cache=cache)
    rows = new.tolist()
    return [r[: r.index(stop_id) + 1] if stop_id in r else r for r in rows]
