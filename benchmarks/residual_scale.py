"""How loud is each part of the residual stream? The embedding against what every block adds to it.

    python benchmarks/residual_scale.py CKPT [CKPT ...] --data ../shared/data/cs224n

For each checkpoint, on 256 span-corruption examples of wiki.txt (eval mode, fixed seed): the RMS over real
(non-PAD) positions of the embedding sum x0 (token + position), of each block's attention and MLP updates,
and of the final residual stream (every block reads the stream through a LayerNorm, so only ratios
matter); and per layer the attention logits (RMS of the scaled q.k over allowed pairs) and the mean entropy
of the attention rows in nats (log 2 = a row split evenly between two keys): logits that grow until
softmax rows collapse onto one key is a known way for high-learning-rate training to stall (Zhai et al.
2023, "Stabilizing Transformer Training by Preventing Attention Entropy Collapse"). Prints figures.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from spangpt import checkpoint
from spangpt.data import load_corpus, pad_batch, pretrain_example
from spangpt.errors import run_script
from spangpt.vocab import PAD_ID


@torch.no_grad()
def scales(ckpt: Path, docs: list[str], n: int = 256) -> dict[str, float]:
    model, vocab, _ = checkpoint.load(ckpt)
    rng = random.Random(0)
    batch = pad_batch([pretrain_example(d, vocab, model.cfg.block_size, rng) for d in docs[:n]], model.cfg.block_size)
    real = batch.x != PAD_ID  # (B, T)
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda mod, inp, out: seen.__setitem__(name, out)

    hooks = [model.drop.register_forward_hook(keep("x0"))]
    hooks += [b.attn.qkv.register_forward_hook(keep(f"qkv{i}")) for i, b in enumerate(model.blocks)]  # eval-mode dropout: its output is the embedding sum
    for i, b in enumerate(model.blocks):
        hooks += [b.attn.register_forward_hook(keep(f"attn{i}")), b.mlp.register_forward_hook(keep(f"mlp{i}")),
                  b.register_forward_hook(keep(f"stream{i}"))]
    model(batch.x)
    for h in hooks:
        h.remove()
    qkv = {k: seen.pop(k) for k in list(seen) if k.startswith("qkv")}
    rms = {k: float(v[real].pow(2).mean().sqrt()) for k, v in seen.items()}
    T = batch.x.size(1)
    allowed = torch.ones(T, T, dtype=torch.bool).tril() & real[:, None, None, :]  # (B, 1, T, T): causal, real keys
    rows = real[:, None, :, None].expand(-1, model.cfg.n_head, -1, -1)[..., 0]  # (B, nh, T): real queries
    for i in range(len(model.blocks)):
        if model.cfg.variant != "vanilla":
            break  # RoPE rotates q and k first; these figures are for the learned-position model
        B, _, C = qkv[f"qkv{i}"].shape
        q, k, _ = qkv[f"qkv{i}"].view(B, T, 3, model.cfg.n_head, -1).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        logits = (q @ k.transpose(-2, -1)) / q.size(-1) ** 0.5  # (B, nh, T, T)
        rms[f"logit{i}"] = float(logits.masked_select(allowed.expand_as(logits)).pow(2).mean().sqrt())
        p = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)  # (B, nh, T)
        rms[f"entropy{i}"] = float(ent[rows].mean())
    rms["tok_emb"] = float(model.tok_emb(batch.x)[real].pow(2).mean().sqrt())
    return rms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpts", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True, help="folder with wiki.txt")
    args = ap.parse_args(argv)
    docs = load_corpus(args.data / "wiki.txt")
    rows = [(c, scales(c, docs)) for c in args.ckpts]
    keys = list(rows[0][1])
    print("| checkpoint | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
    for c, r in rows:
        print(f"| {c.name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    run_script(main)
