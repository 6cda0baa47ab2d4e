"""Fuzzed input files through the real commands (cli.main, in-process).

Every case must end in status 0 or 2; on 2, stderr is exactly one line naming the file; no exception
escapes (a traceback is a failure); and when a command fails, the files it would have written are
byte-for-byte what they were before.

Inputs: random bytes and near-valid files (TSV lines without tabs or with extra columns, empty answers,
blank lines, CRLF, a BOM, invalid UTF-8, huge lines, characters outside the vocabulary, the reserved
PAD/MASK characters), and checkpoints truncated at random offsets, with bytes flipped, with edited
safetensors headers, or of the wrong variant. CI runs a fixed, modest set (derandomized, so a failure
reproduces); SPANGPT_FUZZ_EXAMPLES=N runs N fresh random cases per test instead.
"""
import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PLAIN_RECIPE
from spangpt.cli import main
from spangpt.vocab import MASK, PAD

EXPLORE = int(os.environ.get("SPANGPT_FUZZ_EXAMPLES", "0"))


def fuzz(n: int):
    return settings(max_examples=EXPLORE or n, derandomize=not EXPLORE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


RUN = ["--recipe", PLAIN_RECIPE, "--batch-size", "4", "--device", "cpu", "--log-interval", "1"]
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "64", *RUN]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, synth_dir):
    """A tiny trained model (fine-tuned from scratch, 2 steps): what the commands evaluate and fine-tune."""
    out = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    assert main(["finetune", "--variant", "vanilla", "--data", str(synth_dir), "--out", str(out), *TINY,
                 "--max-steps", "2"]) == 0
    return out


