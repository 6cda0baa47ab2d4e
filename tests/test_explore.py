"""`spangpt explore` and `spangpt ask`/`complete`: the server's endpoints through Flask's own test client,
and the commands through the CLI. The page in a real browser: test_browser.py."""
import json
import subprocess
import sys

import pytest

from spangpt import probe
from spangpt.cli import main
from spangpt.data import load_questions
from spangpt.evaluate import predict
from spangpt.explore import Explorer, create_app, load_entries
from spangpt.train import read_metrics

pytest.importorskip("flask")

@pytest.fixture(scope="module")
def client(run_dir):
    entries, data = load_entries([run_dir])
    app = create_app(Explorer(entries, data))
    app.testing = False  # errors go through the app's handlers, as when served
    return app.test_client()


def _dev_name(synth_dir):
    q, _ = load_questions(synth_dir / "birth_dev.tsv")[0]
    return q, q[len("Where was "):-len(" born?")]


def test_a_reproduce_output_is_its_runs_named_by_folder_with_its_data(run_dir, synth_dir):
    entries, data = load_entries([run_dir])
    assert [e.name for e in entries] == ["scratch/seed0", "vanilla/seed0", "rope/seed0"]
    assert [e.path.name for e in entries] == ["finetune.safetensors"] * 3
    assert data == synth_dir
    assert set(entries[1].metrics) == {"pretrain", "finetune"} and set(entries[0].metrics) == {"finetune"}


def test_checkpoints_of_the_same_name_are_told_apart_by_their_folders(run_dir):
    entries, _ = load_entries([run_dir / "vanilla" / "seed0" / "finetune.safetensors",
                               run_dir / "rope" / "seed0" / "finetune.safetensors",
                               run_dir / "rope" / "seed0" / "pretrain.safetensors"])
    assert [e.name for e in entries] == ["vanilla/seed0/finetune", "rope/seed0/finetune", "pretrain"]


