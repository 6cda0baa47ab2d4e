from pathlib import Path

import pytest

# The original data lives beside the checkout (../shared/data/cs224n); it is never committed here.
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cs224n"

# The `demo` model and optimizer without its data options (no mix_qa): for the tests that count steps and
# examples, so an epoch is exactly the corpus's documents, whatever the demo recipe becomes.
PLAIN_RECIPE = str(Path(__file__).resolve().parent / "plain.toml")

needs_real_data = pytest.mark.skipif(
    not (REAL_DATA / "wiki.txt").is_file(),
    reason=f"real CS224N data not found at {REAL_DATA} (get it with `spangpt data download`)",
)


def load_benchmark(name: str):
    """A script under benchmarks/ (not a package) as a module, for tests of its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small synthetic corpus shared by the tests that only read it."""
    from spangpt.synth import write_corpus

    d = tmp_path_factory.mktemp("synth")
    write_corpus(d, people=120, seed=1)
    return d


PLACES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Bern", "Riga"]


@pytest.fixture(scope="module", params=["vanilla", "rope"])
def trained(request):
    """A small model trained for a few seconds on name -> place pairs, so its outputs are not noise:
    -> (model, vocab, questions, answers)."""
    import random

    import torch

    from spangpt.data import finetune_examples
    from spangpt.model import GPT, ModelConfig
    from spangpt.train import TrainConfig, train
    from spangpt.vocab import Vocab

    rng = random.Random(0)
    names = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 20))) for _ in range(64)]
    pairs = [(f"Where was {n} born?", rng.choice(PLACES)) for n in names]
    vocab = Vocab.from_text("".join(q + a for q, a in pairs))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(vocab), block_size=64, n_layer=2, n_head=2, n_embd=32,
                            variant=request.param))
    cfg = TrainConfig(epochs=60, batch_size=32, lr=3e-3, schedule="constant", device="cpu", precision="fp32",
                      progress=False)
    train(model, lambda r: finetune_examples(pairs, vocab, 64), cfg)
    return model, vocab, [q for q, _ in pairs], [a for _, a in pairs]


TINY_RECIPE = """
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 128
dropout = 0.0
[pretrain]
epochs = 1
batch_size = 16
lr = 1e-3
schedule = "constant"
[finetune]
epochs = 1
batch_size = 16
lr = 1e-3
schedule = "constant"
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_dir):
    """A whole `reproduce` output (no pretraining, vanilla, RoPE) of tiny models trained for 3 steps."""
    from spangpt.reproduce import reproduce

    out = tmp_path_factory.mktemp("explore")
    (out / "tiny.toml").write_text(TINY_RECIPE)
    reproduce(synth_dir, out / "run", recipe=str(out / "tiny.toml"), seeds=(0,),
              train_overrides={"max_steps": 3, "device": "cpu"})
    return out / "run"


def pytest_configure(config):
    """Under pytest-xdist each worker is one process of `-n N`: one thread each, so N workers share N cores
    instead of fighting over them (torch would give every worker all the cores)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end test first: on two workers it then runs beside all the others instead of after them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
