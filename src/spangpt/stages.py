"""The experiment's stages as plain functions: pretrain, finetune, evaluate. The CLI and `reproduce`
call these; each writes its checkpoint plus, beside it, the resolved config and a metrics file. While a
stage trains, its resumable state (spangpt.state) and lock lie beside them too; once it has finished, both
are removed (keep_state=True keeps the state, to continue training the model later).
"""
from __future__ import annotations

import json
import random
from contextlib import nullcontext
from pathlib import Path

import torch

from spangpt import checkpoint, distributed, state
from spangpt.config import data_options, load_recipe, model_config, train_config, zero_positions
from spangpt.data import finetune_examples, load_corpus, load_wiki, numbered_questions, pretrain_example
from spangpt.errors import UserError
from spangpt.fileio import atomic_write, check_writable
from spangpt.evaluate import accuracy, predict, write_predictions
from spangpt.model import GPT
from spangpt.sampler import EpochSampler
from spangpt.device import pick_device, wants_fast_dropout
from spangpt.train import run_steps, train
from spangpt.trainlog import check_tensorboard

WIKI, TRAIN_QA = "wiki.txt", "birth_places_train.tsv"
STATE = ".state.pt"  # beside the checkpoint: <name>.state.pt and <name>.state.prev.pt


def sidecar(ckpt: Path, suffix: str) -> Path:
    """runs/x/vanilla.pretrain.safetensors -> runs/x/vanilla.pretrain<suffix>"""
    return ckpt.with_name(ckpt.name.removesuffix(".safetensors") + suffix)


def check_out(out: Path, inputs: dict, example: str = "model.safetensors") -> None:
    """Refuse, before any work, an --out that would be lost or would destroy an input: a folder (the rename
    at the end would fail after the whole run), a place that cannot be written, or one of the files this
    command reads, e.g. `finetune
    --init X --out X`, which would overwrite the pretrained model, its metrics and its state.
    inputs: {what: path}."""
    if out.is_dir():
        raise UserError(f"{out}: is a folder; --out takes a file name (e.g. {out / example})")
    check_writable(out)
    for what, path in inputs.items():
        if path is not None and out.resolve() == Path(path).resolve():
            raise UserError(f"{out}: is also this command's {what}; writing there would destroy it, "
                            f"choose another --out")


def _start(run: dict, out: Path, quiet: bool) -> None:
    if not quiet:
        print(json.dumps(run, indent=2))
    atomic_write(sidecar(out, ".config.json"), lambda t: Path(t).write_text(json.dumps(run, indent=2)))


