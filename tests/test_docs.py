"""The README and docs/: every relative link resolves, and every command they show names real options."""
import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_anchor_matches_github():
    for doc, heading, want in (("docs/recipes.md", "Why fast and best skip fine-tuning", "why-fast-and-best-skip-fine-tuning"),
                               ("docs/extraction.md", "Stored, reached, answered: the recall probe",
                                "stored-reached-answered-the-recall-probe"),
                               ("docs/options.md", "Mixed training: mix_qa", "mixed-training-mix_qa"),
                               ("docs/speed.md", "RoPE's rotation", "ropes-rotation"),
                               ("README.md", "Many GPUs / many machines", "many-gpus--many-machines")):
        assert anchor(heading) == want
        assert want in anchors(ROOT / doc), f"{doc} has no heading {heading!r}"


def test_readme_is_for_users_and_short():
    """The README decides and starts; measurements and reasoning live in docs/."""
    assert len((ROOT / "README.md").read_bytes()) <= 15_000  # bytes: a stricter count than characters


def test_every_recipe_is_in_the_recipe_table():
    """docs/recipes.md lists every recipe, built in or under benchmarks/recipes/, with what it measured."""
    text = (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    recipes = sorted((ROOT / "src" / "spangpt" / "recipes").glob("*.toml")) + sorted((ROOT / "benchmarks" / "recipes").glob("*.toml"))
    assert recipes
    missing = [p.relative_to(ROOT).as_posix() for p in recipes if f"`{p.stem}`" not in text]
    assert not missing, f"not in docs/recipes.md: {missing}"


def test_docs_named_in_the_code_exist():
    """A comment, docstring or recipe that sends a reader to a docs/ page names a page that exists."""
    import subprocess

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    missing = []
    for name in filter(None, files.split("\0")):
        path = ROOT / name
        if path.suffix not in (".py", ".toml", ".sh", ".md") or not path.is_file():
            continue
        for m in re.finditer(r"(?<![\w/.])docs/[\w.-]+\.md", path.read_text(encoding="utf-8", errors="replace")):
            if not (ROOT / m.group()).is_file():
                missing.append(f"{name}: {m.group()}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue  # the web: not checked offline
        file, _, frag = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if ROOT in path.parents else path}")
        elif frag and path.suffix == ".md" and frag not in anchors(path):
            broken.append(f"{target}: no heading #{frag} in {path.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def commands(text: str, program: str) -> list[tuple[bool, str]]:
    """(in a code block, the words after `program`) for each command the text shows: fenced blocks line by line
    (continuations joined, comments dropped), then inline code spans, each split at && ; |."""
    found = []
    blocks = re.findall(r"```(?!python)[a-z]*\n(.*?)```", text, flags=re.S)  # Python is not a shell
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for fenced, chunks in ((True, [b.replace("\\\n", " ") for b in blocks]), (False, spans)):
        for chunk in chunks:
            for line in chunk.splitlines():
                line = re.split(r"\s#\s|\s\s+#", line)[0]
                for part in re.split(r"&&|;|\|(?!\w)", line):
                    m = re.search(rf"(?:^|\s){re.escape(program)}\s+(\S.*)", part)
                    if m and not part.lstrip().startswith("#"):
                        found.append((fenced, " ".join(m.group(1).split())))
    return found


def test_commands_finds_blocks_spans_and_chains():
    text = ("```bash\nspangpt pretrain --data D \\\n  --out X  # a comment\n# spangpt not-a-command\n```\n"
            "```python\nfrom spangpt import probe\n```\n"
            "and `spangpt evaluate C --input Q && spangpt predict C --input T` in prose")
    assert commands(text, "spangpt") == [(True, "pretrain --data D --out X"), (False, "evaluate C --input Q"),
                                         (False, "predict C --input T")]


def _option_strings(parser) -> set[str]:
    return set(parser._option_string_actions)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_spangpt_commands_in_the_docs_exist(doc):
    """Every `spangpt ...` command the docs show names a real subcommand and only options it has; one in a
    code block (meant to be pasted) must parse as it stands. Renaming an option breaks this, not a reader."""
    import argparse
    from spangpt import bench
    from spangpt.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    data_subs = next(a for a in subs["data"]._actions if isinstance(a, argparse._SubParsersAction)).choices
    wrong = []
    for fenced, cmd in commands(doc.read_text(encoding="utf-8"), "spangpt"):
        words = cmd.split()
        if words[0] not in subs:
            if fenced:
                wrong.append(f"{cmd}: no subcommand {words[0]}")
            continue  # prose that mentions spangpt ("another spangpt process ...")
        sub = subs[words[0]] if words[0] != "bench" else bench._parser()
        if words[0] == "data" and len(words) > 1 and words[1] in data_subs:
            sub = data_subs[words[1]]
        known = _option_strings(sub)
        unknown = [w for w in re.findall(r"(?:^|[\s\[])(--[a-z][a-z0-9-]*)", cmd) if w not in known]
        if unknown:
            wrong.append(f"{cmd}: {words[0]} has no {', '.join(unknown)}")
        elif fenced:
            try:
                if words[0] == "bench":
                    bench._parser().parse_args(words[1:])
                else:
                    parser.parse_args(shlex.split(cmd))  # as the shell splits it: "Ada Lovelace. " is one word
            except SystemExit:
                wrong.append(f"{cmd}: does not parse")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_benchmark_commands_in_the_docs_exist(doc):
    """Every `python benchmarks/X.py ...` the docs show names a script that exists and options it defines (or,
    for a script that hands the options it does not know to `spangpt pretrain`, options pretrain has)."""
    import argparse
    from spangpt.cli import build_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    wrong = []
    for _, cmd in commands(doc.read_text(encoding="utf-8"), "python"):
        script = cmd.split()[0]
        if not script.startswith("benchmarks/"):
            continue
        path = ROOT / script
        if not path.is_file():
            wrong.append(f"{cmd}: no file {script}")
            continue
        source = path.read_text(encoding="utf-8")
        forwarded = _option_strings(subs["pretrain"]) if "parse_known_args" in source else set()
        unknown = [o for o in re.findall(r"(?:^|\s)(--[a-z][a-z0-9-]*)", cmd)
                   if f'"{o}"' not in source and o not in forwarded]
        if unknown:
            wrong.append(f"{cmd}: {script} has no {', '.join(unknown)}")
    assert not wrong, "\n".join(wrong)


def test_commands_in_recipe_comments_parse():
    """The commands a recipe's header shows (`#   spangpt reproduce ... --recipe benchmarks/recipes/x.toml`) parse,
    and the recipe they name exists (a built-in name or a file)."""
    from spangpt.cli import build_parser
    from spangpt.config import builtin_recipes

    parser = build_parser()
    wrong = []
    for path in sorted((ROOT / "src" / "spangpt" / "recipes").glob("*.toml")) + sorted((ROOT / "benchmarks" / "recipes").glob("*.toml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"#\s+spangpt\s+(.*)", line)
            if not m:
                continue
            words = m.group(1).split()
            try:
                args = parser.parse_args(words)
            except SystemExit:
                wrong.append(f"{path.name}: {m.group(1)}: does not parse")
                continue
            recipe = getattr(args, "recipe", None)
            if recipe and recipe not in builtin_recipes() and not (ROOT / recipe).is_file():
                wrong.append(f"{path.name}: {m.group(1)}: no recipe {recipe}")
    assert not wrong, "\n".join(wrong)


def test_the_python_example_runs(run_dir, synth_dir, capsys):
    """docs/running.md "From Python", run as it stands on a tiny model and a synthetic dev person."""
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    code = re.search(r"## From Python.*?```python\n(.*?)```", text, re.S).group(1)
    name = next(iter((synth_dir / "birth_dev.tsv").read_text(encoding="utf-8").splitlines())).split("\t")[0]
    name = name.removeprefix("Where was ").removesuffix(" born?")
    code = code.replace("runs/best/vanilla/seed0/pretrain.safetensors",
                        str(run_dir / "vanilla" / "seed0" / "pretrain.safetensors")).replace("Ralf Wadephul", name)
    exec(compile(code, "docs/running.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 4 and out[1].startswith("[") and out[2].startswith("[(")  # a completion may hold newlines
