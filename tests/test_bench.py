import random
import re
from dataclasses import asdict

import torch

from spangpt import bench
from spangpt.data import load_corpus, pack_batch, pretrain_example, read_text
from spangpt.model import GPT, ModelConfig
from spangpt.vocab import Vocab

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "16", "--threads", "1"]


def _corpus(d):
    wiki = d / "wiki.txt"
    return load_corpus(wiki), Vocab.from_text(read_text(wiki))


def test_bench_runs_and_ends_with_the_speedup_line(synth_dir, capsys):
    argv = ["--seconds", "0.5", "--repeats", "1", "--data", str(synth_dir), "--eval-questions", "4",
            "--scaling", "--scaling-people", "20", "40", "--no-memory", *TINY]  # memory: tested below
    threads = torch.get_num_threads()
    assert bench.main(argv) == 0
    assert torch.get_num_threads() == threads  # --threads 1 was for the measurement, not for what runs next
    out = capsys.readouterr().out
    lines = out.rstrip("\n").split("\n")
    assert re.fullmatch(r"train speedup: \d+\.\dx  eval speedup: \d+\.\dx", lines[-1]), lines[-1]
    assert "| train: real target tokens/s (median)" in out
    assert "| 2x " in out  # the scaling table
    assert re.search(r"Agreement: (\d+) of \1 answers identical", out)  # fp32: the decoders agree


def test_bench_times_evaluation_on_a_given_checkpoint(synth_dir, tmp_path, capsys):
    from spangpt import checkpoint

    docs, vocab = _corpus(synth_dir)
    ck = tmp_path / "m.safetensors"
    checkpoint.save(ck, GPT(ModelConfig(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32)), vocab)
    argv = ["--seconds", "0.3", "--repeats", "1", "--data", str(synth_dir), "--eval-questions", "3",
            "--no-memory", "--checkpoint", str(ck), *TINY]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert f"Weights from {ck}" in out and out.rstrip().split("\n")[-1].startswith("train speedup:")
    # a checkpoint of another corpus is refused with a one-line error
    checkpoint.save(ck, GPT(ModelConfig(vocab_size=10, n_layer=1, n_head=2, n_embd=32)), Vocab.from_text("abcdefgh"))
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"spangpt: error: {ck}: checkpoint vocabulary differs from that of {synth_dir}\n"


def test_memory_is_measured_in_fresh_processes(synth_dir):
    docs, vocab = _corpus(synth_dir)
    cfg = ModelConfig(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32)
    common = {"device": "cpu", "threads": 1, "cfg": cfg.to_dict(), "vocab": vocab.to_list(), "batch_size": 8}
    fast = bench.fast_path(torch.device("cpu"), bf16=False)
    jobs = [{**common, "kind": "train-fast", "path": asdict(fast), "docs": docs},
            {**common, "kind": "eval-batched", "questions": ["Where was Ana Bel born?"] * 3}]
    for m in bench._measure_memory(jobs, torch.device("cpu")):
        assert 50 < m["before"] < m["peak"] + 1 < 10_000  # MiB: a process with torch loaded


def test_bad_options_are_a_user_error(synth_dir, capsys):
    assert bench.main(["--seconds", "0", "--data", str(synth_dir)]) == 2
    assert "spangpt: error: --seconds must be > 0" in capsys.readouterr().err


def test_padded_reference_and_packed_fast_paths_give_the_same_loss_and_gradients(synth_dir):
    docs, vocab = _corpus(synth_dir)
    cfg = ModelConfig(vocab_size=len(vocab), n_layer=2, n_head=2, n_embd=32)  # dropout 0.1: the check turns it off
    r = bench.loss_agreement(cfg, docs, vocab, n_examples=24, seed=3)
    # packing really happened: far fewer rows than examples, so the block-diagonal mask matters
    assert r["ref_shape"] == (24, cfg.block_size - 1) and r["fast_shape"][0] < 24 // 2
    assert 1.0 < r["ref_loss"] < 10.0
    assert r["loss_diff"] < 1e-5 and r["grad_rel_diff"] < 1e-4, r


def test_the_equivalence_check_can_fail(synth_dir):
    """Control: the same packed batch without its per-example positions and mask gives other gradients,
    so the agreement above is not a property of any two layouts of the same examples."""
    docs, vocab = _corpus(synth_dir)
    cfg = ModelConfig(vocab_size=len(vocab), n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    rng = random.Random(3)
    examples = [pretrain_example(docs[rng.randrange(len(docs))], vocab, cfg.block_size, rng) for _ in range(24)]
    b = pack_batch(examples, cfg.block_size)
    grads = []
    for kw in ({"pos": b.pos, "doc": b.doc}, {}):  # {}: examples see each other, positions run on across the row
        torch.manual_seed(0)
        model = GPT(cfg).train()
        model(b.x, b.y, **kw)[1].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max() / grads[0].abs().max() > 1e-2
