"""Recipes (TOML files) -> ModelConfig + TrainConfig, with command-line overrides on top.

A recipe has three tables: [model], [pretrain], [finetune]. Built-in recipes live in spangpt/recipes/;
`--recipe` also takes a path to your own file. A stage may hold per-variant overrides as a sub-table,
e.g. `[pretrain.vanilla]` with `weight_decay = 0.5`: the two position schemes need not want the same values.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from spangpt.data import Corruption
from spangpt.errors import BadValue, UserError
from spangpt.model import VARIANTS, ModelConfig
from spangpt.train import OPTIONAL, TrainConfig

RECIPE_DIR = Path(__file__).parent / "recipes"
STAGES = ("pretrain", "finetune")
# recipe keys that are not TrainConfig fields: they are resolved into TrainConfig values below
# [pretrain] data options, read by stages.pretrain
DATA_KEYS = ("mix_qa", "window", "salient_mask", "focus", "corruption", "sampler")
FROM_SCRATCH = ("epochs", "lr")  # [finetune] epochs_from_scratch, lr_from_scratch: used when there is no --init
# the stage each extra key belongs to: elsewhere it would be read by nobody, so it is an error there
EXTRA_KEYS = {"decay_epochs": STAGES, "zero_positions": STAGES,
              **{f"{k}_from_scratch": ("finetune",) for k in FROM_SCRATCH},
              **{k: ("pretrain",) for k in DATA_KEYS}}
NOT_IN_RECIPE = {"variant": "--variant", "vocab_size": "the corpus"}  # ModelConfig fields set elsewhere


# Recipe names that are files under benchmarks/recipes/, not built in: the error names the built-in to use instead
RENAMED = {"fast-30min": "fast", "fast-30min-focus": "fast", "fast-90min": "best", "fast-90min-focus50-linear": "best"}


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str, _chain: tuple = ()) -> dict:
    """A recipe by built-in name or .toml path, checked. A top-level `base = "best"` (a built-in name, or a
    .toml path from the recipe's folder) starts from that recipe: this file's values replace the base's, key
    by key, in every table and sub-table."""
    path = _recipe_path(name_or_path)
    if path.resolve() in _chain:
        raise UserError(f"{path}: base recipes go round in a circle: "
                        f"{' -> '.join(p.name for p in (*_chain, path.resolve()))}")
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: {e}") from None
    if "base" in recipe:
        base = recipe.pop("base")
        if not isinstance(base, str) or not base:
            raise UserError(f"{path}: base must be a recipe name or a .toml path, got {base!r}")
        parent = load_recipe(base if not Path(base).suffix else str(path.parent / base), (*_chain, path.resolve()))
        recipe = _merged(_unshadowed({k: v for k, v in parent.items() if k not in ("name", "path")}, recipe), recipe)
    _check_tables(path, recipe)
    recipe["name"], recipe["path"] = path.stem, str(path)
    return recipe


def _unshadowed(base: dict, mine: dict) -> dict:
    """base less the variant values that would hide mine: a value this file sets in a stage table replaces
    the base's value of that key in the stage's variant sub-tables too (`base = "demo"` with `[pretrain]
    epochs = 3` means 3 epochs for vanilla as well, though demo's [pretrain.vanilla] says 250), unless the file
    sets that sub-table's key itself."""
    out = dict(base)
    for stage in STAGES:
        set_here = {k for k, v in mine.get(stage, {}).items() if not isinstance(v, dict)}
        if not set_here or not isinstance(base.get(stage), dict):
            continue
        out[stage] = {k: ({kk: vv for kk, vv in v.items() if kk not in set_here} if isinstance(v, dict) else v)
                      for k, v in base[stage].items()}
    return out


def _merged(base: dict, mine: dict) -> dict:
    """base with mine on top: tables merged key by key (sub-tables too), any other value replaced."""
    out = dict(base)
    for key, value in mine.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def _recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.toml"
        if not path.is_file() and name_or_path in RENAMED:
            raise UserError(f"recipe '{name_or_path}' is no longer built in: '{RENAMED[name_or_path]}' replaced it "
                            f"(the old one is benchmarks/recipes/{name_or_path}.toml in the source tree: pass its path)")
        if not path.is_file():
            raise UserError(f"unknown recipe '{name_or_path}' (built in: {', '.join(builtin_recipes())}; or give a .toml path)")
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    return path


def _check_tables(path: Path, recipe: dict) -> None:
    unknown = sorted(set(recipe) - {"model", *STAGES})
    if unknown:  # a misspelt [pretrian] would otherwise drop that whole stage's values without a word
        raise UserError(f"{path}: unknown table(s) {', '.join(unknown)} "
                        "(a recipe has [model], [pretrain], [finetune], and may name a base)")
    for name in ("model", *STAGES):
        if not isinstance(recipe.get(name, {}), dict):
            raise UserError(f"{path}: {name} must be a table ([{name}])")
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)} - set(NOT_IN_RECIPE)
    for key, source in NOT_IN_RECIPE.items():
        if key in recipe.get("model", {}):
            raise UserError(f"{path}: [model] cannot set {key}: it comes from {source}")
    tables = [("model", recipe.get("model", {}), model_keys)]
    for stage in STAGES:
        table = recipe.get(stage, {})
        extra = {key for key, stages in EXTRA_KEYS.items() if stage in stages}
        train_keys = {f.name for f in dataclasses.fields(TrainConfig)} | extra
        tables.append((stage, table, train_keys | set(VARIANTS)))
        for variant in VARIANTS:
            if variant in table:
                if not isinstance(table[variant], dict):
                    raise UserError(f"{path}: [{stage}] {variant} must be a table ([{stage}.{variant}])")
                tables.append((f"{stage}.{variant}", table[variant], train_keys))
    for name, table, allowed in tables:
        misplaced = sorted(k for k in set(table) - allowed if k in EXTRA_KEYS)
        if misplaced:
            raise UserError(f"{path}: [{name}] cannot set {', '.join(misplaced)}: only "
                            f"[{EXTRA_KEYS[misplaced[0]][0]}] reads it")
        unknown = set(table) - allowed
        if unknown:
            raise UserError(f"{path}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")


