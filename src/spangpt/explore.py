"""`spangpt explore`: a local web page to look inside trained models, side by side.

The page (explore_static/) asks the models a question (answer, probability, alternatives), shows where each
looks when it writes the first answer character (attention of every layer and head over the prompt), lists
the dev questions with each model's answer, and draws the training curves. The server is Flask; every
request names a model by its number on the page, never by a path, so the browser reads no file.
"""
from __future__ import annotations

import json
import math
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from spangpt import checkpoint, probe
from spangpt.corpus import answer_position, head_length, lines_by_name, name_in_question
from spangpt.data import load_corpus, load_questions, read_text
from spangpt.errors import UserError
from spangpt.evaluate import predict
from spangpt.model import GPT
from spangpt.vocab import Vocab

STATIC = Path(__file__).parent / "explore_static"
STAGES = ("pretrain", "finetune")
MAX_K = 20
MAX_COMPLETE = 128


@dataclass
class Entry:
    """One model on the page: its checkpoint and, from a `reproduce` run folder, its result and metrics."""
    name: str
    path: Path
    model: GPT
    vocab: Vocab
    info: dict
    result: dict | None = None  # the run folder's result.json
    metrics: dict[str, Path] = field(default_factory=dict)  # stage -> its metrics file
    dev_predictions: Path | None = None


def _run_folders(run_dir: Path) -> list[Path]:
    """The run folders of a `reproduce` output (NAME/seedN/ with a result.json), scratch, vanilla, rope first."""
    order = {"scratch": 0, "vanilla": 1, "rope": 2}
    found = [p.parent for p in run_dir.glob("*/seed*/result.json")]
    return sorted(found, key=lambda p: (order.get(p.parent.name, 3), p.parent.name, p.name))


def _from_run_folder(folder: Path, name: str, device: str) -> Entry:
    ckpt = next((folder / f"{s}.safetensors" for s in ("finetune", "pretrain")
                 if (folder / f"{s}.safetensors").is_file()), None)
    if ckpt is None:
        raise UserError(f"{folder}: a run folder without a checkpoint (finetune.safetensors or pretrain.safetensors)")
    entry = _from_checkpoint(ckpt, name, device)
    try:
        entry.result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{folder / 'result.json'}: not valid JSON") from None
    entry.metrics = {s: folder / f"{s}.metrics.jsonl" for s in STAGES if (folder / f"{s}.metrics.jsonl").is_file()}
    preds = folder / "dev.predictions"
    entry.dev_predictions = preds if preds.is_file() else None
    return entry


def _from_checkpoint(path: Path, name: str, device: str) -> Entry:
    model, vocab, info = checkpoint.load(path, device=device)
    model.eval()
    metrics = path.with_name(path.name.removesuffix(".safetensors") + ".metrics.jsonl")
    stage = info.get("stage") if info.get("stage") in STAGES else "train"
    return Entry(name, path, model, vocab, info, metrics={stage: metrics} if metrics.is_file() else {})


def load_entries(paths: list[Path], device: str = "cpu") -> tuple[list[Entry], Path | None]:
    """Checkpoints, folders of them, run folders and `reproduce` outputs -> (the models, the data folder they
    were trained on)."""
    entries, data = [], None
    for path in map(Path, paths):
        if path.is_dir() and (path / "results.json").is_file():  # a whole table
            folders = _run_folders(path)
            if not folders:
                raise UserError(f"{path}: no finished runs (NAME/seedN/result.json) in this reproduce output")
            entries += [_from_run_folder(f, f"{f.parent.name}/{f.name}", device) for f in folders]
            try:
                data = data or Path(json.loads((path / "results.json").read_text(encoding="utf-8"))["data"])
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path / 'results.json'}: not a reproduce results file") from None
        elif path.is_dir() and (path / "result.json").is_file():  # one run folder
            entries.append(_from_run_folder(path, f"{path.parent.name}/{path.name}", device))
        elif path.is_dir() and (found := sorted(path.glob("*.safetensors"))):  # a folder of checkpoints
            entries += [_from_checkpoint(f, f.name.removesuffix(".safetensors"), device) for f in found]
        elif path.is_dir():
            raise UserError(f"{path}: no checkpoint here (*.safetensors), nor a reproduce output (results.json) or "
                            "run folder (result.json)")
        elif path.is_file():
            entries.append(_from_checkpoint(path, path.name.removesuffix(".safetensors"), device))
        else:
            raise UserError(f"{path}: not found")
        if data is None and isinstance(entries[-1].info.get("data"), str):
            data = Path(entries[-1].info["data"])
    _unique_names(entries)
    return entries, data


