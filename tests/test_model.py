import math
import random

import pytest
import torch

from spangpt.data import pack_batch, pad_batch
from spangpt.model import GPT, FastDropout, ModelConfig, apply_rope, rope_table
from spangpt.vocab import PAD_ID

SMALL = dict(vocab_size=40, block_size=64, n_layer=2, n_head=4, n_embd=32)


def rope_reference(x, t, base=10000.0):
    """Plain loops, straight from the formula: rotate pair (x[2i], x[2i+1]) by t * base^(-2i/d)."""
    d = x.numel()
    out = torch.empty_like(x)
    for i in range(d // 2):
        theta = base ** (-2 * i / d)  # θ_{i+1} = base^(-2((i+1)-1)/d)
        c, s = math.cos(t * theta), math.sin(t * theta)
        out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s
        out[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c
    return out


def test_rope_matches_plain_reference():
    cos, sin = rope_table(16, 8)
    x = torch.randn(1, 1, 16, 8, dtype=torch.float64)
    got = apply_rope(x, cos.double(), sin.double())
    for t in range(16):
        torch.testing.assert_close(got[0, 0, t], rope_reference(x[0, 0, t], t))


def test_rope_gradient_is_the_inverse_rotation():
    """apply_rope rotates through complex numbers: its backward must still be the real rotation's."""
    cos, sin = rope_table(16, 8)
    x = torch.randn(2, 3, 16, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: apply_rope(v, cos.double(), sin.double()), (x,))
    g = torch.randn(2, 3, 16, 8, dtype=torch.float64)
    apply_rope(x, cos.double(), sin.double()).backward(g)
    # a rotation's transpose is the rotation by minus the angle
    torch.testing.assert_close(x.grad, apply_rope(g, cos.double(), -sin.double()))


def test_rope_under_torch_compile_is_the_real_rotation_with_the_same_values_and_gradient():
    """Inductor cannot generate complex code, so a compiled model rotates in the real form: no complex op in
    the captured graph, and the values and gradient of the eager (complex) rotation."""
    cos, sin = rope_table(16, 8)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(apply_rope, backend=backend, fullgraph=True)
    x = torch.randn(2, 3, 16, 8, requires_grad=True)
    g = torch.randn(2, 3, 16, 8)
    eager = apply_rope(x, cos, sin)
    (grad_eager,) = torch.autograd.grad(eager, x, g)
    got = compiled(x, cos, sin)
    (grad_got,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(grad_got, grad_eager)
    ops = {str(n.target) for gm in graphs for n in gm.graph.nodes if n.op in ("call_function", "call_method")}
    assert graphs and not any("complex" in op for op in ops), ops


def test_rope_on_strided_bf16_views_of_qkv_returns_bf16_rotations():
    """As in attention under autocast: q and k are strided bf16 views of one qkv tensor."""
    cos, sin = rope_table(16, 8)
    qkv = torch.randn(2, 16, 3, 4, 8).to(torch.bfloat16)
    _, k, _ = qkv.permute(2, 0, 3, 1, 4)  # (B, nh, T, hs), not contiguous
    got = apply_rope(k, cos, sin)
    assert got.dtype == torch.bfloat16
    want = torch.stack([rope_reference(k[b, h, t].double(), t) for b in range(2) for h in range(4) for t in range(16)])
    torch.testing.assert_close(got.double().reshape(-1, 8), want.to(torch.bfloat16).double(), rtol=0, atol=2e-2)


def test_rope_preserves_norm_and_depends_only_on_offset():
    cos, sin = rope_table(64, 16)
    q, k = torch.randn(16), torch.randn(16)

    def rot(v, t):
        return apply_rope(v.view(1, 1, 1, 16), cos[t : t + 1], sin[t : t + 1]).flatten()

    for t in (0, 5, 63):
        torch.testing.assert_close(rot(q, t).norm(), q.norm())
    # <R_m q, R_n k> depends on n - m only
    for m, n in ((0, 7), (10, 17), (50, 57)):
        torch.testing.assert_close(rot(q, m) @ rot(k, n), rot(q, 0) @ rot(k, 7), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rot(q, 0) @ rot(k, 7), rot(q, 0) @ rot(k, 8))


def test_rope_model_has_no_position_table_and_really_rotates():
    torch.manual_seed(0)
    rope, vanilla = GPT(ModelConfig(**SMALL, variant="rope")), GPT(ModelConfig(**SMALL, variant="vanilla"))
    assert rope.pos_emb is None and vanilla.pos_emb is not None
    assert vanilla.num_params() - rope.num_params() == SMALL["block_size"] * SMALL["n_embd"]
    # Without positions, one layer of causal attention is blind to order: swapping two earlier tokens
    # cannot change the last position's output. Only a working rotation of q and k can make it change.
    rope = GPT(ModelConfig(**{**SMALL, "n_layer": 1}, variant="rope")).eval()
    a, b = torch.tensor([[3, 9, 4, 7, 5]]), torch.tensor([[9, 3, 4, 7, 5]])
    assert not torch.allclose(rope(a)[0][0, -1], rope(b)[0][0, -1], atol=1e-4)
    rope.rope_cos.fill_(1.0)  # all angles 0: rotation off
    rope.rope_sin.fill_(0.0)
    torch.testing.assert_close(rope(a)[0][0, -1], rope(b)[0][0, -1])


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
def test_causal_future_tokens_do_not_change_the_past(variant):
    torch.manual_seed(0)
    m = GPT(ModelConfig(**SMALL, variant=variant)).eval()
    x = torch.randint(2, 40, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(2, 40, (2, 8))
    torch.testing.assert_close(m(x)[0][:, :12], m(y)[0][:, :12])


def _random_examples(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(2, 60)
        x = [rng.randrange(2, 40) for _ in range(k)]
        y = [rng.choice([PAD_ID] + [rng.randrange(2, 40)] * 3) for _ in range(k)]
        out.append((x, y))
    return out


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
@pytest.mark.parametrize("attention", ["math", "sdpa"])
@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_attention_matches_the_original_computation(variant, attention, layout):
    """The fast attention paths give the logits and gradients of the original's op-for-op attention
    ("reference": separate q/k/v projections, -1e10 masked_fill), which `spangpt bench` times against."""
    torch.manual_seed(0)
    ref = GPT(ModelConfig(**SMALL, variant=variant, dropout=0.0)).train()
    ref.set_attention("reference")
    fast = GPT(ModelConfig(**SMALL, variant=variant, dropout=0.0)).train()
    fast.load_state_dict(ref.state_dict())
    fast.set_attention(attention)
    b = (pad_batch if layout == "padded" else pack_batch)(_random_examples(12), 64)
    outs = []
    for m in (ref, fast):
        logits, loss = m(b.x, b.y, pos=b.pos, doc=b.doc)
        loss.backward()
        outs.append((logits, [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for g_fast, g_ref in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-6)


def test_the_reference_attention_refuses_a_kv_cache():
    """It would attend to the new token only, silently: decoding with a cache needs math or sdpa."""
    from spangpt.generate import greedy_batched

    m = GPT(ModelConfig(**SMALL)).eval()
    m.set_attention("reference")
    with pytest.raises(ValueError, match="the reference attention has no KV cache"):
        greedy_batched(m, [[2, 3, 4]], max_new=2)


@pytest.mark.parametrize("variant", ["vanilla", "rope"])
@pytest.mark.parametrize("attention", ["math", "sdpa"])
def test_packed_equals_padded(variant, attention):
    """Same examples, padded or packed: same logits per example and same mean loss (fp32, no dropout)."""
    torch.manual_seed(0)
    m = GPT(ModelConfig(**SMALL, variant=variant)).eval()
    m.set_attention(attention)
    ex = _random_examples(12)
    padded, packed = pad_batch(ex, 64), pack_batch(ex, 64)
    assert packed.x.size(0) < padded.x.size(0)
    lp, loss_pad = m(padded.x, padded.y)
    lk, loss_pack = m(packed.x, packed.y, pos=packed.pos, doc=packed.doc)
    torch.testing.assert_close(loss_pack, loss_pad, rtol=1e-5, atol=1e-5)
    # per-example logits: find each example in the packed rows
    for r in range(packed.x.size(0)):
        for d in packed.doc[r].unique().tolist():
            if d < 0:
                continue
            cols = (packed.doc[r] == d).nonzero().flatten()
            row = [i for i, (x, _) in enumerate(ex) if x == packed.x[r, cols].tolist()][0]
            torch.testing.assert_close(lk[r, cols], lp[row, : len(cols)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_fast_dropout_keeps_probability_and_expectation(p):
    torch.manual_seed(0)
    d = FastDropout(p).train()
    assert abs(d.keep / 65536 - (1 - p)) <= 2**-17  # the keep probability it aims at is right
    x = torch.ones(4_000_001)  # not a multiple of 4: the last 64-bit draw is only partly used
    y = d(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.numel())  # 5 sigma
    assert abs(y.mean().item() - 1.0) < 0.003  # unbiased: E[dropout(x)] == x
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)), rtol=1e-4, atol=0)
    assert torch.equal(d.eval()(x), x)


def test_fast_dropout_masks_are_independent_across_positions_and_calls():
    # four int16 masks come from each 64-bit draw: neighbours must not be correlated
    torch.manual_seed(0)
    d = FastDropout(0.5).train()
    a = d(torch.ones(1_000_000)) != 0
    b = d(torch.ones(1_000_000)) != 0
    for u, v in [(a[:-1], a[1:]), (a[:-4], a[4:]), (a, b)]:
        both = (u & v).float().mean().item()
        assert abs(both - 0.25) < 0.003  # P(keep, keep) = P(keep)^2 when independent


def test_fast_dropout_keeps_dtype_and_drops_everything_at_p1():
    d = FastDropout(0.1).train()
    assert d(torch.ones(8, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert torch.equal(FastDropout(1.0).train()(torch.ones(8)), torch.zeros(8))


@pytest.mark.parametrize("p", [1e-6, 2.0 ** -18])
def test_fast_dropout_below_its_resolution_keeps_everything(p):
    """p < 2^-17 rounds to keeping all 2^16 of 2^16: that must mean no dropout, not an all-zero mask."""
    x = torch.randn(4096)
    assert torch.equal(FastDropout(p).train()(x), x)


def test_fast_dropout_gradient_is_the_mask():
    torch.manual_seed(1)
    d = FastDropout(0.25).train()
    x = torch.randn(1000, requires_grad=True)
    y = d(x)
    y.sum().backward()
    scale = y.detach()[y != 0] / x.detach()[y != 0]
    torch.testing.assert_close(x.grad[y != 0], scale)
    assert torch.all(x.grad[y == 0] == 0)


def test_training_flops_hand_computed():
    cfg = ModelConfig(**SMALL)  # V=40, T=64, L=2, d=32
    m = GPT(cfg)
    d, L, V = 32, 2, 40
    per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    n = L * per_block + 2 * d + d * V  # blocks, final LayerNorm, head (no bias); no embeddings
    assert m.training_flops(10, 30) == 6 * n * 10 + 12 * L * d * 30


def test_use_fast_dropout_gives_the_model_built_with_it_and_keeps_the_weights():
    cfg = ModelConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.2)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]
    torch.manual_seed(0)
    plain = GPT(cfg)
    weights = {k: v.clone() for k, v in plain.state_dict().items()}
    assert "FastDropout" not in kinds(plain)
    assert kinds(plain.use_fast_dropout(True)) == kinds(GPT(cfg, fast_dropout=True))
    assert all(m.p == 0.2 for m in plain.modules() if isinstance(m, FastDropout))
    assert all(torch.equal(v, weights[k]) for k, v in plain.state_dict().items())
    assert kinds(plain.use_fast_dropout(False)) == kinds(GPT(cfg))


def test_use_fast_dropout_keeps_an_eval_model_deterministic():
    cfg = ModelConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.5)
    m = GPT(cfg).eval()
    x = torch.randint(0, 20, (2, 8))
    before = m(x)[0]
    assert torch.equal(m.use_fast_dropout(True)(x)[0], before)
