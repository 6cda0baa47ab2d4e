"""`spangpt <command>`: one subcommand per stage; each parses its options and calls one function."""
from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import fields
from pathlib import Path

from spangpt.config import builtin_recipes
from spangpt.errors import RERUN, Stopped, UserError
from spangpt.model import VARIANTS, ModelConfig
from spangpt.train import TrainConfig

# The config fields a training command's options override: every field of the two dataclasses that has an
# option of the same name (the recipe fills the rest); the model's size comes from the recipe or the options,
# its variant and vocabulary never (--variant, the corpus).
MODEL_OPTS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("vocab_size", "variant", "rope_layout"))
TRAIN_OPTS = tuple(f.name for f in fields(TrainConfig))
RESUME_OPTS = ("save_every", "max_minutes")
# the training options `reproduce` passes to every stage it runs (how it runs, or a smoke test's step cap)
REPRODUCE_OPTS = ("device", "precision", "max_steps", "compile", "compile_mode", "row_multiple", "workers")


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _auto(parse):
    """An option whose field may be None (the device decides): "auto" passes through, anything else is parsed."""
    def parse_or_auto(s: str):
        return "auto" if s == "auto" else parse(s)
    parse_or_auto.__name__ = parse.__name__  # argparse names the type in its error message
    return parse_or_auto


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=VARIANTS, required=True, help="position scheme")
    p.add_argument("--data", type=Path, required=True, help="folder with wiki.txt and birth_places_train.tsv")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--recipe", default="paper",
                   help=f"built-in recipe name ({', '.join(builtin_recipes())}) or a .toml path")
    r = p.add_argument_group("interrupting and resuming (README: Interrupting and resuming)")
    r.add_argument("--resume", metavar="{auto,PATH}",
                   help="auto: continue from OUT's saved state if there is one (falling back to the previous "
                        "state if the newest is damaged; a finished run is left as it is, or taken on from a kept state "
                        "to a larger --max-steps); PATH: from that state file")
    r.add_argument("--force", action="store_true",
                   help="start over even though OUT holds a checkpoint or an unfinished run's state (without it, "
                        "either is refused)")
    add_options(r, TrainConfig, RESUME_OPTS)
    r.add_argument("--keep-state", action="store_true",
                   help="keep the finished run's state (weights and optimizer, OUT's .state.pt) to continue it later "
                        "(a larger --max-steps with --resume auto); by default it is removed once the checkpoint is "
                        "written")
    p.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="also log loss, lr, tokens/s and parameter RMS to TensorBoard in DIR (needs the "
                        "[tensorboard] extra)")
    g = p.add_argument_group("overrides (default: the recipe's value)")
    add_options(g, TrainConfig, [n for n in TRAIN_OPTS if n not in RESUME_OPTS])
    add_options(g, ModelConfig, MODEL_OPTS)