def pretrain(data: Path, out: Path, variant: str, recipe: str = "paper", model_overrides=None,
             train_overrides=None, quiet: bool = False, mix_qa: bool | None = None,
             resume: str | None = None, keep_state: bool = False, tensorboard=None, force: bool = False) -> dict:
    """Span-corruption pretraining on DATA/wiki.txt.

    mix_qa (default: the recipe's [pretrain] mix_qa, false in `paper`): also train, every epoch, on the
    fine-tuning pairs of DATA/birth_places_train.tsv (never dev or test). Allen-Zhu & Li (2023) found that
    seeing some people's facts as QA while the biographies are memorised makes the facts of *other*
    people extractable.
    The recipe's [pretrain] may also set `focus = P`, `corruption = "original"`, `window = true` and
    `salient_mask = P` (data.Corruption).

    resume: None (start over; refused while `out` holds a checkpoint or an unfinished run's state, unless
    force), "auto" (continue from the saved state if there is one; a finished run is returned as it is), or a
    state file. force: start over even then (the old states are removed as training starts).
    keep_state: keep the finished run's state (weights, optimizer) beside the checkpoint instead of removing it.
    tensorboard: a folder for TensorBoard event files (loss, lr, tokens/s, parameter RMS per log step).
    """
    data, out = Path(data), Path(out)
    check_out(out, {"corpus": data / WIKI, "training pairs": data / TRAIN_QA})
    docs, vocab = load_wiki(data / WIKI)
    rec = load_recipe(recipe)
    recipe_mix_qa, how = data_options(rec, variant)
    mix_qa = recipe_mix_qa if mix_qa is None else mix_qa
    mcfg = model_config(rec, len(vocab), variant, model_overrides or {})
    if mcfg.block_size < 6:  # span corruption truncates each line to a length drawn from [4, 3/4 of the block]
        raise UserError(f"block_size {mcfg.block_size} is too small for span-corruption pretraining (at least 6)")
    tcfg = train_config(rec, "pretrain", train_overrides or {}, documents=len(docs), block_size=mcfg.block_size,
                        variant=variant)
    # the data as an absolute path: `explore` and `ask` read the dev set from it, from wherever they are started
    run = {"stage": "pretrain", "recipe": rec["name"], "data": str(Path(data).resolve()), "documents": len(docs),
           "mix_qa": mix_qa, "window": how.window, "salient_mask": how.salient_mask,
           "focus": how.focus, "corruption": how.style, "sampler": how.sampler, "zero_positions": zero_positions(rec, "pretrain", variant),
           "model": mcfg.to_dict(), "train": tcfg.to_dict()}
    torch.manual_seed(tcfg.seed)  # the initial weights are part of what --seed fixes
    model = _init_positions(GPT(mcfg, fast_dropout=wants_fast_dropout(tcfg)), run["zero_positions"])
    block = mcfg.block_size

    qa = qa_examples(data / TRAIN_QA, vocab, block) if mix_qa else []

    if how.sampler == "numpy":  # a whole epoch in a few array operations (spangpt.sampler)
        sampler = EpochSampler(docs, vocab, block, how)
        draw = lambda rng: sampler.draw(rng) + qa  # noqa: E731
    else:
        def draw(rng: random.Random):  # a fresh random corruption of every document, each epoch
            return [pretrain_example(d, vocab, block, rng, how) for d in docs] + qa

    return _fit(out, model, vocab, draw, tcfg, run, f"pretrain {variant}", resume, quiet, keep_state, tensorboard,
                force)


def finetune(data: Path, out: Path, variant: str, init: Path | None = None, recipe: str = "paper",
             model_overrides=None, train_overrides=None, quiet: bool = False, resume: str | None = None,
             keep_state: bool = False, tensorboard=None, force: bool = False) -> dict:
    """Fine-tuning on DATA/birth_places_train.tsv, from the pretrained checkpoint `init` or from scratch.
    A recipe may fine-tune for 0 epochs after pretraining ([finetune] epochs = 0): the checkpoint written is
    then the pretrained model, unchanged. resume, keep_state, tensorboard, force: as for pretrain."""
    data, out = Path(data), Path(out)
    qa_path = data / TRAIN_QA
    check_out(out, {"--init checkpoint": init, "corpus": data / WIKI, "training pairs": qa_path})
    if init is not None and sidecar(out, "").resolve() == sidecar(Path(init), "").resolve():
        # `--out runs/v` beside `--init runs/v.safetensors`: other names, the same .state.pt, .metrics.jsonl
        # and .config.json, which this run would overwrite
        raise UserError(f"{out}: shares its state, metrics and config files with the --init checkpoint {init}; "
                        "choose another --out")
    numbered = numbered_questions(qa_path)
    rec = load_recipe(recipe)
    if init is not None:
        model, vocab, init_info = checkpoint.load(init, variant=variant)
        documents = init_info.get("documents")
        if not isinstance(documents, int) or isinstance(documents, bool) or documents < 1:  # old or damaged info
            documents = len(load_corpus(data / WIKI))
        if model_overrides:
            raise UserError("model options (--n-layer, ...) cannot change a pretrained model; drop them or --init")
        mcfg = model.cfg
    else:
        docs, vocab = load_wiki(data / WIKI)  # same vocabulary as pretraining would build
        documents = len(docs)
        mcfg = model_config(rec, len(vocab), variant, model_overrides or {})
    tcfg = train_config(rec, "finetune", train_overrides or {}, documents=documents, block_size=mcfg.block_size,
                        from_scratch=init is None, variant=variant)
    examples = qa_examples(qa_path, vocab, mcfg.block_size, numbered)
    run = {"stage": "finetune", "recipe": rec["name"], "data": str(Path(data).resolve()),
           "init": str(init) if init else None,
           "init_weights": state.weights_digest(model) if init else None,
           "zero_positions": init is None and zero_positions(rec, "finetune", variant),
           "documents": documents, "model": mcfg.to_dict(), "train": tcfg.to_dict()}
    torch.manual_seed(tcfg.seed)
    if init is not None:
        model.use_fast_dropout(wants_fast_dropout(tcfg))  # the run's dropout, on the pretrained weights
    else:  # the recipe's initial positions
        model = _init_positions(GPT(mcfg, fast_dropout=wants_fast_dropout(tcfg)), run["zero_positions"])
    desc = f"finetune {variant}" + (" from scratch" if init is None else "")  # the no-pretraining control's lines
    return _fit(out, model, vocab, lambda rng: examples, tcfg, run, desc, resume, quiet, keep_state,
                tensorboard, force)


