"""benchmarks/gpu_speed.sh is run on a GPU rarely and briefly: its plumbing is checked here, on the CPU, with a
tiny recipe and the fast path's CPU-side options (no compilation), so a GPU call is not spent on a typo."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import TINY_RECIPE

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_speed_runs_end_to_end_and_the_fast_path_keeps_the_loss(synth_dir, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.replace("epochs = 1\nbatch_size = 16\nlr = 1e-3\nschedule = \"constant\"",
                                          "epochs = 3\nbatch_size = 16\nlr = 1e-3\nschedule = \"constant\"", 1))
    env = {**os.environ, "RECIPES": str(recipe), "TABLE_RECIPE": str(recipe), "SEEDS": "0", "LOG_INTERVAL": "5",
           "FAST": "--row-multiple 8 --workers 2", "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"),
           "CUDA_VISIBLE_DEVICES": ""}  # the CPU, even on a machine with a GPU
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_speed.sh"), str(synth_dir), str(tmp_path / "out"),
                        "10"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^tiny-(eager|fast)\s.*\s(\S+)$", r.stdout, re.M)}
    assert set(rows) == {"eager", "fast"} and rows["eager"] == rows["fast"] != "-"  # the loss at step 10
    assert "reproduce --recipe" in r.stdout and "| RoPE |" in r.stdout
    assert "CUDA resume check: skipped (no CUDA device)" in r.stdout
    assert re.search(r"^\| vanilla/seed0 \| \d+ \| \d+ \|", r.stdout, re.M), r.stdout  # the error table's row
    again = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_speed.sh"), str(synth_dir), str(tmp_path / "out"),
                            "10"], capture_output=True, text=True, env={**env, "CHECKS": "0"}, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr  # the same OUT again: its runs trained again
    assert "tiny-eager:" in again.stdout and "tiny-fast:" in again.stdout


def test_gpu_reproduce_passes_its_options_to_reproduce(tmp_path):
    """OPTS reaches `spangpt reproduce` word by word (the eager step the docs' H200 rows timed)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'argv'}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "RECIPE": "best", "JOBS": "3",
           "OPTS": "--compile false --row-multiple 0 --workers 1"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_reproduce.sh"), "DATA", str(tmp_path / "out"), "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    argv = (tmp_path / "argv").read_text().split("\n")[:-1]
    assert argv == ["-m", "spangpt", "reproduce", "--data", "DATA", "--out", str(tmp_path / "out"), "--recipe",
                    "best", "--jobs", "3", "--seeds", "0", "--compile", "false", "--row-multiple", "0",
                    "--workers", "1"]