def stage_table(recipe: dict, stage: str, variant: str | None = None) -> dict:
    """A stage's table with the variant's overrides ([stage.variant]) on top, the sub-tables removed."""
    table = recipe.get(stage, {})
    shared = {k: v for k, v in table.items() if k not in VARIANTS}
    return {**shared, **table.get(variant, {})}


def _table_of(recipe: dict, stage: str, variant: str | None, key: str) -> str:
    """The table a stage's key came from, for messages: "pretrain.rope" if that sub-table sets it."""
    return f"{stage}.{variant}" if variant and key in recipe.get(stage, {}).get(variant, {}) else stage


def data_options(recipe: dict, variant: str | None = None) -> tuple[bool, Corruption]:
    """The [pretrain] table's data options (read by stages.pretrain, not TrainConfig fields), checked:
    -> (mix_qa: the fine-tuning pairs mixed into every pretraining epoch, how each line is corrupted)."""
    table = stage_table(recipe, "pretrain", variant)
    mix_qa = table.get("mix_qa", False)
    if not isinstance(mix_qa, bool):
        raise UserError(f"{_source(recipe)} [{_table_of(recipe, 'pretrain', variant, 'mix_qa')}]: mix_qa must be "
                        f"true or false, got {mix_qa!r}")
    keys = {"corruption": "style", "focus": "focus", "window": "window", "salient_mask": "salient_mask",
            "sampler": "sampler"}
    try:
        how = Corruption(**{field: table[key] for key, field in keys.items() if key in table})
    except BadValue as e:
        raise UserError(f"{_source(recipe)} [{_table_of(recipe, 'pretrain', variant, e.key)}]: {e}") from None
    return mix_qa, how


