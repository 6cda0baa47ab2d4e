"""The NumPy epoch sampler against data.span_corruption: valid examples of their lines, the same distribution
(span lengths, masked fraction, how much of a line is shown, the focus share), deterministic per seed."""
import random
import statistics
from collections import Counter

import pytest

from spangpt.corpus import focus_runs
from spangpt.data import Corruption, load_wiki, span_corruption
from spangpt.errors import UserError
from spangpt.sampler import EpochSampler
from spangpt.vocab import MASK, PAD


@pytest.fixture(scope="module")
def corpus(synth_dir):
    return load_wiki(synth_dir / "wiki.txt")


def _strings(smp, vocab, rng, epochs):
    """The examples as strings, prefix⁇suffix⁇masked⁇, with their lines."""
    out = []
    for _ in range(epochs):
        for d, (x, y) in zip(smp.docs, smp.draw(rng)):
            out.append((d, vocab.decode(x + [y[-1]]).rstrip(PAD)))
    return out


def _sampler(docs, vocab, **kw):
    smp = EpochSampler(docs, vocab, 128, Corruption(sampler="numpy", **kw))
    smp.docs = docs
    return smp


def test_every_plain_example_is_a_span_corruption_of_its_line(corpus):
    docs, vocab = corpus
    for line, s in _strings(_sampler(docs, vocab), vocab, random.Random(0), 3):
        prefix, suffix, masked, end = s.split(MASK)
        shown = prefix + masked + suffix
        assert end == "" and masked and line.startswith(shown)
        assert min(4, len(line)) <= len(shown) <= 96
        assert len(masked) <= max(1, len(shown) // 2 - 1)


def test_every_focus_example_masks_a_run_after_the_name(corpus):
    docs, vocab = corpus
    for line, s in _strings(_sampler(docs, vocab, focus=1.0), vocab, random.Random(0), 2):
        head, runs = focus_runs(line)
        prefix, suffix, masked, _ = s.split(MASK)
        if not runs:
            continue
        assert prefix.startswith(line[:head]) and masked in {line[a:b] for a, b in runs}
        assert len(prefix[head:].split()) <= 4  # at most four words before the run
        assert (prefix[head:] + masked + suffix) in line


def _stats(pairs):
    parts = [s.split(MASK) for _, s in pairs]
    shown = [len(p[0]) + len(p[1]) + len(p[2]) for p in parts]
    return {"masked": statistics.mean(len(p[2]) for p in parts), "shown": statistics.mean(shown),
            "masked share": statistics.mean(len(p[2]) / n for p, n in zip(parts, shown)),
            "lengths": Counter(min(len(p[2]), 20) for p in parts)}


@pytest.mark.parametrize("focus", [0.0, 0.5])
def test_the_same_distribution_as_the_python_sampler(corpus, focus):
    docs, vocab = corpus
    epochs = 200  # ~24,000 examples a side: the means agree to ~1%, their noise
    numpy_ = _stats(_strings(_sampler(docs, vocab, focus=focus), vocab, random.Random(1), epochs))
    rng, how = random.Random(2), Corruption(focus=focus)
    python = _stats([(d, span_corruption(d, 128, rng, how)) for _ in range(epochs) for d in docs])
    for key in ("masked", "shown", "masked share"):
        assert numpy_[key] == pytest.approx(python[key], rel=0.04), key
    n = sum(python["lengths"].values())
    tv = sum(abs(numpy_["lengths"][k] - python["lengths"][k]) for k in set(python["lengths"]) | set(numpy_["lengths"]))
    assert tv / (2 * n) < 0.03  # total variation between the masked-length histograms


def test_deterministic_per_seed_and_examples_shaped_as_pretrain_examples(corpus):
    docs, vocab = corpus
    smp = _sampler(docs, vocab, focus=0.5)
    a, b, c = smp.draw(random.Random(5)), smp.draw(random.Random(5)), smp.draw(random.Random(6))
    assert a == b and a != c
    for x, y in a:
        assert len(x) == len(y) <= 127 and y[:-1] == x[1:]


def test_a_recipe_may_choose_it_only_where_it_draws_the_same_examples(tmp_path):
    from spangpt.config import data_options, load_recipe

    path = tmp_path / "r.toml"
    path.write_text("[pretrain]\nsampler = 'numpy'\nfocus = 0.5\n")
    assert data_options(load_recipe(str(path)))[1].sampler == "numpy"
    both = "sampler must be 'python' with corruption 'original', window or salient_mask"
    for table, message in (("sampler = 'numpy'\ncorruption = 'original'", both), ("sampler = 'numpy'\nwindow = true", both),
                           ("sampler = 'rust'", "sampler must be one of 'python', 'numpy', got 'rust'")):
        path.write_text(f"[pretrain]\n{table}\n")
        with pytest.raises(UserError, match=r"r\.toml \[pretrain\]: " + message):
            data_options(load_recipe(str(path)))


def test_a_pretraining_with_the_numpy_sampler_is_deterministic(synth_dir, tmp_path):
    from spangpt import stages
    from spangpt.train import read_metrics

    recipe = tmp_path / "r.toml"
    recipe.write_text("[model]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 128\ndropout = 0.0\n"
                      "[pretrain]\nepochs = 2\nbatch_size = 16\nlr = 1e-3\nschedule = 'constant'\n"
                      "sampler = 'numpy'\nfocus = 0.5\n")
    runs = [stages.pretrain(synth_dir, tmp_path / f"{k}.safetensors", "rope", str(recipe),
                            train_overrides={"max_steps": 12, "log_interval": 4, "device": "cpu"}, quiet=True)
            for k in "ab"]
    losses = [[r["loss"] for r in read_metrics(tmp_path / f"{k}.metrics.jsonl")] for k in "ab"]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    assert runs[0]["sampler"] == "numpy"