def _init_positions(model: GPT, zero: bool) -> GPT:
    if zero and model.pos_emb is not None:  # RoPE has no table
        torch.nn.init.zeros_(model.pos_emb.weight)
    return model


def qa_examples(path: Path, vocab, block_size: int, numbered=None) -> list:
    """The training pairs as examples; an error names the pair's line in the file."""
    numbered = numbered or numbered_questions(path)
    pairs, lines = [(q, a) for _, q, a in numbered], [n for n, _, _ in numbered]
    return finetune_examples(pairs, vocab, block_size, str(path), lines)


def _fit(out: Path, model, vocab, draw, tcfg, run: dict, desc: str, resume: str | None, quiet: bool,
         keep_state: bool = False, tensorboard=None, force: bool = False) -> dict:
    """Train under the lock on `out` (from the saved state if resuming), then write the checkpoint and
    remove the state (keep_state: mark it finished instead). Inputs are all read and checked before this,
    so a bad file changes nothing. The checkpoint's info keeps the run's fingerprint (spangpt.state), so a
    later --resume auto knows the run is finished, and with the same settings, without the state.

    Under torchrun every rank comes here; rank 0 alone holds the lock, reads the saved state (and sends
    it to the others: no shared filesystem needed) and writes the files."""
    if tensorboard is not None:
        check_tensorboard(tensorboard)  # before anything is written
    state_path = sidecar(out, STATE)
    run["world_size"] = distributed.setup(pick_device(tcfg.device))
    main = distributed.is_main()
    with state.lock(out) if main else nullcontext():
        try:
            init = run.get("init_weights")
            outcome = _resume_point(out, state_path, model, draw, tcfg, resume, init, force) if main else None
        except UserError as e:  # every rank reports it and exits 2, rather than the others hanging
            outcome = e
        outcome = distributed.broadcast(outcome)
        if isinstance(outcome, UserError):
            raise outcome
        saved, finished = outcome or (None, None)
        if finished is not None:
            return finished
        if main:
            if saved is not None:
                print(f"resuming from {saved.path} at step {saved.step}", flush=True)
            _start(run, out, quiet)
        # no state is written after the last step unless it is to be kept
        res = train(model, draw, tcfg, sidecar(out, ".metrics.jsonl"), desc, state_path=state_path, resume=saved,
                    init=run.get("init_weights"), tensorboard=tensorboard, final_state=keep_state)
        info = {**run, "result": _summary(res), "fingerprint": res.fingerprint}
        if main:
            checkpoint.save(out, model, vocab, info)
            if keep_state:
                state.mark_finished(state_path)
            else:  # the optimizer state doubles a run's size and is of no use once the model is written
                state.remove(state_path)
        distributed.barrier()  # the job ends when the checkpoint is written
    return info


