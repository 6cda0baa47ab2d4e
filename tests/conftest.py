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