def _unique_names(entries: list[Entry]) -> None:
    """Two models of the same name are told apart by as many of their folders as it takes
    (vanilla/seed0/finetune, rope/seed0/finetune), then by their number."""
    for depth in range(1, 4):
        names = [e.name for e in entries]
        for e in entries:
            if names.count(e.name) > 1:
                e.name = "/".join([*e.path.parent.parts[-depth:], e.path.name.removesuffix(".safetensors")])
    names = [e.name for e in entries]
    for i, e in enumerate(entries):
        if names.count(e.name) > 1:
            e.name = f"{e.name} ({i + 1})"


class Explorer:
    """What the page asks for, computed from the models; every answer is JSON-ready."""

    def __init__(self, entries: list[Entry], data: Path | None = None):
        if not entries:
            raise UserError("no models to explore")
        self.entries, self.data = entries, data
        self.lock = threading.Lock()  # one request at a time on the models (attention recording flips flags)
        self.dev_lock = threading.Lock()
        self._dev = None

    def _entry(self, index) -> Entry:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.entries):
            raise UserError(f"no model {index!r} (the page has models 0 to {len(self.entries) - 1})")
        return self.entries[index]

    def models(self) -> dict:
        out = []
        for i, e in enumerate(self.entries):
            r = e.result or {}
            out.append({"index": i, "name": e.name, "variant": e.model.cfg.variant,
                        "parameters": sum(p.numel() for p in e.model.parameters()),
                        "dev_accuracy": r.get("accuracy"), "block_size": e.model.cfg.block_size})
        return {"models": out, "data": str(self.data) if self.data else None}

    def ask(self, text, k=5) -> dict:
        if not isinstance(text, str):
            raise UserError("the question must be text")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise UserError(f"top-k must be a whole number from 1 to {MAX_K}")
        q = probe.as_question(text)
        answers = []
        with self.lock:
            for e in self.entries:
                try:
                    g = probe.greedy_answer(e.model, e.vocab, q)
                    top = probe.top_answers(e.model, e.vocab, q, k)
                    answers.append({"model": e.name, "answer": g.text, "probability": g.probability,
                                    "alternatives": [vars(a) for a in top]})
                except UserError as err:  # one model may not read what another does (another vocabulary)
                    answers.append({"model": e.name, "error": str(err)})
        if all("error" in a for a in answers):
            raise UserError(answers[0]["error"])
        return {"question": q, "answers": answers}

    def attention(self, text, index) -> dict:
        e = self._entry(index)
        if not isinstance(text, str):
            raise UserError("the question must be text")
        q = probe.as_question(text)
        with self.lock:
            chars, rows = probe.attention(e.model, e.vocab, q)
        return {"model": e.name, "question": q, "chars": chars, "weights": rows.tolist()}

    def complete(self, text, index, max_chars=96) -> dict:
        e = self._entry(index)
        if not isinstance(text, str):
            raise UserError("the text must be text")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or not 1 <= max_chars <= MAX_COMPLETE:
            raise UserError(f"max_chars must be a whole number from 1 to {MAX_COMPLETE}")
        with self.lock:
            return {"model": e.name, "text": text, "completion": probe.complete(e.model, e.vocab, text, max_chars)}

    def dev(self) -> dict:
        """Every dev question with each model's answer, and where the answer is in the person's line."""
        with self.dev_lock:  # two first requests at once compute it once
            if self._dev is None:
                self._dev = self._load_dev()
        return self._dev

    def _own_predictions(self, e: Entry, n: int) -> list[str] | None:
        """The run's dev.predictions, as scored in its result.json, if it answered this very dev file."""
        trained_on = e.info.get("data")
        if e.dev_predictions is None or not isinstance(trained_on, str) or \
                Path(trained_on).resolve() != self.data.resolve():
            return None
        preds = read_text(e.dev_predictions).split("\n")[:n]
        return preds if len(preds) == n else None

    def _load_dev(self) -> dict:
        if self.data is None or not (self.data / "birth_dev.tsv").is_file():
            raise UserError(f"no dev set: {self.data or 'the data folder is unknown'}"
                            f"{'/birth_dev.tsv not found' if self.data else ''} (start explore with --data DIR)")
        pairs = load_questions(self.data / "birth_dev.tsv")
        wiki = self.data / "wiki.txt"
        lines = lines_by_name(load_corpus(wiki)) if wiki.is_file() else {}
        predictions, errors = [], []
        for e in self.entries:
            preds, error = self._own_predictions(e, len(pairs)), None
            if preds is None:
                try:
                    with self.lock:
                        preds = predict(e.model, e.vocab, [q for q, _ in pairs], str(self.data / "birth_dev.tsv"))
                except UserError as err:  # this model cannot read some question (another vocabulary): its column only
                    preds, error = [""] * len(pairs), str(err)
            predictions.append(preds)
            errors.append(error)
        rows = []
        for i, (q, a) in enumerate(pairs):
            name = name_in_question(q) or ""
            line = lines.get(name, "")
            rows.append({"question": q, "answer": a, "name": name, "line": line, "where": answer_position(line, a),
                         "head": line[: head_length(line)] if line else "",
                         "predictions": [p[i] for p in predictions]})
        accuracy = [None if err else 100.0 * sum(p[i] == a for i, (_, a) in enumerate(pairs)) / len(pairs)
                    for p, err in zip(predictions, errors)]
        return {"models": [e.name for e in self.entries], "accuracy": accuracy, "errors": errors, "rows": rows}

    def curves(self) -> dict:
        from spangpt.train import read_metrics

        out = []
        for e in self.entries:
            stages = {}
            for stage, path in e.metrics.items():
                stages[stage] = [[r["step"], r["loss"]] for r in read_metrics(path)  # JSON has no NaN
                                 if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
            r = e.result or {}
            before = (r.get("before_finetune") or {}).get("accuracy")
            out.append({"model": e.name, "stages": stages, "dev_accuracy": r.get("accuracy"),
                        "dev_before_finetune": before})
        return {"models": out}


def create_app(explorer: Explorer):
    """The Flask app: the page and its JSON endpoints. A UserError is a 400 with {"error": one line}; any
    other failure a 500 with a one-line message, never a stack trace."""
    from flask import Flask, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise UserError("expected a JSON object")
        return data

    @app.get("/")
    def index():
        return app.send_static_file("index.html")

    @app.get("/api/models")
    def models():
        return jsonify(explorer.models())

    @app.post("/api/ask")
    def ask():
        b = body()
        return jsonify(explorer.ask(b.get("question"), b.get("k", 5)))

    @app.post("/api/attention")
    def attention():
        b = body()
        return jsonify(explorer.attention(b.get("question"), b.get("model")))

    @app.post("/api/complete")
    def complete():
        b = body()
        return jsonify(explorer.complete(b.get("text"), b.get("model"), b.get("max_chars", 96)))

    @app.get("/api/dev")
    def dev():
        return jsonify(explorer.dev())

    @app.get("/api/curves")
    def curves():
        return jsonify(explorer.curves())

    @app.errorhandler(UserError)
    def user_error(e):
        return jsonify(error=str(e)), 400

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=f"{e.code} {e.name}"), e.code

    @app.errorhandler(Exception)
    def internal_error(e):
        app.logger.exception("request failed")  # the traceback goes to the server's log, not to the page
        return jsonify(error=f"internal error ({type(e).__name__}); see the server's log"), 500

    return app


def check_flask() -> None:
    try:
        import flask  # noqa: F401
    except ImportError:
        raise UserError("explore needs Flask: pip install 'spangpt[explore]'") from None


def serve(paths, data: Path | None = None, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> None:
    """Load the models, then serve the page until Ctrl-C. port 0: any free port (printed)."""
    check_flask()
    from werkzeug.serving import make_server

    if data is not None and not (Path(data) / "birth_dev.tsv").is_file():  # said now, not when the page asks
        raise UserError(f"{data}: no birth_dev.tsv in this folder (--data takes the folder of the dev questions)")
    entries, found = load_entries(paths, device)
    explorer = Explorer(entries, Path(data) if data else found)
    try:  # bound here, so that a port in use is one line (werkzeug would print two and exit)
        sock = socket.create_server((host, port))
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    server = make_server(host, port, create_app(explorer), threaded=True, fd=sock.fileno())
    print(f"spangpt explore: {len(entries)} model(s) on http://{host}:{sock.getsockname()[1]}/ (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sock.close()
