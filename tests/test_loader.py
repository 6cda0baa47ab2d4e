import random

import pytest
import torch

from spangpt import loader
from spangpt.data import make_batch, pad_rows


def _items(pack: bool, n: int = 5):
    rng = random.Random(0)
    items = []
    for k in range(n):
        examples = []
        for _ in range(rng.randint(2, 9)):
            x = [rng.randint(2, 60) for _ in range(rng.randint(2, 15))]
            examples.append((x, x[1:] + [0]))
        epoch = k // 3  # two epochs in one run of batches
        items.append((epoch, k, ("state", epoch), pad_rows(make_batch(examples, 16, pack), 4 if k % 2 else 0),
                      {"stats": k}))
    return items


@pytest.mark.parametrize("pack", [True, False])
def test_a_run_of_batches_travels_as_one_tensor_and_comes_back_the_same(pack):
    items = _items(pack)
    meta, states, data = loader.bundle(items)
    assert data.dtype == torch.int32 and data.size(0) == (4 if pack else 2)
    assert states == {0: ("state", 0), 1: ("state", 1)}  # each epoch's RNG state once
    back = list(loader.unbundle((meta, states, data)))
    assert len(back) == len(items)
    for (e, i, rng, b, stats), (e2, i2, rng2, b2, stats2) in zip(items, back):
        assert (e, i, rng, stats) == (e2, i2, rng2, stats2)
        assert (b.n_examples, b.sum_len, b.sum_len_sq) == (b2.n_examples, b2.sum_len, b2.sum_len_sq)
        for t, t2 in zip((b.x, b.y, b.pos, b.doc), (b2.x, b2.y, b2.pos, b2.doc)):
            assert (t is None and t2 is None) or torch.equal(t, t2.long())
        on_device = b2.to("cpu")
        assert on_device.x.dtype == on_device.y.dtype == torch.long