def test_the_page_and_its_assets_are_served_by_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and b"spangpt explore" in page.data
    for asset in ("explore.js", "explore.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert b"http" not in page.data.replace(b"http://www.w3.org", b"")  # nothing fetched from elsewhere


def test_models_lists_every_model(client):
    models = client.get("/api/models").get_json()["models"]
    assert [(m["index"], m["name"], m["variant"]) for m in models] == \
        [(0, "scratch/seed0", "vanilla"), (1, "vanilla/seed0", "vanilla"), (2, "rope/seed0", "rope")]


def test_ask_answers_a_bare_name_for_every_model_with_its_alternatives(client, run_dir, synth_dir):
    q, name = _dev_name(synth_dir)
    res = client.post("/api/ask", json={"question": name, "k": 3}).get_json()
    assert res["question"] == q and len(res["answers"]) == 3
    entries, _ = load_entries([run_dir])
    for a, e in zip(res["answers"], entries):
        assert a["model"] == e.name
        assert len(a["alternatives"]) == 3 and all(0 < alt["probability"] <= 1 for alt in a["alternatives"])
        assert a["answer"] == probe.greedy_answer(e.model, e.vocab, q).text


@pytest.mark.parametrize("body, message", [
    ({"question": ""}, "empty question"),
    ({"question": "   "}, "empty question"),
    ({"question": "Where was Zoë € born?"}, "characters the model cannot read"),
    ({"question": "x" * 200}, "the model reads at most 127"),
    ({"question": 42}, "the question must be text"),
    ({"question": "Ann", "k": 0}, "top-k must be a whole number from 1 to 20"),
    ({"question": "Ann", "k": "5"}, "top-k must be"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_questions_are_one_line_messages_not_failures(client, body, message):
    r = client.post("/api/ask", json=body)
    assert r.status_code == 400 and message in r.get_json()["error"]
    assert "\n" not in r.get_json()["error"]


def test_a_body_that_is_not_json_is_a_message(client):
    r = client.post("/api/ask", data="question=Ann", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r.get_json() == {"error": "expected a JSON object"}


def test_attention_rows_cover_the_prompt_and_sum_to_1(client, synth_dir):
    q, name = _dev_name(synth_dir)
    res = client.post("/api/attention", json={"question": name, "model": 2}).get_json()
    assert res["model"] == "rope/seed0" and "".join(res["chars"]) == q + "⁇"
    weights = res["weights"]
    assert len(weights) == 1 and len(weights[0]) == 2  # 1 layer, 2 heads
    assert all(len(row) == len(q) + 1 and abs(sum(row) - 1) < 1e-5 for row in weights[0])


@pytest.mark.parametrize("model", [3, -1, "0", "../../etc/passwd", None, True])
def test_a_model_is_named_by_its_number_on_the_page_only(client, model):
    r = client.post("/api/attention", json={"question": "Ann", "model": model})
    assert r.status_code == 400 and "no model" in r.get_json()["error"]


def test_complete_is_the_models_greedy_completion(client, run_dir):
    entries, _ = load_entries([run_dir])
    res = client.post("/api/complete", json={"text": "Ann Lee. ", "model": 1, "max_chars": 20}).get_json()
    assert res["completion"] == probe.complete(entries[1].model, entries[1].vocab, "Ann Lee. ", 20)
    for body, message in (({"text": "", "model": 1}, "empty text"),
                          ({"text": "a", "model": 1, "max_chars": 0}, "max_chars must be"),
                          ({"text": "a" * 300, "model": 1}, "the model reads at most 127"),
                          ({"text": "□", "model": 1}, "cannot read")):
        r = client.post("/api/complete", json=body)
        assert r.status_code == 400 and message in r.get_json()["error"]


def test_dev_rows_are_the_runs_own_predictions_and_scores(client, run_dir, synth_dir):
    res = client.get("/api/dev").get_json()
    pairs = load_questions(synth_dir / "birth_dev.tsv")
    assert [r["question"] for r in res["rows"]] == [q for q, _ in pairs]
    assert [r["answer"] for r in res["rows"]] == [a for _, a in pairs]
    for i, name in enumerate(("scratch", "vanilla", "rope")):
        folder = run_dir / name / "seed0"
        preds = (folder / "dev.predictions").read_text().splitlines()
        assert [r["predictions"][i] for r in res["rows"]] == preds
        assert res["accuracy"][i] == pytest.approx(json.loads((folder / "result.json").read_text())["accuracy"])
    for row in res["rows"]:
        assert row["line"].startswith(row["name"] + ". ") and row["head"] == row["name"] + ". "
        i = row["line"].find(row["answer"])  # where, worked out plainly
        assert row["where"] == ("not in line" if i < 0 else "first 96" if i + len(row["answer"]) <= 96 else "past 96")
    assert {r["where"] for r in res["rows"]} == {"first 96"}  # the synthetic lines are short
    assert res["errors"] == [None, None, None]


def test_dev_predictions_are_computed_for_a_checkpoint_without_a_run_folder(run_dir, synth_dir):
    entries, data = load_entries([run_dir / "vanilla" / "seed0" / "finetune.safetensors"])
    assert data == synth_dir  # from the checkpoint's own record of its data
    res = create_app(Explorer(entries, data)).test_client().get("/api/dev").get_json()
    want = (run_dir / "vanilla" / "seed0" / "dev.predictions").read_text().splitlines()
    assert [r["predictions"][0] for r in res["rows"]] == want


def test_without_a_dev_set_the_dev_endpoint_says_so(run_dir, tmp_path):
    entries, _ = load_entries([run_dir / "vanilla" / "seed0" / "finetune.safetensors"])
    r = create_app(Explorer(entries, tmp_path)).test_client().get("/api/dev")
    assert r.status_code == 400 and "birth_dev.tsv not found" in r.get_json()["error"]


def test_curves_are_the_metrics_files_and_the_dev_scores(client, run_dir):
    res = client.get("/api/curves").get_json()["models"]
    vanilla = res[1]
    for stage in ("pretrain", "finetune"):
        recs = read_metrics(run_dir / "vanilla" / "seed0" / f"{stage}.metrics.jsonl")
        assert vanilla["stages"][stage] == [[r["step"], r["loss"]] for r in recs]
    assert res[0]["dev_before_finetune"] is None and vanilla["dev_before_finetune"] is not None


def test_unknown_paths_and_internal_failures_are_json_messages_without_a_traceback(run_dir, monkeypatch):
    entries, data = load_entries([run_dir])
    explorer = Explorer(entries, data)
    c = create_app(explorer).test_client()
    assert c.get("/api/nope").status_code == 404 and c.get("/api/nope").get_json() == {"error": "404 Not Found"}
    assert c.get("/api/ask").status_code == 405
    monkeypatch.setattr(explorer, "curves", lambda: 1 / 0)
    r = c.get("/api/curves")
    assert r.status_code == 500 and r.get_json() == {"error": "internal error (ZeroDivisionError); see the server's log"}


def test_ask_cli_answers_side_by_side(run_dir, synth_dir, capsys):
    q, name = _dev_name(synth_dir)
    assert main(["ask", str(run_dir), name, "--top-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == q and out[1].split()[:3] == ["model", "answer", "p"]
    assert [line.split()[0] for line in out[2:]] == ["scratch/seed0", "vanilla/seed0", "rope/seed0"]


def test_ask_cli_takes_the_question_after_an_option_too(run_dir, synth_dir, capsys):
    _, name = _dev_name(synth_dir)
    assert main(["ask", str(run_dir), name, "--top-k", "2"]) == 0
    want = capsys.readouterr().out
    assert main(["ask", str(run_dir), "--top-k", "2", name]) == 0
    assert capsys.readouterr().out == want
    with pytest.raises(SystemExit):  # an unknown option is still the command's error
        main(["ask", str(run_dir), "--top", "2", name, "--colour"])
    assert capsys.readouterr().err.splitlines()[-1] == f"spangpt ask: error: unrecognized arguments: {name} --colour"


def test_ask_cli_reads_questions_from_standard_input(run_dir, tmp_path):
    ckpt = str(run_dir / "vanilla" / "seed0" / "finetune.safetensors")
    r = subprocess.run([sys.executable, "-m", "spangpt", "ask", ckpt], input="Ann Lee\n\nWhere was Bo born?\n",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("Where")] == \
        ["Where was Ann Lee born?", "Where was Bo born?"]
    r = subprocess.run([sys.executable, "-m", "spangpt", "ask", ckpt], input="Ann Lee\nZoë €\n",
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == \
        ["spangpt: error: <stdin>:2: characters the model cannot read: 'ë€' (not in its vocabulary, or the "
         "markers ⁇□)"]


def test_ask_and_complete_cli_errors_are_one_line(run_dir, capsys):
    assert main(["ask", "missing.safetensors", "Ann"]) == 2
    assert "missing.safetensors: not found" in capsys.readouterr().err
    assert main(["ask", str(run_dir.parent), "Ann"]) == 2
    assert "no checkpoint here (*.safetensors), nor a reproduce output" in capsys.readouterr().err


def test_ask_takes_a_folder_of_checkpoints(run_dir, synth_dir, tmp_path, capsys):
    """As the README's pretrain and finetune commands leave them: runs/v/pretrain.safetensors, finetune.safetensors."""
    import shutil

    for stage in ("pretrain", "finetune"):
        shutil.copy(run_dir / "vanilla" / "seed0" / f"{stage}.safetensors", tmp_path / f"{stage}.safetensors")
    _, name = _dev_name(synth_dir)
    assert main(["ask", str(tmp_path), name]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == ["finetune", "pretrain"]


def test_complete_cli_prints_the_text_and_its_greedy_completion(run_dir, capsys):
    ckpt = run_dir / "vanilla" / "seed0" / "pretrain.safetensors"
    assert main(["complete", str(ckpt), "Ann Lee. ", "--max-chars", "12"]) == 0
    entries, _ = load_entries([ckpt])
    want = probe.complete(entries[0].model, entries[0].vocab, "Ann Lee. ", 12)
    assert capsys.readouterr().out == "Ann Lee. " + want + "\n"


def test_a_runs_predictions_are_used_only_for_the_dev_file_it_answered(run_dir, synth_dir, tmp_path):
    """--data naming another dev file of the same length must not pair the run's answers with its questions:
    here the same questions in reverse order."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "wiki.txt").write_text((synth_dir / "wiki.txt").read_text())
    lines = (synth_dir / "birth_dev.tsv").read_text().splitlines()
    (other / "birth_dev.tsv").write_text("\n".join(reversed(lines)) + "\n")
    entries, _ = load_entries([run_dir / "rope" / "seed0"])
    res = Explorer(entries, other).dev()
    e = entries[0]
    want = predict(e.model, e.vocab, [line.split("\t")[0] for line in reversed(lines)])
    assert [r["predictions"][0] for r in res["rows"]] == want
    own = (run_dir / "rope" / "seed0" / "dev.predictions").read_text().splitlines()
    assert want != own  # so reading the run's file would have been caught


def test_a_model_that_cannot_read_the_dev_set_fails_its_column_only(run_dir, synth_dir, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    lines = (synth_dir / "birth_dev.tsv").read_text().splitlines()
    (data / "birth_dev.tsv").write_text("\n".join(lines[:2] + ["Where was Zoë born?\tParis"]) + "\n")
    entries, _ = load_entries([run_dir / "vanilla" / "seed0" / "finetune.safetensors"])
    res = create_app(Explorer(entries, data)).test_client().get("/api/dev").get_json()
    assert res["accuracy"] == [None] and "birth_dev.tsv:3:" in res["errors"][0]
    assert len(res["rows"]) == 3


def test_ask_takes_a_question_that_is_also_a_path_with_question_option(run_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Ann Lee").write_text("")  # a file named like the question
    ckpt = str(run_dir / "vanilla" / "seed0" / "finetune.safetensors")
    assert main(["ask", ckpt, "--question", "Ann Lee"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Where was Ann Lee born?"


def test_a_port_in_use_is_one_line(run_dir):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "spangpt", "explore", str(run_dir), "--port", str(port)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in r.stderr


def test_a_data_folder_without_a_dev_set_is_one_line_before_serving(run_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "spangpt", "explore", str(run_dir), "--data", str(tmp_path),
                        "--port", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"spangpt: error: {tmp_path}: no birth_dev.tsv in this folder (--data takes the folder of the dev questions)"]


def test_ask_on_a_terminal_prompts_until_end_of_input_and_survives_a_bad_question(run_dir):
    """A bad question on a terminal is a message and the next prompt: ask goes on until the end of input."""
    import os
    import pty
    import select
    import time

    ckpt = str(run_dir / "vanilla" / "seed0" / "finetune.safetensors")
    pid, fd = pty.fork()
    if pid == 0:  # the child: spangpt ask on a terminal
        os.execv(sys.executable, [sys.executable, "-m", "spangpt", "ask", ckpt, "--top-k", "2"])
    seen = b""

    def until(text: bytes, times=1, seconds=120):
        nonlocal seen
        end = time.time() + seconds
        while seen.count(text) < times and time.time() < end:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return seen.count(text) >= times

    assert until(b"question> ")
    os.write(fd, "Zoë\n".encode())
    assert until("cannot read: 'ë'".encode()) and until(b"question> ", 2)  # the next prompt
    os.write(fd, b"Ann Lee\n")
    assert until(b"Where was Ann Lee born?") and until(b"question> ", 3)
    os.write(fd, b"\x04")  # end of input
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
