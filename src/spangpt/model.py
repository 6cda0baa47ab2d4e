"""The CS224N character GPT (minGPT-sized), with learned absolute positions ("vanilla") or RoPE.

Everything about batching layouts lives outside: the model takes optional per-token positions `pos`
(restarting at 0 for each packed example) and `doc` ids (attention stays inside one example), or a
ready-made boolean attention mask and a KV cache for decoding.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from spangpt.vocab import PAD_ID

VARIANTS = ("vanilla", "rope")
# Attention is (T, T) per head: far below this a block would no longer fit in memory. The bound keeps a
# damaged checkpoint's config from asking for a RoPE table of any size.
MAX_BLOCK = 2**16


@dataclass
class ModelConfig:
    vocab_size: int = 256
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.1
    variant: str = "vanilla"  # "vanilla": learned absolute positions; "rope": rotary q/k, no position table
    rope_base: float = 10000.0
    # RoPE rotates pairs of *adjacent* dimensions (2i, 2i+1) of each head by angle t*θ_i,
    # θ_i = base^(-2(i-1)/head_dim), i = 1..head_dim/2 (the CS224N convention). Stored in checkpoints
    # so a future "half-split" layout can never be loaded by mistake.
    rope_layout: str = "adjacent-pairs"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.block_size > MAX_BLOCK:
            raise ValueError(f"block_size {self.block_size} is over {MAX_BLOCK}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.rope_base, (int, float)) or not self.rope_base > 1:
            raise ValueError(f"rope_base must be a number > 1, got {self.rope_base!r}")
        if self.rope_layout != "adjacent-pairs":
            raise ValueError(f"unknown rope_layout {self.rope_layout!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd must split into n_head heads of even size (n_embd {self.n_embd}, "
                             f"n_head {self.n_head})")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- RoPE


def rope_table(block_size: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of t*θ_i for t < block_size, i < head_dim/2: two (block_size, head_dim/2) tables."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hs/2,)
    angle = torch.arange(block_size, dtype=torch.float64)[:, None] * theta[None, :]  # (T, hs/2)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent pair (x[2i], x[2i+1]) of x (B, nh, T, hs) by the angle whose cos/sin are given.

    cos/sin broadcast against (B, nh, T, hs/2): (T, hs/2) for shared positions, (B, 1, T, hs/2) per row.
    Read as a complex number x[2i] + i*x[2i+1], each pair is rotated by one complex multiply with
    cos + i*sin: one kernel forward and one backward, where the real form (x1*cos - x2*sin, x1*sin + x2*cos,
    then stack) makes ~8 passes over q and k (benchmarks/rope_speed.py times the two in training steps).
    The rotation is done in the tables' precision (fp32 under bf16 autocast), then cast back.
    Under torch.compile the real form instead: inductor generates no code for complex numbers (it falls back
    to eager kernels) and fuses the real form's passes into one kernel.
    """
    dtype = torch.promote_types(x.dtype, cos.dtype)
    if torch.compiler.is_compiling():
        x1, x2 = x.to(dtype).unflatten(-1, (-1, 2)).unbind(-1)
        c, s = cos.to(dtype), sin.to(dtype)
        return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2).type_as(x)
    xc = torch.view_as_complex(x.to(dtype).unflatten(-1, (-1, 2)))  # (B, nh, T, hs/2) complex
    return torch.view_as_real(xc * torch.complex(cos.to(dtype), sin.to(dtype))).flatten(-2).type_as(x)


# ----------------------------------------------------------------------------- blocks


class FastDropout(nn.Module):
    """Dropout with a cheaper keep-mask than torch.nn.Dropout's Bernoulli floats (a CPU trick).

    On CPU the profiler put ~40% (bf16) / ~25% (fp32) of a training step in dropout. Two savings,
    measured on a (52, 8, 128, 128) attention tensor (2 threads):
    - drawing the mask: one full-range 64-bit random draw gives four uniform int16s, each compared
      with a threshold (24 ms, against 54 ms for one int16 draw per element, 58 ms for torch.rand);
    - applying it: a float mask holding 0 or 1/(1-p), so forward and backward are one multiply each
      (3 ms; x * bool_mask * scale casts the mask and makes a second pass: 22 ms forward alone).
    The keep probability is keep/2^16 (within 2^-17 of 1-p) and kept values are scaled by exactly its
    inverse, so E[out] == x. A p below 2^-17 rounds to keeping everything: no dropout.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.keep = round((1.0 - p) * 65536)  # out of 65536
        self.scale = 65536.0 / self.keep if self.keep else 0.0

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """0 or 1/(1-p) for each element of x, in x's dtype."""
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        # int16 values are uniform on [-32768, 32767]: keep the lowest `keep` of the 65536
        keep = bits.view(torch.int16)[:n].view(x.shape) < self.keep - 32768
        return torch.where(keep, x.new_full((), self.scale), x.new_zeros(()))

    def forward(self, x):
        # keep == 2^16 has no int16 threshold (32768 would wrap to -32768 and drop everything)
        if not self.training or self.keep == 65536:
            return x
        return x * self.mask(x)


