import re

from conftest import load_benchmark


def test_data_speed_times_both_sides_on_the_same_batches(synth_dir, capsys):
    mod = load_benchmark("data_speed")
    mod.main([str(synth_dir), "--recipe", "best", "--epochs", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "recipe best:" in out and "focus=0.5" in out and "QA pairs" in out
    m = re.search(r"reference ([\d.]+), spangpt ([\d.]+), ([\d.]+)x", out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0


def test_data_speed_times_the_numpy_sampler(synth_dir, capsys):
    mod = load_benchmark("data_speed")
    mod.main([str(synth_dir), "--recipe", "best", "--epochs", "1", "--repeats", "1", "--sampler", "numpy"])
    assert "sampler='numpy'" in capsys.readouterr().out
