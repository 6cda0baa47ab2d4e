"""run.sh: the original assignment's targets, as thin calls of the CLI into OUT, and its help. It runs the
.venv that `./run.sh test` made (and skips without one: the targets would build it first)."""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max-steps", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--device", "cpu"]

pytestmark = pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "spangpt").exists() or
                                not (ROOT / ".venv" / ".installed").exists(), reason="no .venv made by run.sh")


def run_sh(target, *args, env):
    return subprocess.run(["bash", str(ROOT / "run.sh"), target, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_original_targets_chain_through_out_and_say_what_is_missing(synth_dir, tmp_path):
    env = {**os.environ, "DATA": str(synth_dir), "OUT": str(tmp_path), "RECIPE": "demo", "OMP_NUM_THREADS": "1"}
    r = run_sh("rope_finetune_with_pretrain", *TINY, env=env)
    assert r.returncode == 1 and r.stderr.strip() == \
        f"run.sh: {tmp_path}/rope.pretrain.safetensors is missing: run './run.sh rope_pretrain' first"
    r = run_sh("rope_pretrain", *TINY, env=env)
    assert r.returncode == 0, r.stderr
    r = run_sh("rope_finetune_with_pretrain", "--max-steps", "2", "--device", "cpu", env=env)  # its model's size
    assert r.returncode == 0, r.stderr
    r = run_sh("rope_eval_dev_with_pretrain", env=env)
    assert r.returncode == 0, r.stderr
    dev = len((synth_dir / "birth_dev.tsv").read_text().splitlines())
    assert re.fullmatch(rf"Correct: \d+ out of {dev}: [\d.]+%", r.stdout.splitlines()[-1]), r.stdout
    assert len((tmp_path / "rope.pretrain.dev.predictions").read_text().splitlines()) == dev
    assert {p.name for p in tmp_path.glob("*.safetensors")} == {"rope.pretrain.safetensors",
                                                                "rope.finetune.safetensors"}


def test_help_lists_every_target_and_an_unknown_one_is_an_error():
    r = run_sh("help", env=os.environ)
    assert r.returncode == 0 and "RECIPE (paper), PYTHON (python3)." in r.stdout
    assert "  vanilla_finetune_without_pretrain" in r.stdout and "  rope_eval_test_with_pretrain" in r.stdout
    r = run_sh("rope_pretrian", env=os.environ)
    assert r.returncode == 2 and "unknown target 'rope_pretrian'" in r.stderr