def make_dropout(p: float, fast: bool) -> nn.Module:
    return FastDropout(p) if fast else nn.Dropout(p)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, fast_dropout: bool = False):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        # one (C, 3C) matmul instead of the original's three (C, C) ones: same parameters, one GEMM
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.p = cfg.dropout
        self.attn_drop = make_dropout(cfg.dropout, fast_dropout)
        self.resid_drop = make_dropout(cfg.dropout, fast_dropout)
        # "math" (explicit softmax), "sdpa" (F.scaled_dot_product_attention), or "reference": the original
        # code's computation op for op, the baseline `spangpt bench` measures the others against
        self.impl = "math"
        self.record, self.weights = False, None  # record: keep the math path's softmax weights (probe.attention)

    def forward(self, x, mask, rope=None, cache=None, layer=0):
        if self.impl == "reference":
            if cache is not None:
                raise ValueError("the reference attention has no KV cache: decode it one token at a time")
            return self._reference(x, mask, rope)
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:  # decoding: append this step's keys/values, attend over everything so far
            k, v = cache.append(layer, k, v)  # (B, nh, S, hs)
        if self.impl == "sdpa":
            causal = isinstance(mask, str)  # "causal": let SDPA pick its fused causal kernel
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if causal else mask, is_causal=causal, dropout_p=self.p if self.training else 0.0
            )
        else:
            if isinstance(mask, str):
                mask = torch.ones(T, k.size(-2), dtype=torch.bool, device=x.device).tril()
            # Every (T, S) pass counts on CPU: scale q (4x smaller) rather than the scores, and mask by
            # adding a 0/-inf bias in place (its backward is free, where masked_fill's is another pass).
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
            att = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, nh, T, S)
            att = att.add_(bias).softmax(dim=-1)
            if self.record:
                self.weights = att.detach()
            y = self.attn_drop(att) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble heads side by side
        return self.resid_drop(self.proj(y))

    def _reference(self, x, mask, rope=None):
        """The original CS224N attention: separate key/query/value projections (here slices of the fused
        weight), scores scaled after the matmul, masked_fill with -1e10, softmax, dropout, then @ v."""
        B, T, C = x.shape
        w, b = self.qkv.weight, self.qkv.bias
        q, k, v = (F.linear(x, w[i * C : (i + 1) * C], b[i * C : (i + 1) * C]) for i in range(3))
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if isinstance(mask, str):
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(~mask, -1e10)
        att = F.softmax(att, dim=-1)
        y = self.attn_drop(att) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, fast_dropout: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, fast_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            make_dropout(cfg.dropout, fast_dropout),
        )

    def forward(self, x, mask, rope=None, cache=None, layer=0):
        x = x + self.attn(self.ln1(x), mask, rope, cache, layer)
        return x + self.mlp(self.ln2(x))


class KVCache:
    """Preallocated keys/values for all layers, for decoding one token at a time after a prompt."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype=torch.float32):
        shape = (cfg.n_layer, batch, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        # empty, not zeros: only positions < len are ever read
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.len = 0  # positions filled; advanced by GPT.forward after the last layer

    def append(self, layer, k, v):
        end = self.len + k.size(2)
        self.k[layer, :, :, self.len : end] = k
        self.v[layer, :, :, self.len : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, fast_dropout: bool = False):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.variant == "vanilla" else None
        self.drop = make_dropout(cfg.dropout, fast_dropout)
        self.blocks = nn.ModuleList(Block(cfg, fast_dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.variant == "rope":
            cos, sin = rope_table(cfg.block_size, cfg.n_embd // cfg.n_head, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    def use_fast_dropout(self, fast: bool) -> "GPT":
        """Swap every dropout module for the chosen implementation (same p; it holds no weights), e.g. for
        fine-tuning a checkpoint loaded with the default one."""
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (nn.Dropout, FastDropout)):
                    setattr(module, name, make_dropout(child.p, fast).train(child.training))
        return self

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_attention(self, impl: str):
        if impl not in ("math", "sdpa", "reference"):
            raise ValueError(f"attention must be 'math', 'sdpa' or 'reference', got {impl!r}")
        for b in self.blocks:
            b.attn.impl = impl

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def training_flops(self, inputs: int, sq: int) -> float:
        """Model FLOPs of a training step over examples of lengths n_i (inputs = Σn, sq = Σn²).

        Per input token: 6N for the matmuls (forward 2N + backward 4N), N = all parameters except the
        embedding tables (lookups, not matmuls), LM head included; plus 12·L·d·T for attention (QKᵀ and
        AV, 2·T·d each forward per layer, x3 for training), T = the token's example length (PaLM's
        convention: causal masking is not discounted). Padding and packing filler are not counted: this
        is useful work, the same for both layouts, so FLOP/s compare layouts fairly.
        """
        n = self.num_params() - self.tok_emb.weight.numel()
        n -= self.pos_emb.weight.numel() if self.pos_emb is not None else 0
        return 6.0 * n * inputs + 12.0 * self.cfg.n_layer * self.cfg.n_embd * sq

    def forward(self, idx, targets=None, pos=None, doc=None, mask=None, cache=None, reduction="mean"):
        """idx (B, T) -> logits (B, T, V), and the mean loss over non-PAD targets when targets are given.

        pos: (B, T) positions (default 0..T-1, or continuing after the cache); doc: (B, T) example ids
        for packed rows; mask: explicit (B, 1, T, S) bool mask, True = may attend (used by the decoder).
        reduction: "sum" returns the summed token loss instead (data-parallel training weighs shards by it).
        """
        T = idx.size(1)
        if pos is None:
            start = cache.len if cache is not None else 0
            pos = torch.arange(start, start + T, device=idx.device)[None, :]  # (1, T)
        if mask is None:
            if doc is not None:  # block-diagonal causal: a token sees earlier tokens of its own example only
                causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
                mask = (causal & (doc[:, :, None] == doc[:, None, :]))[:, None]  # (B, 1, T, T)
            elif cache is None:
                mask = "causal"
            else:
                raise ValueError("decoding with a cache needs an explicit mask")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)
        rope = None
        if self.cfg.variant == "rope":
            cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (B or 1, T, hs/2)
            rope = (cos[:, None], sin[:, None])  # broadcast over heads
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, rope, cache, i)
        if cache is not None:
            cache.len += T
        logits = self.head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD_ID,
                                   reduction=reduction)
        return logits, loss
