"""benchmarks/step_profile.py: it times and profiles real training steps, and finds the matmuls' FLOPs."""
import re

import pytest

from conftest import load_benchmark

TINY = """[model]
n_layer = 1
n_head = 2
n_embd = 32
block_size = 64
[pretrain]
mix_qa = true
batch_size = 16
schedule = "linear"
"""


def test_it_reports_the_step_and_the_matmul_rates(synth_dir, tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    load_benchmark("step_profile").main([str(synth_dir), "--recipe", str(recipe), "--variant", "rope",
                                         "--steps", "2", "--threads", "1", "--precision", "fp32"])
    out = capsys.readouterr().out
    assert re.search(r"tiny, rope, fp32, 1 threads: [\d.]+ s per step, [\d,]+ real tokens/s", out)
    rates = re.findall(r"matmuls \(.*?\): ([\d.]+) GFLOP/s, (\d+)% of the profiled time", out)
    assert len(rates) == 2 and all(float(r) > 0 for r, _ in rates)  # FLOPs found for mm/addmm and for bmm
    assert re.search(r"one large matmul: [\d.]+ GFLOP/s", out)
    assert "aten::mm" in out


def test_too_many_steps_for_an_epoch_is_one_line(synth_dir):
    with pytest.raises(SystemExit, match="one epoch holds .* batches; ask for fewer --steps"):
        load_benchmark("step_profile").main([str(synth_dir), "--steps", "1000"])
