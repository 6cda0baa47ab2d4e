"""benchmarks/rope_speed.py: the old rotation it times must compute what apply_rope computes."""
import torch

from spangpt.model import apply_rope, rope_table
from conftest import load_benchmark


def test_old_real_form_rotates_as_apply_rope():
    bench = load_benchmark("rope_speed")
    cos, sin = rope_table(16, 8)
    pos = torch.randint(0, 16, (2, 16))
    c, s = cos[pos][:, None], sin[pos][:, None]  # per-row positions, as in packed batches
    x = torch.randn(2, 4, 16, 8)
    torch.testing.assert_close(bench.real_rope(x, c, s), apply_rope(x, c, s))


def test_it_prints_the_three_contenders(capsys):
    load_benchmark("rope_speed").main(["--steps", "1", "--rounds", "1", "--batch", "2", "--precision", "fp32"])
    out = capsys.readouterr().out
    for name in ("vanilla", "rope ", "rope, real form", "rope speedup over the real form:"):
        assert name in out
