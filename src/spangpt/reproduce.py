"""The experiment table: no pretraining vs vanilla vs RoPE (and 'always London'), over one or more seeds.

Writes into OUT one folder per run and seed (OUT/vanilla/seed0/: checkpoints with their configs and
metrics, dev/test predictions of the final model and of the pretrained one before fine-tuning, result.json),
then results.json, report.md and (with matplotlib) two plots, losses.png and accuracy.png. Here: which runs
and how each one runs; spangpt.runner runs them side by side (--jobs N), spangpt.report writes the report.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from spangpt import checkpoint, report, runner, stages
from spangpt.config import data_options, load_recipe, model_config, stage_table, train_config
from spangpt.data import load_wiki, numbered_questions
from spangpt.errors import UserError
from spangpt.evaluate import answer_loss, london_baseline, prompts_for
from spangpt.fileio import atomic_write, check_writable
from spangpt.train import RUN_ONLY, TrainConfig
from spangpt.trainlog import check_tensorboard, log_scalar

DEV, TEST = "birth_dev.tsv", "birth_test_inputs.tsv"


@dataclass(frozen=True)
class RunSpec:
    """One run of the table: a row (name) and seed, in run_dir(out, name, seed). Picklable, so --jobs can
    hand it to a worker process."""
    data: Path
    out: Path
    name: str  # the row: scratch, vanilla, rope
    variant: str  # the model: vanilla or rope (scratch is a vanilla model not pretrained)
    pretrain: bool
    recipe: str
    seed: int
    overrides: dict = field(default_factory=dict)  # train overrides: what the run computes, part of its key
    run_options: dict | None = None  # save_every, deadline, keep_state, tensorboard: how it runs, not what

    def __str__(self) -> str:  # how messages name the run, the runner's too
        return f"{self.name} seed {self.seed}"

    @property
    def where(self) -> Path:
        return run_dir(self.out, self.name, self.seed)

    @property
    def train_overrides(self) -> dict:
        return {**self.overrides, "seed": self.seed}

    @property
    def device(self) -> str:
        return self.train_overrides.get("device", "auto")


# the table's rows: (name, model variant, pretrained); no pretraining is a vanilla model fine-tuned from scratch
ROWS = (("scratch", "vanilla", False), ("vanilla", "vanilla", True), ("rope", "rope", True))


def plan(data: Path, out: Path, recipe: str, seeds, variants, overrides: dict, run_options: dict) -> list[RunSpec]:
    """The table's runs, seed by seed: no pretraining, then each variant pretrained and fine-tuned."""
    rows = [row for row in ROWS if row[0] == "scratch" or row[0] in variants]
    return [RunSpec(data, out, name, variant, pretrain, recipe, seed, overrides, run_options)
            for seed in seeds for name, variant, pretrain in rows]


def run_dir(out: Path, name: str, seed: int) -> Path:
    """runs/best, vanilla, 0 -> runs/best/vanilla/seed0: one folder per run and seed."""
    return Path(out) / name / f"seed{seed}"