def zero_positions(recipe: dict, stage: str, variant: str | None = None) -> bool:
    """`zero_positions = true`: a freshly built vanilla model's position table starts at zero, as the
    original's (`nn.Parameter(torch.zeros(...))`), instead of N(0, 0.02) like every other weight."""
    flag = stage_table(recipe, stage, variant).get("zero_positions", False)
    if not isinstance(flag, bool):
        raise UserError(f"{_source(recipe)} [{_table_of(recipe, stage, variant, 'zero_positions')}]: zero_positions "
                        f"must be true or false, got {flag!r}")
    return flag


def model_config(recipe: dict, vocab_size: int, variant: str, overrides: dict) -> ModelConfig:
    kw = {**recipe.get("model", {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return ModelConfig(vocab_size=vocab_size, variant=variant, **kw)
    except ValueError as e:
        raise UserError(f"{_source(recipe)} [model] or the command line: {e}") from None


def train_config(recipe: dict, stage: str, overrides: dict, *, documents: int, block_size: int,
                 from_scratch: bool = False, variant: str | None = None) -> TrainConfig:
    """Resolve one stage for one variant (None: the stage's table alone). documents = lines of the
    pretraining corpus (sizes the paper's final_tokens)."""
    kw = stage_table(recipe, stage, variant)
    decay_epochs = kw.pop("decay_epochs", 0)
    if isinstance(decay_epochs, bool) or not isinstance(decay_epochs, int) or decay_epochs < 0:
        raise UserError(f"{_source(recipe)} [{_table_of(recipe, stage, variant, 'decay_epochs')}]: decay_epochs "
                        f"must be a whole number >= 0, got {decay_epochs!r}")
    scratch = {k: kw.pop(f"{k}_from_scratch") for k in FROM_SCRATCH if f"{k}_from_scratch" in kw}
    # where each value came from, for messages: (table, key as the recipe spells it)
    origin = {k: (_table_of(recipe, stage, variant, k), k) for k in kw}
    for data_option in (*DATA_KEYS, "zero_positions"):
        kw.pop(data_option, None)
    if stage == "finetune" and from_scratch:
        kw.update(scratch)
        for k in scratch:
            origin[k] = (_table_of(recipe, stage, variant, f"{k}_from_scratch"), f"{k}_from_scratch")
    if decay_epochs:
        kw["final_tokens"] = decay_epochs * documents * block_size
    command_line = {k for k, v in overrides.items() if v is not None}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    # "auto", in a recipe or on the command line: a field whose None means "chosen by the device" (compile,
    # row_multiple, workers, fast_dropout), so that a variant's table or an option can give the choice back
    kw.update({k: None for k, v in kw.items() if v == "auto" and k in OPTIONAL})
    # fine-tuning a pretrained model may take 0 epochs: the recipe then evaluates the pretrained model as it is
    min_epochs = 0 if stage == "finetune" and not from_scratch else 1

    def bad(key: str, want: str, value) -> UserError:
        if key == "epochs":
            want = f"a whole number >= {min_epochs}"
        if key in command_line:
            return UserError(f"the command line [{stage}]: {key} must be {want}, got {value!r}")
        table, name = origin.get(key, (stage, key))
        return UserError(f"{_source(recipe)} [{table}]: {name} must be {want}, got {value!r}")

    epochs = kw.get("epochs", TrainConfig.epochs)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < min_epochs:
        raise bad("epochs", "", epochs)
    try:
        cfg = TrainConfig(**kw)
    except BadValue as e:  # a TOML value of the wrong type would otherwise be taken at face value
        raise bad(e.key, e.want, e.value) from None
    if cfg.schedule == "paper" and not cfg.final_tokens:
        where = "the command line" if "schedule" in command_line else \
            f"{_source(recipe)} [{_table_of(recipe, stage, variant, 'schedule')}]"
        default = "" if "schedule" in command_line or "schedule" in origin else " (the default: the table sets none)"
        raise UserError(f"{where}: schedule 'paper'{default} needs decay_epochs (or final_tokens); or set schedule "
                        "to cosine, linear or constant")
    return cfg


def _source(recipe: dict) -> str:
    return recipe.get("path", f"recipe '{recipe['name']}'")
