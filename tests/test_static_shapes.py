"""The pieces of a graph-ready training step, on the CPU: batches padded to a few static shapes train the
same as the packed ones, and the model compiles as one graph (fullgraph=True) that gives the eager weights."""
import random

import pytest
import torch

from spangpt.data import make_batch, pad_rows
from spangpt.model import GPT, ModelConfig
from spangpt.train import TrainConfig, make_optimizer, train_step

BLOCK = 32


def _examples(rng: random.Random, n: int):
    out = []
    for _ in range(n):
        x = [rng.randint(2, 29) for _ in range(rng.randint(3, BLOCK - 1))]
        y = [rng.choice([0, t]) for t in x[1:]] + [0]  # some targets PAD, as in span corruption
        out.append((x, y))
    return out


def _model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=30, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, dropout=dropout))


@pytest.mark.parametrize("pack", [True, False])
def test_empty_rows_change_neither_the_loss_nor_the_gradients(pack):
    batch = make_batch(_examples(random.Random(0), 12), BLOCK, pack)
    padded = pad_rows(batch, 16)
    assert padded.x.size(0) % 16 == 0 and padded.x.size(0) > batch.x.size(0)
    assert torch.equal(padded.x[: batch.x.size(0)], batch.x) and (padded.y[batch.x.size(0):] == 0).all()
    grads = []
    for b in (batch, padded):
        model = _model()
        _, loss = model(b.x, b.y, pos=b.pos, doc=b.doc)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), (l1, g1) = grads
    assert torch.allclose(l0, l1, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1))


def test_pad_rows_keeps_a_batch_already_at_a_multiple_and_0_means_off():
    batch = make_batch(_examples(random.Random(1), 5), BLOCK, True)
    assert pad_rows(batch, 0) is batch
    assert pad_rows(batch, batch.x.size(0)) is batch
    assert pad_rows(pad_rows(batch, 4), 4).x.shape == pad_rows(batch, 4).x.shape


def test_the_compiled_step_is_one_graph_and_gives_the_eager_weights():
    """fullgraph=True fails on any graph break: what a CUDA graph needs. aot_eager runs the captured forward
    and backward graphs without code generation, so the test needs no compiler and stays fast."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    rng = random.Random(2)
    batches = [pad_rows(make_batch(_examples(rng, rng.randint(6, 20)), BLOCK, True), 8) for _ in range(6)]
    shapes = {tuple(b.x.shape) for b in batches}
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    weights = []
    counter = CompileCounterWithBackend("aot_eager")
    for compiled in (False, True):
        model = _model(seed=3)
        opt = make_optimizer(model, cfg, torch.device("cpu"))
        forward = torch.compile(model, fullgraph=True, backend=counter, dynamic=False) if compiled else None
        torch.manual_seed(0)
        for b in batches:
            train_step(model, opt, b, torch.autocast("cpu", enabled=False), cfg.grad_clip, forward=forward)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*weights))
    assert counter.frame_count == len(shapes) <= 3  # one graph per static shape, compiled once each