def run_one(spec: RunSpec) -> dict:
    """Pretrain (unless `scratch`), fine-tune, evaluate on dev, predict test, all in spec.where.
    A run that finished before (its result.json exists, written last) is read back instead, so seeds can be
    added to a table later; one made with another recipe or other overrides is an error, not reused.
    An interrupted run resumes its stages from their saved states (--resume auto). run_options (save_every,
    deadline, keep_state, tensorboard) change how stages run, not what they compute, so they are not part
    of the key. A recipe that fine-tunes for 0 epochs after pretraining skips that stage: the pretrained
    model is the one evaluated."""
    done = spec.where / "result.json"
    key = _key(spec)
    if done.is_file():
        return _finished_before(spec, done, key)
    info = {"name": spec.name, "seed": spec.seed, "key": key}
    final = init = None
    t0 = time.perf_counter()
    if spec.pretrain:
        final = init = _pretrain(spec, info)
    if not spec.pretrain or finetune_epochs(spec.recipe, spec.variant, spec.train_overrides) > 0:
        final = spec.where / "finetune.safetensors"
        info["finetune"] = stages.finetune(spec.data, final, spec.variant, init, spec.recipe,
                                           **_stage_kwargs(spec, "finetune"))["result"]
    _evaluate(spec, final, info)
    info["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    if "finetune" in info:
        _log_accuracy(spec, "finetune", info["accuracy"], info["finetune"]["steps"])
    atomic_write(done, lambda t: Path(t).write_text(json.dumps(info, indent=2)))
    before = info.get("before_finetune")
    after = "" if "finetune" in info else " (no fine-tuning after pretraining)"
    print(f"{spec}: dev {info['correct']}/{info['total']} = {info['accuracy']:.1f}%{after}"
          + (f" ({before['accuracy']:.1f}% before fine-tuning)" if before and after == "" else "")
          + f", answer loss {info['answer_loss']:.3f}", flush=True)
    return info


def _key(spec: RunSpec) -> dict:
    # the recipe's content, not only its name: a changed recipe file must not reuse runs made with the old one
    return {"recipe": spec.recipe, "recipe_tables": _recipe_tables(spec.recipe), "variant": spec.variant,
            "pretrain": spec.pretrain, "overrides": spec.train_overrides}


def _what_is_trained(key) -> dict | None:
    """A run's key without the overrides that say how it runs, not what it trains (device, workers, compile,
    ...: train.RUN_ONLY): a finished run is reused whatever they were then and are now."""
    if not isinstance(key, dict) or not isinstance(key.get("overrides"), dict):
        return None
    return {**key, "overrides": {k: v for k, v in key["overrides"].items() if k not in RUN_ONLY}}


def _differences(then, now, path: str = "") -> list[str]:
    """Where two run keys differ: "overrides.max_steps: 10 then, 12 now", one per value."""
    if isinstance(then, dict) and isinstance(now, dict):
        return [d for k in sorted(set(then) | set(now), key=str)
                for d in _differences(then.get(k), now.get(k), f"{path}.{k}" if path else str(k))]
    return [] if then == now else [f"{path}: {then!r} then, {now!r} now"]


def _finished_before(spec: RunSpec, done: Path, key: dict) -> dict:
    info = json.loads(done.read_text())
    then, now = _what_is_trained(info.get("key")), _what_is_trained(key)
    if then != now:
        diffs = "; ".join(_differences(then, now)[:3]) if then is not None else "it records none"
        raise UserError(f"{done}: a finished run with other settings ({diffs}); use another --out")
    print(f"{spec}: finished before, dev {info['accuracy']:.1f}% (reusing {done})", flush=True)
    return info


def _earlier_runs(specs: list[RunSpec]) -> list[dict]:
    """Finished runs in OUT that this call did not ask for: other seeds or variants of the same table, made
    before. The report covers them too, so a call with fewer seeds or variants does not drop rows from it. A
    run made with other settings is left out, with a line naming it."""
    if not specs:
        return []
    asked = {spec.where for spec in specs}
    found = []
    for name, variant, pretrain in ROWS:
        for done in sorted(specs[0].out.glob(f"{name}/seed*/result.json")):
            seed = done.parent.name.removeprefix("seed")
            if not seed.isdigit() or done.parent in asked:
                continue
            spec = replace(specs[0], name=name, variant=variant, pretrain=pretrain, seed=int(seed))
            try:
                info = json.loads(done.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                info = {}
            if isinstance(info, dict) and _what_is_trained(info.get("key")) == _what_is_trained(_key(spec)):
                found.append(info)
            else:
                print(f"{done}: not a run of this table (other settings), left out of the report", flush=True)
    return found


def _pretrain(spec: RunSpec, info: dict) -> Path:
    """Pretrain into spec.where, then ask the pretrained model the dev and test questions; -> its checkpoint."""
    init = spec.where / "pretrain.safetensors"
    info["pretrain"] = stages.pretrain(spec.data, init, spec.variant, spec.recipe,
                                       **_stage_kwargs(spec, "pretrain"))["result"]
    # The pretrained model asked the dev questions as it is: with the QA pairs mixed into pretraining it
    # already answers in their format, and fine-tuning can take answers away (docs/recipes.md#why-fast-and-best-skip-fine-tuning),
    # so the table shows both. Test predictions too, in case dev picks this model.
    _, (correct, total) = stages.evaluate(init, spec.data / DEV, spec.where / "pretrain.dev.predictions", spec.device)
    info["before_finetune"] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}
    _predict_test(init, spec.data, spec.where / "pretrain.test.predictions", spec.device)
    _log_accuracy(spec, "pretrain", info["before_finetune"]["accuracy"], info["pretrain"]["steps"])
    return init


def _evaluate(spec: RunSpec, final: Path, info: dict) -> None:
    """The final model's dev exact match and answer loss, and its test predictions, into info."""
    data, where = spec.data, spec.where
    t = time.perf_counter()
    _, (correct, total) = stages.evaluate(final, data / DEV, where / "dev.predictions", spec.device)
    info["eval_seconds"] = round(time.perf_counter() - t, 2)
    model, vocab, _ = checkpoint.load(final)
    numbered = numbered_questions(data / DEV)
    info["answer_loss"] = answer_loss(model, vocab, [(q, a) for _, q, a in numbered], str(data / DEV),
                                      [n for n, _, _ in numbered])
    _predict_test(final, data, where / "test.predictions", spec.device)
    info.update(correct=correct, total=total, accuracy=100.0 * correct / total)


def finetune_epochs(recipe: str, variant: str, overrides: dict) -> int:
    """The fine-tuning epochs after pretraining: 0 means the pretrained model is the answer."""
    epochs = overrides.get("epochs", stage_table(load_recipe(recipe), "finetune", variant).get("epochs"))
    return TrainConfig.epochs if epochs is None else epochs


def _stage_kwargs(spec: RunSpec, stage: str) -> dict:
    """stages.pretrain/finetune's options for this run; call it as the stage starts (the deadline becomes
    the minutes left then)."""
    opts = dict(spec.run_options or {})
    tb = opts.pop("tensorboard", None)
    keep_state = opts.pop("keep_state", False)
    return {"train_overrides": {**spec.train_overrides, **_stage_options(opts)},
            "tensorboard": _tb(tb, spec.where, spec.out, stage), "quiet": True, "resume": "auto",
            "keep_state": keep_state}


def _tb(tensorboard, where: Path, out: Path, stage: str):
    """A stage's TensorBoard folder: TB/vanilla/seed0/pretrain, beside rope/seed0/pretrain for comparison."""
    return None if tensorboard is None else Path(tensorboard) / where.relative_to(out) / stage


def _log_accuracy(spec: RunSpec, stage: str, accuracy: float, step: int) -> None:
    tensorboard = (spec.run_options or {}).get("tensorboard")
    if tensorboard is not None:  # at the stage's last step, where its curves end
        log_scalar(_tb(tensorboard, spec.where, spec.out, stage), "dev/exact_match", accuracy, step)


def _check_inputs(data: Path, recipe: str, variants, overrides: dict) -> list[str]:
    """The dev answers, once the table's settings and files are known to be good: a bad line or value must
    stop the table before hours of pretraining, not after (the error names the file and line, or the table)."""
    rec = load_recipe(recipe)
    docs, vocab = load_wiki(data / stages.WIKI)
    answers = _check_pairs(data, vocab, model_config(rec, len(vocab), "vanilla", {}).block_size)
    _check_settings(rec, len(docs), len(vocab), variants, overrides)
    return answers


def _check_pairs(data: Path, vocab, block: int) -> list[str]:
    """The dev answers, once every training and dev pair is known to encode with the corpus's vocabulary
    and fit the recipe's block, and every test question too: fine-tuning trains on the first, each run
    scores its answer loss on the second and predicts the third."""
    stages.qa_examples(data / stages.TRAIN_QA, vocab, block)
    numbered = numbered_questions(data / DEV)
    stages.qa_examples(data / DEV, vocab, block, numbered)
    if (data / TEST).is_file():
        test = numbered_questions(data / TEST, need_answers=False)
        prompts_for(vocab, [q for _, q, _ in test], block, str(data / TEST), [n for n, _, _ in test])
    return [a for _, _, a in numbered]


def _check_settings(rec: dict, documents: int, vocab_size: int, variants, overrides: dict) -> None:
    """Every stage's settings for every variant the table trains, resolved as the stages will resolve them:
    a bad value read by one variant only (a [pretrain.rope] table, say) must stop the table before any run
    trains, not after the others have (and then, fixed, make their finished runs another recipe's)."""
    for variant in dict.fromkeys(("vanilla", *variants)):  # the no-pretraining control is a vanilla model
        block = model_config(rec, vocab_size, variant, {}).block_size
        data_options(rec, variant)
        train_config(rec, "pretrain", overrides, documents=documents, block_size=block, variant=variant)
        for scratch in (False, True):
            train_config(rec, "finetune", overrides, documents=documents, block_size=block, variant=variant,
                         from_scratch=scratch)


def _stage_options(run_options: dict | None) -> dict:
    """run_options for a stage about to start: the table's deadline (reproduce --max-minutes) becomes the
    minutes left, at least a moment (0 would mean no limit): a stage that starts late takes one step, saves
    its state and stops, and the same command again goes on from there."""
    opts = dict(run_options or {})
    deadline = opts.pop("deadline", None)
    if deadline is not None:
        opts["max_minutes"] = max((deadline - time.time()) / 60, 1e-9)
    return opts


def _predict_test(ckpt: Path, data: Path, out: Path, device: str) -> None:
    if (data / TEST).is_file():
        stages.evaluate(ckpt, data / TEST, out, device, need_answers=False)


def _recipe_tables(recipe: str) -> dict:
    return {k: v for k, v in load_recipe(recipe).items() if k not in ("name", "path")}  # the values, not where


def reproduce(data, out, recipe: str = "paper", seeds=(0,), variants=("vanilla", "rope"), train_overrides=None,
              header: str = "", run_options: dict | None = None, jobs: int = 1) -> dict:
    """jobs > 1 trains that many runs at once, in processes that share the CPU threads (or the GPU): on a
    2-core CPU a small model gains little from a second thread, so two models side by side finish sooner."""
    data, out = Path(data), Path(out)
    run_options = _check_options(run_options, jobs)
    t0 = time.perf_counter()
    answers = _check_inputs(data, recipe, variants, train_overrides or {})
    check_writable(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)  # after the checks: bad input leaves no empty folder behind
    c, n = london_baseline(answers)
    trained = {k: v for k, v in (train_overrides or {}).items() if k not in RUN_ONLY}  # e.g. max_steps
    results = {"recipe": recipe, "data": str(Path(data).resolve()), "seeds": list(seeds), "overrides": trained,
               "runs": [],
               "london": {"correct": c, "total": n, "accuracy": 100.0 * c / n}}
    specs = plan(data, out, recipe, seeds, variants, train_overrides or {}, run_options)
    # pretraining runs first, so the short fine-tuning-only ones fill the end
    asked = runner.run_all(run_one, specs, jobs, key=lambda spec: not spec.pretrain)
    # every finished run of this table in OUT, not only those asked for this time, in seed and row order
    order = [name for name, _, _ in ROWS]
    runs = sorted(asked + _earlier_runs(specs), key=lambda r: (r["seed"], order.index(r["name"])))
    results["runs"], results["seeds"] = runs, sorted({r["seed"] for r in runs})
    results["minutes"] = round((time.perf_counter() - t0) / 60, 1)  # this invocation (reused runs cost ~0)
    results["run_minutes"] = round(sum(r.get("minutes", 0.0) for r in results["runs"]), 1)
    no_finetune = any(finetune_epochs(recipe, r["name"], train_overrides or {}) == 0
                      for r in runs if r["name"] != "scratch")
    table = report.write(out, results, header, no_finetune)
    print("\n" + table)
    print(f"(full report: {out / 'report.md'})")
    return results


def _check_options(run_options: dict | None, jobs: int) -> dict:
    """reproduce's run_options with --max-minutes turned into a deadline, once the options are known to
    make sense together (before any work)."""
    run_options = dict(run_options or {})
    minutes = run_options.pop("max_minutes", 0)
    if minutes < 0:
        raise UserError(f"--max-minutes must be >= 0 (0 = no limit), got {minutes:g}")
    if minutes:  # a budget for this whole call, not for each stage: a wall-clock deadline
        run_options["deadline"] = time.time() + 60 * minutes
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if run_options.get("tensorboard") is not None:
        check_tensorboard(run_options["tensorboard"])
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--jobs > 1 does not combine with torchrun (every rank would start its own workers); "
                        "use --jobs 1")
    return run_options