def _lines(path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def messages(err: str) -> list[str]:
    """stderr without tqdm's progress bar."""
    lines = (line.split("\r")[-1] for line in err.split("\n"))
    return [line for line in lines if line and not line.startswith(("pretrain ", "finetune "))]


def run(capsys, argv, named: Path, keep: list[Path], or_diverged: bool = False) -> int:
    """cli.main(argv) must return 0, or 2 with one line naming `named` and every file in `keep` unchanged.
    or_diverged: training may also stop with its one-line divergence error (weights that load but are huge)."""
    before = {p: p.read_bytes() for p in keep}
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        lines = messages(err)
        assert len(lines) == 1 and lines[0].startswith("spangpt: error: "), err
        diverged = or_diverged and lines[0].startswith("spangpt: error: training diverged: ")
        assert str(named) in lines[0] or diverged, f"the error does not name {named}: {lines[0]}"
        for p, data in before.items():
            assert p.read_bytes() == data, f"{p} changed although the command failed"
    key = f"{argv[0]} exit {code}"
    STATS[key] = STATS.get(key, 0) + 1
    return code


STATS: dict[str, int] = {}  # "command exit N" -> cases, printed at the end of the module (pytest -s shows it)


@pytest.fixture(scope="module", autouse=True)
def _print_stats():
    yield
    print(f"\nfuzz cases: {sum(STATS.values())}, by command and exit status: {dict(sorted(STATS.items()))}")


# ----------------------------------------------------------------------------- text files


def _vocab_chars(synth_dir) -> str:
    return "".join(sorted(set((synth_dir / "wiki.txt").read_text(encoding="utf-8"))))


@st.composite
def text_file(draw, good_lines: list[str], chars: str) -> bytes:
    """Random bytes, or real lines with 0-3 near-valid ones put in, as bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    in_vocab = st.text(alphabet=chars, max_size=40)
    field = st.one_of(in_vocab, st.text(max_size=20), st.sampled_from(["", " ", "\t", PAD, MASK, "\x85", "\u2028"]),
                      st.builds(lambda s, n: s * n, in_vocab, st.integers(50, 400)))  # huge
    bad_line = st.one_of(
        st.builds(lambda q, a: f"{q}\t{a}", field, field),
        field,  # no tab
        st.builds(lambda q, a, b: f"{q}\t{a}\t{b}", field, field, field),  # an extra column
        st.builds(lambda g: g.split("\t")[0] + "\t", st.sampled_from(good_lines)),  # an empty answer
        st.sampled_from(["", " ", "\t"]),  # blank
    )
    lines = draw(st.lists(st.sampled_from(good_lines), min_size=1, max_size=5))
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(bad_line))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    text = sep.join(lines) + draw(st.sampled_from(["", sep]))
    if draw(st.integers(0, 4)) == 0:
        text = "\ufeff" + text  # a BOM
    data = text.encode("utf-8")
    if draw(st.integers(0, 5)) == 0:  # invalid UTF-8 somewhere
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x81", b"\xed\xa0\x80"])) + data[i:]
    return data


@given(data=st.data())
@fuzz(100)
def test_fuzzed_question_files(ckpt, synth_dir, capsys, data):
    good = _lines(synth_dir / "birth_dev.tsv")
    blob = data.draw(text_file(good, _vocab_chars(synth_dir)), label="file")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tsv, preds = d / "q.tsv", d / "preds"
        tsv.write_bytes(blob)
        preds.write_bytes(b"precious\n")
        for command in ("evaluate", "predict"):
            if run(capsys, [command, ckpt, "--input", tsv, "--out", preds], tsv, [preds]) == 0:
                n = len(preds.read_bytes().decode("utf-8").split("\n")) - 1
                assert n == sum(1 for line in blob.decode("utf-8").splitlines() if line.strip())
                preds.write_bytes(b"precious\n")
        run(capsys, ["baseline", "--input", tsv], tsv, [])


def _train_on_fuzzed_file(capsys, data, synth_dir, name: str, stem: str, command: list) -> None:
    """Write a fuzzed `name` into a fresh data folder beside precious outputs for `stem`, run the training
    command (its --data/--out filled in, with --force: a good file then trains over them), and check it works
    or fails cleanly, touching nothing."""
    blob = data.draw(text_file(_lines(synth_dir / name), _vocab_chars(synth_dir)), label="file")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / name).write_bytes(blob)
        out = d / f"{stem}.safetensors"
        keep = [out, d / f"{stem}.config.json", d / f"{stem}.metrics.jsonl"]
        for p in keep:
            p.write_bytes(b"precious")
        run(capsys, [*command, "--data", d, "--out", out, "--max-steps", "1", "--force"], d / name, keep)


@given(data=st.data())
@fuzz(40)
def test_fuzzed_finetuning_file(ckpt, synth_dir, capsys, data):
    _train_on_fuzzed_file(capsys, data, synth_dir, "birth_places_train.tsv", "ft",
                          ["finetune", "--variant", "vanilla", "--init", ckpt, *RUN])


@given(data=st.data())
@fuzz(40)
def test_fuzzed_pretraining_corpus(synth_dir, capsys, data):
    _train_on_fuzzed_file(capsys, data, synth_dir, "wiki.txt", "p", ["pretrain", "--variant", "rope", *TINY])


# ----------------------------------------------------------------------------- checkpoints


def _split(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header: dict, rest: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + rest


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                       max_leaves=6)
META = ["format", "model", "vocab", "info"]
MODEL_FIELDS = ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "variant", "rope_base",
                "rope_layout"]

# A damaged checkpoint is drawn as a short description of the damage (what hypothesis prints on a
# failure), applied to the good checkpoint's bytes by apply().
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),  # at this fraction of the file
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),  # xor one byte
    st.tuples(st.just("random"), st.binary(max_size=400)),
    st.tuples(st.just("meta"), st.sampled_from(META), st.one_of(st.text(max_size=30), JSONISH.map(json.dumps))),
    st.tuples(st.just("drop-meta"), st.sampled_from(META)),
    st.tuples(st.just("model-field"), st.sampled_from(MODEL_FIELDS),
              st.one_of(JSONISH, st.integers(0, 4096), st.sampled_from(["rope", "vanilla"]))),
    st.tuples(st.just("vocab-entry"), st.integers(0, 70), JSONISH),
    st.tuples(st.just("info-field"), st.sampled_from(["documents", "stage", "train"]), JSONISH),
    st.tuples(st.just("drop-tensor"), st.integers(0, 16)),
    st.tuples(st.just("dtype"), st.integers(0, 16), st.sampled_from(["F16", "BF16", "F64", "I32", "I64", "BOOL", "U8", "XYZ"])),
    st.tuples(st.just("shape"), st.integers(0, 16), st.lists(st.integers(0, 80), max_size=3)),
    st.tuples(st.just("offsets"), st.integers(0, 16), st.integers(0, 30000), st.integers(0, 30000)),
    st.tuples(st.just("header-length"), st.integers(0, 2**64 - 1)),
)


def apply(blob: bytes, damage: tuple) -> bytes:
    what, *args = damage
    if what == "truncate":
        return blob[: int(args[0] * len(blob))]
    if what == "flip":
        i = int(args[0] * len(blob))
        return blob[:i] + bytes([blob[i] ^ args[1]]) + blob[i + 1 :]
    if what == "random":
        return args[0]
    if what == "header-length":
        return struct.pack("<Q", args[0]) + blob[8:]
    header, rest = _split(blob)
    meta, tensors = header["__metadata__"], sorted(k for k in header if k != "__metadata__")
    if what == "meta":
        meta[args[0]] = args[1]
    elif what == "drop-meta":
        del meta[args[0]]
    elif what == "model-field":
        meta["model"] = json.dumps({**json.loads(meta["model"]), args[0]: args[1]})
    elif what == "info-field":
        meta["info"] = json.dumps({**json.loads(meta["info"]), args[0]: args[1]})
    elif what == "vocab-entry":
        vocab = json.loads(meta["vocab"])
        vocab[args[0] % len(vocab)] = args[1]
        meta["vocab"] = json.dumps(vocab)
    elif what == "drop-tensor":
        del header[tensors[args[0] % len(tensors)]]
    else:
        t = header[tensors[args[0] % len(tensors)]]
        t[{"dtype": "dtype", "shape": "shape", "offsets": "data_offsets"}[what]] = \
            list(args[1:]) if what == "offsets" else args[1]
    return _join(header, rest)


@given(damage=DAMAGE)
@fuzz(150)
def test_fuzzed_checkpoints(ckpt, synth_dir, capsys, damage):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        bad, preds = d / "bad.safetensors", d / "preds"
        bad.write_bytes(apply(ckpt.read_bytes(), damage))
        preds.write_bytes(b"precious\n")
        code = run(capsys, ["evaluate", bad, "--input", synth_dir / "birth_dev.tsv", "--out", preds], bad, [preds])
        if code == 0:  # it still loads (a changed dropout, say): fine-tuning from it must work too, with
            out = d / "ft.safetensors"  # the paper recipe, whose schedule uses the run info's "documents"
            run(capsys, ["finetune", "--variant", "vanilla", "--data", synth_dir, "--init", bad, "--out", out,
                         "--recipe", "paper", "--batch-size", "4", "--device", "cpu", "--max-steps", "1"], bad, [],
                or_diverged=True)


def test_wrong_variant_checkpoint_to_finetune(ckpt, synth_dir, capsys, tmp_path):
    out = tmp_path / "ft.safetensors"
    assert run(capsys, ["finetune", "--variant", "rope", "--data", synth_dir, "--init", ckpt, "--out", out, *RUN,
                        "--max-steps", "1"], ckpt, []) == 2
    assert not out.exists()