def _resume_point(out: Path, state_path: Path, model, draw, tcfg, resume: str | None,
                  init: str | None = None, force: bool = False) -> tuple[state.TrainState | None, dict | None]:
    """-> (the state to continue from, None: start over; the info of a run that already finished, or None).
    A state is checked against the settings here, before anything says it resumes. A finished run kept with
    --keep-state continues when asked for more steps than it took (a larger --max-steps)."""
    state.clean_temp_files(state_path)
    if resume is None:
        _check_fresh_start(out, state_path, force)
        return None, None
    saved = _saved_state(state_path, resume)
    if saved is None and not out.is_file():  # --resume auto with nothing saved: step 0
        return None, None
    first = draw(random.Random(tcfg.seed))
    now, steps = state.fingerprint(model.cfg.to_dict(), tcfg.trained(), first, init), run_steps(len(first), tcfg)
    if saved is not None:
        state.check_same_run(saved.run, now, saved.path)
        if saved.step > steps:
            raise UserError(f"{saved.path}: saved at step {saved.step}, past the {steps} steps asked now (--max-steps); "
                            "give another --out to train a shorter run")
        if not (saved.finished and out.is_file()) or saved.step < steps:
            return saved, None
        return None, _finished(out, saved.step, steps, kept=True)
    info = checkpoint.read_info(out)
    if "fingerprint" not in info:
        return None, None
    state.check_same_run(info["fingerprint"], now, out)
    return None, _finished(out, info.get("result", {}).get("steps", steps), steps, kept=False, info=info)


def _finished(out: Path, done: int, steps: int, kept: bool, info: dict | None = None) -> dict:
    """The info of a run that finished at step `done`, asked now for `steps` (they differ only by --max-steps)."""
    if done > steps:
        raise UserError(f"{out}: a finished run of {done} steps, asked now for {steps} (--max-steps); give another "
                        "--out to train a shorter one")
    if done < steps and not kept:
        raise UserError(f"{out}: a finished run of {done} steps whose training state was removed, so it cannot go on "
                        f"to step {steps} (--keep-state keeps it to continue later); train it again without "
                        "--resume, or give another --out")
    return {**(info or checkpoint.read_info(out)), "finished_before": True}


def _check_fresh_start(out: Path, state_path: Path, force: bool) -> None:
    """Starting over must not throw away what an earlier run wrote, unless asked to (force)."""
    if force:  # the old run's states must not be taken for the new run's after a later interruption
        state.remove(state_path)
        return
    try:
        found = state.load_latest(state_path, warn=False)
    except UserError:  # nothing but damaged states: nothing to protect
        found = None
    if found is not None and not found[0].finished:
        raise UserError(f"{found[1]}: an unfinished run is saved here (step {found[0].step}); add --resume auto to "
                        "continue it, or --force to start over")
    if out.exists():
        raise UserError(f"{out}: a finished checkpoint is here; --resume auto leaves it as it is, --force trains "
                        "it again from scratch, or give another --out")


def _saved_state(state_path: Path, resume: str) -> state.TrainState | None:
    if resume == "auto":
        found = state.load_latest(state_path)
        return found[0] if found else None
    return state.load(resume)


def evaluate(ckpt: Path, input_path: Path, out: Path | None, device: str = "auto", need_answers: bool = True):
    """-> (predictions, (correct, total) or None). Writes predictions when out is given."""
    if out is not None:
        check_out(Path(out), {"--input file": input_path, "checkpoint": ckpt}, example="dev.predictions")
    numbered = numbered_questions(input_path, need_answers=need_answers)
    model, vocab, _ = checkpoint.load(ckpt, device=pick_device(device))
    questions, lines = [q for _, q, _ in numbered], [n for n, _, _ in numbered]
    preds = predict(model, vocab, questions, source=str(input_path), lines=lines)
    if out is not None:
        write_predictions(out, preds)
    answers = [a for _, _, a in numbered]
    score = accuracy(preds, answers) if need_answers else None  # numbered_questions checked every answer is there
    return preds, score


def _summary(res) -> dict:
    return {"steps": res.steps, "tokens": res.tokens, "real_tokens": res.real_tokens,
            "final_loss": res.final_loss, "seconds": round(res.seconds, 1),
            "real_tok_per_s": round(res.real_tokens / max(res.seconds, 1e-9), 1), "ran_with": res.path}