def _demo_corpus(data: Path, people: int) -> None:
    """The demo's corpus in `data`: written unless an earlier demo's is there, which is reused only if it is
    the one asked for. write_corpus writes wiki.txt last, so without it any files there are the rest of an
    interrupted write (the same deterministic corpus): they are written again."""
    from spangpt.synth import write_corpus

    if not (data / "wiki.txt").is_file():
        write_corpus(data, people=people, seed=0, style="simple", overwrite=True)
        return
    have = len((data / "wiki.txt").read_text(encoding="utf-8").splitlines())
    if have != people:
        raise UserError(f"{data / 'wiki.txt'}: a corpus of {have} people from an earlier demo, not {people}; "
                        f"use another --out (or --people {have})")


def demo(out, people: int = 500, seeds=(0,), jobs: int = 2) -> dict:
    out = Path(out)
    data = out / "data"
    _demo_corpus(data, people)
    header = (f"Demo: a synthetic corpus of {people} people, one plain biography each "
              f"(`spangpt data synth --style simple --people {people}`), and the small `demo` recipe "
              "(2 layers, 128 dims, the training QA pairs mixed into pretraining, strong weight decay; see "
              "spangpt/recipes/demo.toml): the real experiment's code and objective, scaled down to run in "
              "6-30 minutes on a 2-core CPU, depending on the CPU. The dev people are never in the QA pairs, "
              "so what the models answer about them comes from their biographies. Its numbers are not "
              "comparable with the paper's.\n\n")
    print(header.strip(), flush=True)
    return reproduce(data, out, recipe="demo", seeds=seeds, header=header, jobs=jobs)