def add_options(group, cls, names) -> None:
    """One --option per dataclass field named, built from the field: its type, and the help, choices and
    metavar of its metadata (train.option). Unset options stay None, so the recipe's value stands."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in names:
            continue
        kind, meta = hints[f.name], f.metadata
        kw = {"help": meta.get("help") or None, "metavar": meta.get("metavar")}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        elif kind is bool:
            kw.update(type=_bool, metavar="BOOL")
        elif kind == bool | None:  # None: chosen by the device; "auto" asks for that over a recipe's value
            kw.update(type=_auto(_bool), metavar="{BOOL,auto}")
        elif kind == int | None:
            kw.update(type=_auto(int), metavar="{N,auto}")
        elif typing.get_origin(kind) is tuple:
            kw.update(type=float, nargs=len(typing.get_args(kind)), metavar=kw["metavar"] or "X")
        else:
            kw["type"] = {int: int, float: float}.get(kind, str)
            kw["metavar"] = kw["metavar"] or {int: "N", float: "X"}.get(kw["type"])
        group.add_argument("--" + f.name.replace("_", "-"), **{k: v for k, v in kw.items() if v is not None})


def _overrides(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _run_options(args) -> dict:
    """pretrain's and finetune's options for how a run starts, resumes and logs."""
    if args.force and args.resume:
        raise UserError("--force starts over and --resume continues: give one of them")
    return {"resume": args.resume, "keep_state": args.keep_state, "tensorboard": args.tensorboard, "force": args.force}


def cmd_pretrain(args) -> None:
    from spangpt import stages

    info = stages.pretrain(args.data, args.out, args.variant, args.recipe,
                           _overrides(args, MODEL_OPTS), _overrides(args, TRAIN_OPTS), **_run_options(args))
    r = info["result"]
    if _is_main() and not _finished_before(args, info):
        print(f"saved {args.out}: {r['steps']} steps, final loss {r['final_loss']:.4f}, {r['seconds']}s, "
              f"{r['real_tok_per_s']:.0f} real tok/s")


def cmd_finetune(args) -> None:
    from spangpt import stages

    info = stages.finetune(args.data, args.out, args.variant, args.init, args.recipe,
                           _overrides(args, MODEL_OPTS), _overrides(args, TRAIN_OPTS), **_run_options(args))
    r = info["result"]
    if _is_main() and not _finished_before(args, info):
        if r["steps"] == 0:  # [finetune] epochs = 0
            print(f"saved {args.out}: the recipe fine-tunes for 0 epochs, so this is the --init model unchanged")
        else:
            print(f"saved {args.out}: {r['steps']} steps, final loss {r['final_loss']:.4f}, {r['seconds']}s")


def _is_main() -> bool:  # under torchrun, only rank 0 reports
    from spangpt import distributed

    return distributed.is_main()


def _finished_before(args, info: dict) -> bool:
    if info.get("finished_before"):
        print(f"{args.out}: finished before ({info['result']['steps']} steps, final loss "
              f"{info['result']['final_loss']:.4f}); nothing to do")
    return bool(info.get("finished_before"))


def cmd_evaluate(args, need_answers=True) -> None:
    from spangpt import stages
    from spangpt.evaluate import format_accuracy

    preds, score = stages.evaluate(args.ckpt, args.input, args.out, args.device, need_answers)
    print(f"wrote {len(preds)} predictions to {args.out}")
    if score:
        print(format_accuracy(*score))


def cmd_baseline(args) -> None:
    from spangpt.data import load_questions
    from spangpt.evaluate import format_accuracy, london_baseline

    answers = [a for _, a in load_questions(args.input)]
    print(format_accuracy(*london_baseline(answers)))


def cmd_synth(args) -> None:
    from spangpt.synth import write_corpus

    paths = write_corpus(args.out, people=args.people, seed=args.seed, overwrite=args.force, style=args.style,
                         bios=args.bios)
    print(f"wrote {len(paths)} files to {args.out} ({args.people} people, {args.style}, seed {args.seed})")


def cmd_download(args) -> None:
    from spangpt.download import BASE_URL, download

    paths = download(args.out, base_url=args.url or BASE_URL, overwrite=args.force)
    print(f"{len(paths)} files verified in {args.out}")


def cmd_reproduce(args) -> None:
    from spangpt.reproduce import reproduce

    try:
        reproduce(args.data, args.out, recipe=args.recipe, seeds=args.seeds, variants=args.variants,
                  train_overrides=_overrides(args, REPRODUCE_OPTS),
                  run_options=_overrides(args, ("save_every", "max_minutes", "keep_state", "tensorboard")),
                  jobs=args.jobs)
    except Stopped as e:
        from spangpt.train import EXIT_BUDGET

        if e.exit_code == EXIT_BUDGET and args.max_minutes:  # the stage saw only the minutes left of the table's
            e.why = f"--max-minutes {args.max_minutes:g} used up"  # budget (a recipe's own max_minutes: the stage's)
        e.hint = RERUN  # reproduce always resumes
        raise


def cmd_export(args) -> None:
    from spangpt.export import export

    r = export(args.ckpt, args.out)
    print(f"wrote {args.out}: {r['architecture']}, logits within {r['max_logit_diff']:.1g} of the checkpoint's")


def _models_and_question(items: list[str], question: str | None = None) -> tuple[list[Path], str | None]:
    """`ask CKPT [CKPT ...] [QUESTION]`: the last item is the question unless it is a file or folder (or the
    question came with --question)."""
    if question is None and len(items) > 1 and not Path(items[-1]).exists():
        question = items.pop()
    missing = [i for i in items if not Path(i).exists()]
    if missing:
        raise UserError(f"{missing[0]}: not found (give checkpoints or run folders first, then the question)")
    return [Path(i) for i in items], question


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.0005 else "<0.1%"


def _shown(text: str) -> str:
    """An answer as one cell of a row: quoted with escapes when it holds a newline, a tab or edge spaces."""
    if not text:
        return "(empty)"
    return text if text.isprintable() and text.strip() == text else json.dumps(text, ensure_ascii=False)


def format_answers(res: dict) -> str:
    """The answers of several models to one question, one row per model."""
    rows = [("model", "answer", "p", "top answers (beam search)")]
    for a in res["answers"]:
        if "error" in a:
            rows.append((a["model"], "-", "", a["error"]))
            continue
        top = "  ".join(f"{_shown(alt['text'])}{'' if alt['closed'] else '...'} {_pct(alt['probability'])}"
                        for alt in a["alternatives"])
        rows.append((a["model"], _shown(a["answer"]), _pct(a["probability"]), top))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [res["question"]] + ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    return "\n".join(lines)


def cmd_ask(args) -> None:
    from spangpt.explore import Explorer, load_entries

    paths, question = _models_and_question(list(args.items), args.question)
    entries, _ = load_entries(paths, args.device)
    explorer = Explorer(entries)
    if question is not None:
        print(format_answers(explorer.ask(question, args.top_k)))
        return
    interactive = sys.stdin.isatty()
    lineno = 0
    while True:
        try:
            line = input("question> ") if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not interactive and not line:
            break
        lineno += 1
        if not line.strip():
            continue
        try:
            print(format_answers(explorer.ask(line.rstrip("\n"), args.top_k)), flush=True)
        except UserError as e:
            if not interactive:
                raise UserError(f"<stdin>:{lineno}: {e}") from None
            print(f"spangpt: {e}", file=sys.stderr)


def cmd_complete(args) -> None:
    from spangpt import checkpoint, probe

    model, vocab, _ = checkpoint.load(args.ckpt, device=args.device)
    print(args.text + probe.complete(model, vocab, args.text, args.max_chars, args.temperature, args.seed,
                                     args.top_k))


def cmd_explore(args) -> None:
    from spangpt.explore import serve

    serve(args.paths, data=args.data, host=args.host, port=args.port, device=args.device)


def cmd_demo(args) -> None:
    from spangpt.reproduce import demo

    try:
        demo(args.out, people=args.people, seeds=args.seeds, jobs=args.jobs)
    except Stopped as e:
        e.hint = RERUN  # the demo resumes as reproduce does
        raise


def _with_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, unless the help states it or there is none to state
    (None: the recipe's value or the device's choice; False: a flag off)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _with_defaults(sub)
            continue
        d = action.default
        if not action.option_strings or d is None or d is False or d is argparse.SUPPRESS or \
                "default" in (action.help or ""):
            continue
        shown = (" ".join(map(str, d)) if isinstance(d, list) else str(d)).replace("%", "%%")
        action.help = f"{action.help or ''} (default: {shown})".strip()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spangpt", description="A character-level GPT pretrained on biographies "
                                 "(span corruption), fine-tuned on birthplace questions about other people, "
                                 "and evaluated by exact match: the CS224N pretraining experiment.")
    import torch

    from spangpt import __version__

    ap.add_argument("--version", action="version", version=f"spangpt {__version__} (torch {torch.__version__})")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ap.commands = sub.choices  # name -> its parser, for errors found after parsing

    p = sub.add_parser("pretrain", help="span-corruption pretraining on DATA/wiki.txt")
    _training_options(p)
    p.set_defaults(fn=cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune on DATA/birth_places_train.tsv")
    _training_options(p)
    p.add_argument("--init", type=Path, help="pretrained checkpoint to start from (default: from scratch)")
    p.set_defaults(fn=cmd_finetune)

    for name, need, helptext in (("evaluate", True, "predict and score a question<TAB>answer file"),
                                 ("predict", False, "predict birthplaces for a questions file")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("ckpt", type=Path, help="checkpoint (.safetensors)")
        p.add_argument("--input", type=Path, required=True,
                       help="question<TAB>answer lines" if need else "questions, one per line (answers, if any, ignored)")
        p.add_argument("--out", type=Path, required=True, help="predictions, one per line")
        p.add_argument("--device", default="auto")
        p.set_defaults(fn=lambda a, need=need: cmd_evaluate(a, need))

    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face transformers folder (needs the [hf] extra)")
    p.add_argument("ckpt", type=Path, help="checkpoint (.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="folder for config.json, model.safetensors, the "
                   "tokenizer and a model card")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("ask", help="ask models a question: greedy answer, its probability, the top-k answers",
                       usage="spangpt ask [-h] [--question TEXT] [--top-k K] [--device DEVICE] "
                             "CKPT [CKPT ...] [QUESTION]")
    p.add_argument("items", nargs="+", metavar="CKPT [CKPT ...] [QUESTION]",
                   help="checkpoints (or folders of them) or reproduce folders, then the question (or a bare name: 'Ada Lovelace'); "
                        "without one, questions are read one per line from standard input")
    p.add_argument("--question", "-q", metavar="TEXT", help="the question, when it could be taken for a path")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="answers to list by beam search (default 5)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_ask)

    p = sub.add_parser("complete", help="what a model writes after a text, e.g. 'Ada Lovelace. '")
    p.add_argument("ckpt", type=Path, help="checkpoint (.safetensors)")
    p.add_argument("text")
    p.add_argument("--max-chars", type=int, default=96, metavar="N", help="characters to write at most (default "
                   "96); it also stops at its first ⁇ and at the end of the block")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sample")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample only among the K likeliest "
                   "characters (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_complete)

    p = sub.add_parser("explore", help="a local web page: ask, attention maps, the dev set, training curves "
                       "(needs the [explore] extra)")
    p.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR|CKPT", help="reproduce outputs, run folders, "
                   "checkpoints or folders of them")
    p.add_argument("--data", type=Path, help="the data folder, for the dev set (default: the one they were trained on)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_explore)

    p = sub.add_parser("baseline", help="score 'always London' on a question<TAB>answer file")
    p.add_argument("--input", type=Path, required=True, help="question<TAB>answer lines")
    p.set_defaults(fn=cmd_baseline)

    p = sub.add_parser("data", help="get data: a synthetic corpus, or the original files")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="{synth,download}")
    p.commands = dsub.choices
    d = dsub.add_parser("synth", help="write a deterministic synthetic corpus in the original formats")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--people", type=int, default=600)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--style", choices=("varied", "simple"), default="varied",
                   help="varied: 12 templates with distractors; simple: one plain sentence per person")
    d.add_argument("--bios", type=int, default=1, help="differently worded lines per person (default 1, as the real data)")
    d.add_argument("--force", action="store_true", help="overwrite existing files")
    d.set_defaults(fn=cmd_synth)
    d = dsub.add_parser("download", help="fetch the original CS224N files and verify their SHA-256")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--url", help="base URL (default: the pinned GitHub commit)")
    d.add_argument("--force", action="store_true", help="replace existing files whose checksum is wrong")
    d.set_defaults(fn=cmd_download)

    p = sub.add_parser("reproduce", help="the results table: no pretraining, vanilla, RoPE, London")
    p.add_argument("--data", type=Path, required=True, help="folder with wiki.txt, birth_places_train.tsv, "
                   "birth_dev.tsv (and birth_test_inputs.tsv: test predictions)")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints, predictions and the report")
    p.add_argument("--recipe", default="paper",
                   help=f"built-in recipe name ({', '.join(builtin_recipes())}) or a .toml path")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="a run per seed and variant")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    add_options(p, TrainConfig, REPRODUCE_OPTS)
    p.add_argument("--save-every", type=int, metavar="N", help="save each stage's resumable state every N steps "
                   "(an interrupted table always continues where it stopped when run again)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="stop the whole table after M minutes, "
                   "each running stage's state saved, exit status 75; the same command again goes on")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="train N runs at once, sharing the CPU threads "
                   "(2 on a 2-core CPU: small models gain little from a second thread)")
    p.add_argument("--keep-state", action="store_true", help="keep each finished stage's training state "
                   "(weights and optimizer), to continue a stage later with pretrain or finetune; by default it is removed")
    p.add_argument("--tensorboard", type=Path, metavar="DIR", help="log every stage to TensorBoard under "
                   "DIR/RUN/seedN/STAGE, with the dev exact match at the end (needs the [tensorboard] extra)")
    p.set_defaults(fn=cmd_reproduce)

    p = sub.add_parser("bench", add_help=False, help="training and evaluation speed, reference vs fast path "
                       "(spangpt bench --help)")

    p = sub.add_parser("demo", help="the whole experiment offline on a synthetic corpus (6-30 min on 2 CPU cores, by CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--people", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="runs trained at once (default 2: vanilla and "
                   "RoPE side by side)")
    p.set_defaults(fn=cmd_demo)
    _with_defaults(ap)
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # bench has its own parser (argparse.REMAINDER would not take its --options)
        from spangpt import bench

        return bench.main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "fn", None) is cmd_ask and not any(a.startswith("-") for a in extra):
            args.items += extra  # `ask CKPT --top-k 2 QUESTION`: the question after an option
        else:  # the command's own usage line, not the top level's
            command = parser.commands[args.command]
            if getattr(args, "data_command", None):  # `data synth`, `data download`: their own usage
                command = command.commands[args.data_command]
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    from spangpt import distributed

    try:
        rc = args.fn(args)
    except UserError as e:
        print(f"spangpt: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:  # SIGINT/SIGTERM or --max-minutes: state saved, one line, a non-zero status
        print(f"spangpt: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("spangpt: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()  # under torchrun: leave the process group
    return rc or 0
