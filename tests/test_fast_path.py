"""The fast path's defaults (device.fast_path): on one CUDA device a compiled, graph-replayed step with padded
rows and batch workers; on a CPU none of it; what a user sets wins. And how train() takes it: a compile that
"auto" chose and that fails falls back to the eager model with a warning and the same weights; asked for by
name, it is the run's error. Everything runs on the CPU: the CUDA choices are made from a torch.device."""
import dataclasses
import random
import re

import pytest
import torch

from spangpt import device as device_mod
from spangpt import train as train_mod
from spangpt.cli import build_parser
from conftest import REAL_DATA, needs_real_data
from spangpt.config import data_options, load_recipe, train_config
from spangpt.data import load_wiki, pretrain_example
from spangpt.device import fast_path
from spangpt.errors import BadValue
from spangpt.model import GPT, ModelConfig
from spangpt.stages import qa_examples
from spangpt.train import TrainConfig, train
from torch._inductor.exc import InductorError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BLOCK = 16


def chosen(cfg):
    return cfg.compile, cfg.compile_mode, cfg.row_multiple, cfg.workers


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process has n threads (its share of the cores)."""
    def set_cores(n):
        monkeypatch.setattr(device_mod.torch, "get_num_threads", lambda: n)
    return set_cores


def test_auto_is_the_fast_path_on_one_cuda_device_and_nothing_on_a_cpu(cores):
    cores(16)
    assert chosen(fast_path(TrainConfig(), CUDA)) == (True, "reduce-overhead", 32, 4)
    assert chosen(fast_path(TrainConfig(), CPU)) == (False, "default", 0, 0)
    assert chosen(fast_path(TrainConfig(), torch.device("mps"))) == (False, "default", 0, 0)
    # under torchrun: the workers, not the compile (not measured with DDP), so no padding either
    assert chosen(fast_path(TrainConfig(), CUDA, world=2)) == (False, "default", 0, 4)
    # a compile asked for under torchrun: plain inductor, no CUDA graphs; rows padded for fewer compilations
    assert chosen(fast_path(TrainConfig(compile=True), CUDA, world=2)) == (True, "default", 32, 4)


def test_auto_compiles_only_a_run_long_enough_to_pay_for_it():
    short, long = device_mod.COMPILE_MIN_STEPS - 1, device_mod.COMPILE_MIN_STEPS
    assert fast_path(TrainConfig(), CUDA, steps=short).compile is False
    assert fast_path(TrainConfig(), CUDA, steps=long).compile is True
    assert fast_path(TrainConfig(compile=True), CUDA, steps=1).compile is True
    assert fast_path(TrainConfig(), CUDA, steps=short).row_multiple == 0  # padding serves only a compiled step
    assert fast_path(TrainConfig(), CUDA, steps=short).workers >= 1


@pytest.mark.parametrize("n, workers", [(1, 1), (2, 1), (7, 1), (8, 2), (12, 3), (16, 4), (128, 4)])
def test_cuda_workers_are_one_per_four_threads_from_one_to_four(cores, n, workers):
    cores(n)
    assert fast_path(TrainConfig(), CUDA).workers == workers


@needs_real_data
@pytest.mark.parametrize("recipe", ["best", "paper"])
def test_the_recipes_padded_batches_take_one_shape(recipe):
    """A second batch shape costs a second compilation (torch.compile then recompiles for dynamic shapes) and
    a second graph: CUDA_ROW_MULTIPLE is chosen so that every batch of the recipes' pretraining, the short
    last one of each epoch included, pads to the same rows. Two epochs as train() lays them out."""
    rec = load_recipe(recipe)
    mix_qa, how = data_options(rec, "vanilla")
    docs, vocab = load_wiki(REAL_DATA / "wiki.txt")
    qa = qa_examples(REAL_DATA / "birth_places_train.tsv", vocab, 128) if mix_qa else []
    def draw(rng):
        return [pretrain_example(d, vocab, 128, rng, how) for d in docs] + qa
    cfg = fast_path(train_config(rec, "pretrain", {"epochs": 2}, documents=len(docs), block_size=128), CUDA)
    rng = random.Random(0)
    first = draw(rng)
    batches = list(train_mod._epochs(draw, first, rng, rng.getstate(), cfg, 128, 0, 0, 0, 1))
    assert len(batches) > 2 * len(first) // cfg.batch_size
    packed_rows = {b.x.shape[0] for _, _, _, b, _ in train_mod._epochs(
        draw, first, random.Random(1), None, dataclasses.replace(cfg, row_multiple=0), 128, 0, 0, 0, 1)}
    assert len(packed_rows) > 3  # unpadded, the rows vary from batch to batch
    shapes = {tuple(b.x.shape) for _, _, _, b, _ in batches}
    assert len(shapes) == 1, shapes
    assert shapes.pop()[0] % cfg.row_multiple == 0


def test_what_a_user_sets_wins_over_the_device(cores):
    cores(16)
    mine = TrainConfig(compile=False, compile_mode="default", row_multiple=0, workers=0)
    assert chosen(fast_path(mine, CUDA)) == (False, "default", 0, 0)
    mine = TrainConfig(compile=True, compile_mode="max-autotune", row_multiple=16, workers=2)
    assert chosen(fast_path(mine, CPU)) == (True, "max-autotune", 16, 2)
    assert chosen(fast_path(TrainConfig(compile=True), CPU)) == (True, "default", 0, 0)


def test_auto_from_the_command_line_and_a_recipe_value(tmp_path):
    args = build_parser().parse_args(["pretrain", "--variant", "rope", "--data", "d", "--out", "o",
                                      "--compile", "auto", "--row-multiple", "auto", "--compile-mode", "auto"])
    assert (args.compile, args.row_multiple, args.compile_mode) == ("auto", "auto", "auto")
    path = tmp_path / "r.toml"
    path.write_text("[pretrain]\ncompile = false\nrow_multiple = 0\nschedule = 'constant'\n"
                    "[pretrain.rope]\ncompile = 'auto'\nworkers = 'auto'\n")
    r = load_recipe(str(path))
    assert chosen(train_config(r, "pretrain", {}, documents=10, block_size=BLOCK))[:3] == (False, "auto", 0)
    cfg = train_config(r, "pretrain", {"compile": "auto", "row_multiple": "auto"}, documents=10, block_size=BLOCK)
    assert (cfg.compile, cfg.row_multiple) == (None, None)
    # a variant's table gives the choice back to the device
    cfg = train_config(r, "pretrain", {}, documents=10, block_size=BLOCK, variant="rope")
    assert (cfg.compile, cfg.row_multiple, cfg.workers) == (None, 0, None)


@pytest.mark.parametrize("kw, message", [
    ({"compile": "yes"}, "compile must be true or false"),
    ({"row_multiple": -1}, "row_multiple must be a whole number from 0 to 1024"),
    ({"row_multiple": 2.5}, "row_multiple must be a whole number from 0 to 1024"),
    ({"compile_mode": "fast"}, "compile_mode must be one of auto, default, reduce-overhead, max-autotune"),
])
def test_bad_values_name_the_field(kw, message):
    with pytest.raises(BadValue) as err:
        TrainConfig(**kw)
    assert message in str(err.value)


# ---- train() with the fast path's compile, on the CPU

def draw(rng: random.Random):
    out = []
    for _ in range(24):
        x = [rng.randint(2, 19) for _ in range(rng.randint(3, BLOCK - 1))]
        out.append((x, x[1:] + [0]))
    return out


def run(**cfg):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=20, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    res = train(model, draw, TrainConfig(epochs=2, batch_size=8, lr=1e-2, device="cpu", precision="fp32",
                                         progress=False, **cfg))
    return model, res


@pytest.fixture
def compile_chosen(monkeypatch):
    """The device's choice turned to compile ("reduce-overhead") on the CPU, and torch.compile replaced by
    a stand-in: `failing` raises on its first call (as a missing compiler does), `calls` counts the calls that
    reached it, `marks` the CUDA-graph step marks."""
    seen = {"calls": 0, "marks": 0, "failing": False}

    def choose(cfg, device, world=1, steps=None):
        made = fast_path(cfg, device, world, steps)
        return made if cfg.compile is False else \
            type(made)(**{**made.to_dict(), "compile": True, "compile_mode": "reduce-overhead"})

    def fake_compile(model, mode="default"):
        def compiled(*args, **kw):
            seen["calls"] += 1
            if seen["failing"] == "compiler":  # what inductor raises without a working compiler
                raise InductorError(RuntimeError("Cannot find a working triton installation\nmore lines"), None)
            if seen["failing"]:
                raise RuntimeError("CUDA out of memory")  # not the compiler's failure
            return model(*args, **kw)
        return compiled

    monkeypatch.setattr(train_mod, "fast_path", choose)
    monkeypatch.setattr(train_mod.torch, "compile", fake_compile)
    monkeypatch.setattr(train_mod.torch.compiler, "cudagraph_mark_step_begin",
                        lambda: seen.__setitem__("marks", seen["marks"] + 1))
    return seen


def test_each_step_goes_through_the_compiled_model_and_marks_a_new_graph_replay(compile_chosen):
    _, res = run()
    assert res.steps == 6 and compile_chosen["calls"] == 6 and compile_chosen["marks"] == 6
    assert res.path == {"device": "cpu", "precision": "fp32", "compile": True, "compile_mode": "reduce-overhead",
                        "row_multiple": 0, "workers": 0, "compile_failed": False}


def test_a_failing_auto_compile_falls_back_to_the_eager_model_with_the_same_weights(compile_chosen, capsys):
    eager, _ = run(compile=False)
    assert compile_chosen["calls"] == 0
    compile_chosen["failing"] = "compiler"
    fallen, res = run()
    err = capsys.readouterr().err
    assert res.steps == 6 and compile_chosen["calls"] == 1  # tried once, then never again
    assert res.path["compile"] is False and res.path["compile_failed"] is True
    lines = [line for line in err.splitlines() if "warning" in line]
    assert lines == ["spangpt: warning: train: torch.compile failed (InductorError: RuntimeError: Cannot find a "
                     "working triton installation); training on without it (--compile false skips it, --compile "
                     "true makes it an error)"]
    for a, b in zip(eager.parameters(), fallen.parameters()):
        assert torch.equal(a, b)


def test_a_compile_asked_for_by_name_fails_the_run(compile_chosen):
    compile_chosen["failing"] = "compiler"
    with pytest.raises(InductorError, match="triton"):
        run(compile=True)


def test_an_error_that_is_not_the_compilers_is_the_runs_error_under_auto_too(compile_chosen):
    compile_chosen["failing"] = "other"
    with pytest.raises(RuntimeError, match="out of memory"):
        run()
    assert compile_chosen["calls"] == 1


def test_train_asks_the_device_with_the_runs_own_step_count(monkeypatch):
    asked = []
    monkeypatch.setattr(train_mod, "fast_path", lambda cfg, device, world=1, steps=None:
                        asked.append((device.type, world, steps)) or fast_path(cfg, device, world, steps))
    run()
    run(max_steps=4)
    assert asked == [("cpu", 1, 6), ("cpu", 1, 4)]


# ---- a device this torch cannot use

@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a CUDA device")
@pytest.mark.parametrize("command", ["pretrain", "evaluate", "ask"])
def test_a_cuda_device_on_a_torch_without_one_is_one_line_and_exit_2(command, synth_dir, run_dir, tmp_path, capsys):
    from spangpt.cli import main

    ckpt = str(run_dir / "vanilla" / "seed0" / "pretrain.safetensors")
    args = {"pretrain": ["pretrain", "--variant", "vanilla", "--data", str(synth_dir), "--out", str(tmp_path / "p"),
                         "--recipe", "demo", "--device", "cuda"],
            "evaluate": ["evaluate", ckpt, "--input", str(synth_dir / "birth_dev.tsv"), "--out", str(tmp_path / "d"),
                         "--device", "cuda:1"],
            "ask": ["ask", ckpt, "Where was Ada born?", "--device", "cuda"]}[command]
    assert main(args) == 2
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spangpt: error: --device cuda") and \
        f"this torch ({torch.__version__}) sees no CUDA device" in lines[0], out.err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_cuda_index_past_the_devices_is_one_line(monkeypatch):
    monkeypatch.setattr(device_mod.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_mod.torch.cuda, "device_count", lambda: 2)
    assert device_mod.pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(Exception, match=r"^--device cuda:2: there are 2 CUDA devices \(cuda:0 to cuda:1\)$"):
        device_mod.pick_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "cuda:-1", "cuda:x", "meta", "xpu"])
def test_a_word_that_names_no_device_is_one_line(name):
    from spangpt.errors import UserError

    with pytest.raises(UserError, match=rf"^--device {re.escape(name)}: not a device name"):
        device_mod.pick_device(name)
