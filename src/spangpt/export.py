"""`spangpt export`: a checkpoint as a Hugging Face folder that `transformers` loads without spangpt.

vanilla becomes GPT-2 (learned positions), rope becomes GPT-NeoX (rotary). Both have spangpt's block as it is:
pre-LayerNorm, one fused qkv projection with biases, an exact (erf) GELU MLP 4x wide, a final LayerNorm and
a head without bias that is not tied to the embedding. Two layouts differ and are rearranged here:
- GPT-2's Conv1D keeps its matrices as (in, out): every Linear weight is transposed.
- GPT-NeoX fuses qkv per head, rows [head, (q k v), head_dim], where spangpt stacks [(q k v), head, head_dim];
  and it rotates dimension i with i + head_dim/2 (rotate_half) where spangpt rotates the adjacent pair
  (2i, 2i+1), by the same angle t*θ_i. Reordering each head's q and k rows to (0, 2, 4, ..., 1, 3, 5, ...)
  turns one rotation into the other, and q·k is unchanged when q and k are permuted alike: same attention.
The tokenizer is one token per character with spangpt's ids (PAD □ 0, MASK ⁇ 1, then the corpus's sorted
characters); a character outside the vocabulary is an error, as it is for spangpt.
Before writing anything, both models read the same text and their logits must agree (check_same_logits).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from spangpt import checkpoint
from spangpt.errors import UserError
from spangpt.fileio import check_writable
from spangpt.model import GPT
from spangpt.vocab import MASK, MASK_ID, PAD, PAD_ID, Vocab

INSTALL = 'spangpt export needs transformers and tokenizers: pip install -e ".[hf]"'
MAX_NEW = 32  # the characters spangpt's evaluation lets an answer run to (evaluate.predict)
TOLERANCE = 1e-4  # fp32 logits; the conversion measures ~1e-6 (tests/test_export.py)


def export(ckpt: Path, out: Path) -> dict:
    """Write the folder; -> a summary {"architecture", "max_logit_diff"} for the CLI's line."""
    transformers = _import_hf()
    ckpt, out = Path(ckpt), Path(out)
    _check_out(out)
    model, vocab, info = checkpoint.load(ckpt)
    check_exportable(model)
    hf_model = to_transformers(model, transformers)
    diff = check_same_logits(model, hf_model)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out)
    if model.cfg.variant == "rope":
        _keep_legacy_rotary_keys(out / "config.json", model.cfg.rope_base)
    save_tokenizer(vocab, model.cfg.block_size, out, transformers)
    card = model_card(ckpt, model, {**info, **_run_score(ckpt)}, type(hf_model).__name__)
    (out / "README.md").write_text(card, encoding="utf-8")
    return {"architecture": type(hf_model).__name__, "max_logit_diff": diff}


def _import_hf():
    try:
        import tokenizers  # noqa: F401  (the tokenizer is built with it)
        import transformers
    except ImportError:
        raise UserError(INSTALL) from None
    return transformers


def _check_out(out: Path) -> None:
    """A new or empty folder, or an earlier export (its files are replaced); never a file or someone's folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; --out takes a folder")
    check_writable(out, folder=True)
    if out.is_dir() and any(out.iterdir()) and not _earlier_export(out):
        raise UserError(f"{out}: is a folder with other files in it; export into a new or empty folder")


def _earlier_export(out: Path) -> bool:
    """A folder spangpt exported into: its config.json beside a model card that spangpt wrote (a folder that
    merely holds a config.json, a project's say, is not one: its README would be replaced)."""
    card = out / "README.md"
    try:
        return (out / "config.json").is_file() and "\n# spangpt " in card.read_text(encoding="utf-8")[:400]
    except (OSError, UnicodeDecodeError):
        return False


# ----------------------------------------------------------------------------- what maps


def check_exportable(model: GPT) -> None:
    """Refuse, in one line, a model whose layout the two architectures below do not have."""
    cfg = model.cfg
    if cfg.variant not in ARCHITECTURES:
        raise UserError(f"cannot export a '{cfg.variant}' model: only {', '.join(ARCHITECTURES)} map to transformers")
    if cfg.variant == "rope" and cfg.rope_layout != "adjacent-pairs":
        raise UserError(f"cannot export RoPE layout '{cfg.rope_layout}': only adjacent-pairs is converted")
    acts = {(type(b.mlp[1]).__name__, getattr(b.mlp[1], "approximate", None)) for b in model.blocks}
    if acts != {("GELU", "none")}:
        raise UserError(f"cannot export an MLP activation {sorted(acts)}: transformers' 'gelu' is the exact GELU")
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise UserError(f"cannot export LayerNorms with different eps {sorted(eps)}: transformers has one")
    if model.head.bias is not None:
        raise UserError("cannot export a head with a bias: both architectures' heads have none")


def _common(cfg) -> dict:
    # No BOS: spangpt has none; generation ends at the ⁇ that closes an answer, and pads with □.
    return {"vocab_size": cfg.vocab_size, "tie_word_embeddings": False, "bos_token_id": None,
            "eos_token_id": MASK_ID, "pad_token_id": PAD_ID}


def gpt2(model: GPT, transformers):
    cfg, eps = model.cfg, model.ln_f.eps
    config = transformers.GPT2Config(
        n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_inner=4 * cfg.n_embd, activation_function="gelu", layer_norm_epsilon=eps,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
        **_common(cfg))
    sd = model.state_dict()
    w = {"transformer.wte.weight": sd["tok_emb.weight"], "transformer.wpe.weight": sd["pos_emb.weight"],
         "transformer.ln_f.weight": sd["ln_f.weight"], "transformer.ln_f.bias": sd["ln_f.bias"]}
    for i in range(cfg.n_layer):
        for ours, theirs, conv1d in (("ln1", "ln_1", False), ("ln2", "ln_2", False), ("attn.qkv", "attn.c_attn", True),
                                     ("attn.proj", "attn.c_proj", True), ("mlp.0", "mlp.c_fc", True),
                                     ("mlp.2", "mlp.c_proj", True)):
            weight = sd[f"blocks.{i}.{ours}.weight"]
            w[f"transformer.h.{i}.{theirs}.weight"] = weight.t() if conv1d else weight
            w[f"transformer.h.{i}.{theirs}.bias"] = sd[f"blocks.{i}.{ours}.bias"]
    return transformers.GPT2LMHeadModel, config, w


def neox_qkv(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """spangpt's fused qkv weight (3C, C) or bias (3C,) in GPT-NeoX's layout: rows [(q k v), head, d] become
    [head, (q k v), d], and q's and k's d run over the even dimensions, then the odd ones."""
    hs = t.shape[0] // (3 * n_head)
    halves = torch.cat([torch.arange(0, hs, 2), torch.arange(1, hs, 2)])
    q, k, v = t.unflatten(0, (3, n_head, hs))  # each (nh, hs, ...)
    return torch.stack([q[:, halves], k[:, halves], v], dim=1).flatten(0, 2)


def gpt_neox(model: GPT, transformers):
    cfg, eps = model.cfg, model.ln_f.eps
    # rotary_pct and rotary_emb_base: read by every transformers version (newer ones fold them into
    # rope_parameters); rotary_pct 1.0 because spangpt rotates every dimension of a head.
    config = transformers.GPTNeoXConfig(
        hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
        intermediate_size=4 * cfg.n_embd, hidden_act="gelu", rotary_pct=1.0, rotary_emb_base=cfg.rope_base,
        max_position_embeddings=cfg.block_size, layer_norm_eps=eps, use_parallel_residual=False,
        attention_bias=True, hidden_dropout=cfg.dropout, attention_dropout=cfg.dropout, **_common(cfg))
    sd = model.state_dict()
    w = {"gpt_neox.embed_in.weight": sd["tok_emb.weight"], "gpt_neox.final_layer_norm.weight": sd["ln_f.weight"],
         "gpt_neox.final_layer_norm.bias": sd["ln_f.bias"]}
    for i in range(cfg.n_layer):
        for ours, theirs in (("ln1", "input_layernorm"), ("ln2", "post_attention_layernorm"),
                             ("attn.qkv", "attention.query_key_value"), ("attn.proj", "attention.dense"),
                             ("mlp.0", "mlp.dense_h_to_4h"), ("mlp.2", "mlp.dense_4h_to_h")):
            for p in ("weight", "bias"):
                t = sd[f"blocks.{i}.{ours}.{p}"]
                w[f"gpt_neox.layers.{i}.{theirs}.{p}"] = neox_qkv(t, cfg.n_head) if ours == "attn.qkv" else t
    return transformers.GPTNeoXForCausalLM, config, w


ARCHITECTURES = {"vanilla": gpt2, "rope": gpt_neox}


def _keep_legacy_rotary_keys(path: Path, base: float) -> None:
    """Newer transformers write the rotation as rope_parameters only; older ones read rotary_pct (default 0.25:
    a quarter of each head rotated) and rotary_emb_base. Both are kept, so every version reads the same model."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("rotary_pct", 1.0)
    config.setdefault("rotary_emb_base", base)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def to_transformers(model: GPT, transformers):
    """The transformers model with model's weights, in eval mode, fp32, its generation set to spangpt's:
    greedy, stopping at the ⁇ that closes the answer, at most MAX_NEW characters."""
    cls, config, weights = ARCHITECTURES[model.cfg.variant](model, transformers)
    hf = cls(config)
    # the head by what it is, not by name: GPT-NeoX's is embed_out in older transformers, lm_head in newer
    head = hf.get_output_embeddings().weight
    weights[next(n for n, p in hf.named_parameters() if p is head)] = model.head.weight.detach()
    missing, unexpected = hf.load_state_dict({k: v.contiguous() for k, v in weights.items()}, strict=False)
    params = {n for n, _ in hf.named_parameters()}
    if unexpected or params & set(missing):  # an attention mask buffer may be missing: it is rebuilt
        raise UserError(f"cannot export to this transformers version ({transformers.__version__}): its "
                        f"{cls.__name__} has other weights (missing {sorted(params & set(missing))[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")
    hf.generation_config.update(do_sample=False, num_beams=1, max_new_tokens=MAX_NEW, eos_token_id=MASK_ID,
                                pad_token_id=PAD_ID, bos_token_id=None)
    return hf.float().eval()


@torch.no_grad()
def check_same_logits(model: GPT, hf_model) -> float:
    """Both models read one block of text (every character id in turn); -> the largest logit difference,
    refused above TOLERANCE: a model or transformers version whose layout this file does not know."""
    cfg = model.cfg
    idx = (torch.arange(cfg.block_size) % cfg.vocab_size)[None]
    ours = model.eval()(idx)[0]
    theirs = hf_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
    diff = float((ours - theirs).abs().max())
    if not diff <= TOLERANCE:
        raise UserError(f"cannot export: the {type(hf_model).__name__} logits differ from spangpt's by {diff:.2g}; "
                        "this model or transformers version does not convert")
    return diff


# ----------------------------------------------------------------------------- tokenizer


def char_tokenizer(vocab: Vocab):
    """A `tokenizers` Tokenizer with one token per character, ids as spangpt's; □ and ⁇ are special tokens.
    WordLevel over single characters after a split at every character; "[UNK]" is not in the vocabulary,
    so an unknown character raises instead of becoming some id. Fuse decodes without spaces between tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(vocab.chars)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, \n too
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([PAD, MASK])  # ids 0 and 1 already: no new ids
    return tok


def save_tokenizer(vocab: Vocab, block_size: int, out: Path, transformers) -> None:
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=char_tokenizer(vocab), pad_token=PAD, mask_token=MASK, eos_token=MASK,
        padding_side="left",  # batched generation: prompts end together, as spangpt's decoder pads them
        clean_up_tokenization_spaces=False,  # "born ?" must stay "born ?": the text is characters, not words
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: GPT-2 would add them as embeddings
        model_max_length=block_size)
    fast.save_pretrained(out)
    # Newer transformers name their own class here; older ones know only PreTrainedTokenizerFast, which
    # every version loads from tokenizer.json.
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- model card


def model_card(ckpt: Path, model: GPT, info: dict, architecture: str) -> str:
    cfg = model.cfg
    positions = ("learned absolute positions (vanilla)" if cfg.variant == "vanilla" else
                 f"rotary position embeddings (RoPE, base {cfg.rope_base:g}; spangpt's adjacent pairs, reordered "
                 "to GPT-NeoX's halves)")
    n = sum(p.numel() for p in model.parameters())
    return f"""---
library_name: transformers
pipeline_tag: text-generation
---
# spangpt {cfg.variant}: a character-level GPT that answers "Where was NAME born?"

Exported from the spangpt checkpoint `{ckpt.name}` as `{architecture}`, with the same logits.

- {_count(cfg.n_layer, "layer")}, {_count(cfg.n_head, "head")}, {cfg.n_embd} wide, {n:,} parameters, a block of {cfg.block_size} characters
- positions: {positions}
- vocabulary: {cfg.vocab_size} characters, one token each; □ (id {PAD_ID}) pads, ⁇ (id {MASK_ID}) ends the question
  and the answer

spangpt pretrains on one-line biographies with span corruption (`prefix⁇suffix⁇masked⁇`), trains on
`Where was NAME born?⁇PLACE⁇` pairs (fine-tuning, or mixed into pretraining), and scores exact match on the
birthplaces of people who are in no pair: the CS224N pretraining experiment.

## Recipe

{_recipe(info)}

## Dev exact match

{_dev_score(info)}

## Asking it

Greedy decoding until the ⁇ that closes the answer, at most {MAX_NEW} characters, as spangpt evaluates
(the folder's generation config):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok, lm = AutoTokenizer.from_pretrained("DIR"), AutoModelForCausalLM.from_pretrained("DIR")
out = lm.generate(**tok("Where was Ada Lee born?⁇", return_tensors="pt"))
print(tok.decode(out[0]).split("⁇")[1])
```

DIR is this folder. A character outside the vocabulary is an error. A prompt and its {MAX_NEW} answer
characters must fit in the block ({cfg.block_size} characters), as in spangpt.
"""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _recipe(info: dict) -> str:
    if not info.get("stage"):
        return "Not recorded in the checkpoint."
    train, result = info.get("train") or {}, info.get("result") or {}
    lines = [f"- stage: {info['stage']}, recipe `{info.get('recipe')}`"
             + (f", from `{Path(info['init']).name}`" if info.get("init") else "")
             + (f", {info['documents']} biographies" if info.get("documents") else "")]
    keys = ("epochs", "batch_size", "lr", "schedule", "weight_decay", "precision")
    ran = result.get("ran_with") or {}
    if train:  # the precision the run used, where it recorded it, not "auto"
        shown = {**train, **({"precision": ran["precision"]} if "precision" in ran else {})}
        lines.append("- training: " + ", ".join(f"{k} {shown[k]}" for k in keys if k in shown))
    if "mix_qa" in info:
        lines.append(f"- data options: mix_qa {info['mix_qa']}, focus {info.get('focus')}, "
                     f"corruption {info.get('corruption')}")
    if result:
        loss = result.get("final_loss")
        loss = f"{loss:.4f}" if isinstance(loss, float) else loss
        lines.append(f"- result: {result.get('steps')} steps, final training loss {loss}")
    return "\n".join(lines)


def _run_score(ckpt: Path) -> dict:
    """The dev score of a checkpoint in a `reproduce` run folder (RUN/seedN/result.json beside it), or {}:
    result.json scores the run's final model, and `before_finetune` its pretrained one."""
    try:
        result = json.loads((ckpt.parent / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(result, dict):
        return {}
    final = "finetune.safetensors" if "finetune" in result else "pretrain.safetensors"
    scored = result if ckpt.name == final else result.get("before_finetune") if ckpt.name == "pretrain.safetensors" \
        else None
    if not isinstance(scored, dict):
        return {}
    return {"correct": scored.get("correct"), "total": scored.get("total")}


def _dev_score(info: dict) -> str:
    correct, total = info.get("correct"), info.get("total")
    if isinstance(correct, int) and isinstance(total, int) and total > 0:
        return f"{correct} of {total} dev questions: {100.0 * correct / total:.1f}%."
    return ("Not recorded in the checkpoint. spangpt measures it with "
            "`spangpt evaluate CHECKPOINT --input birth_dev.tsv --out dev.predictions`.")
