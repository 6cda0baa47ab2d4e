"""spangpt bench's report: what bench.py measured, as the text it prints. Formatting only: nothing is timed here."""
from __future__ import annotations

import statistics

MEMORY_STEPS = 3  # training steps of the memory measurement (bench.py runs them)


def format_report(m: dict) -> str:
    """m: what bench measured (bench._report): the setup, the train/eval/memory/scaling results, derived rates."""
    cfg, tr, ev, mem, bs = m["cfg"], m["train"], m["eval"], m["memory"], m["batch_size"]
    block, threads = cfg.block_size, m["threads"]
    out = [f"spangpt bench: {m['device']}, torch {m['torch']}, {threads} CPU thread{'s' if threads != 1 else ''}",
           f"fast-path precision: {m['precision']}"]
    if m["load"]:
        out.append(m["load"])
    out.append(f"model: {cfg.n_layer} layer(s), {cfg.n_head} heads, {cfg.n_embd} dims, block {block}, dropout "
               f"{cfg.dropout}, vocab {cfg.vocab_size}: {m['params'] / 1e6:.2f}M parameters "
               f"({m['non_embedding'] / 1e6:.2f}M non-embedding)")
    out.append(f"data: {m['data']}: {m['documents']:,} documents, {m['questions']} dev questions")
    out.append(f"reference = {m['ref']} (the original's computation)")
    out.append(f"fast      = {m['fast']} (what `spangpt pretrain` runs here)")
    out.append(f"training: batches of {bs} fresh span-corruption examples, whole AdamW steps (clip 1.0), batch "
               f"preparation included; {m['repeats']} alternating round(s) of {m['seconds']:g} s per path after "
               "a warm-up step; medians")
    out.append("")

    R, F = tr["runs"]["reference"], tr["runs"]["fast"]
    med = lambda rs, f: statistics.median(f(r) for r in rs)  # noqa: E731
    tsp = _ratio(tr["fast"], tr["reference"])
    esp = _ratio(ev["plain_total"], ev["batched_total"])
    rows = [
        ["train: real target tokens/s (median)", f"{tr['reference']:,.0f}", f"{tr['fast']:,.0f}", _faster(tsp)],
        ["train: tokens/s per round", " / ".join(f"{r['tok_s']:,.0f}" for r in R),
         " / ".join(f"{r['tok_s']:,.0f}" for r in F), ""],
        [f"train: s per step ({bs} examples)", f"{med(R, lambda r: r['seconds'] / r['steps']):.3f}",
         f"{med(F, lambda r: r['seconds'] / r['steps']):.3f}", ""],
        ["train: rows x columns per step", f"{sum(r['rows'] for r in R) / sum(r['steps'] for r in R):.1f} x {block - 1}",
         f"{sum(r['rows'] for r in F) / sum(r['steps'] for r in F):.1f} x {block}", ""],
        ["train: real targets / positions computed", f"{sum(r['targets'] for r in R) / sum(r['positions'] for r in R):.0%}",
         f"{sum(r['targets'] for r in F) / sum(r['positions'] for r in F):.0%}", ""],
        [f"eval: {ev['n']} dev questions, s", f"{ev['plain_total']:.1f}*", f"{ev['batched_total']:.2f}",
         _faster(esp)],
        ["eval: questions/s", f"{ev['n'] / ev['plain_total']:.2f}", f"{ev['n'] / ev['batched_total']:.1f}", ""],
    ]
    if mem is not None:
        unit = "CUDA peak allocated MiB (+ during the run)" if m["cuda"] else \
            "peak RSS MiB (+ growth during the run)"
        fmt = lambda m: "n/a" if m is None else f"{m['peak']:,.0f} (+{m['peak'] - m['before']:,.0f})"  # noqa: E731
        grow = lambda m: None if m is None else max(m["peak"] - m["before"], 0.0)  # noqa: E731

        def mem_ratio(a, b):
            ga, gb = grow(a), grow(b)
            return "" if ga is None or gb is None or ga <= 0 else f"{_times(gb / ga)} the growth"

        rows.append([f"memory, train {MEMORY_STEPS} steps: {unit}", fmt(mem[0]), fmt(mem[1]), mem_ratio(mem[0], mem[1])])
        rows.append([f"memory, eval: {unit}", fmt(mem[2]), fmt(mem[3]), mem_ratio(mem[2], mem[3])])
    out.append(_table(["", "reference", "fast", "fast vs reference"], rows))
    out.append("")
    out.append(f"* eval reference = one question at a time, full recompute per character (the original); timed on the "
               f"first {ev['plain_done']} of {ev['n']} questions ({ev['plain_s']:.1f} s) and extrapolated linearly. "
               f"fast = evaluate.predict (all questions batched, KV cache), median of {len(ev['batched_runs'])}.")
    if m["checkpoint"] is None:
        out.append(f"  Random weights: {ev['plain_stopped']} of {ev['plain_done']} decoded answers closed with ⁇, so "
                   "the batched decoder, which stops once every row has, ran all 32 steps: the conservative case (a "
                   "trained model stops after the answer; time one with --checkpoint).")
    else:
        out.append(f"  Weights from {m['checkpoint']} ({m['variant']}): {ev['plain_stopped']} of "
                   f"{ev['plain_done']} plain answers closed with ⁇; the batched decoder stops a chunk once all its "
                   "rows have, the original always decodes 32 characters.")
    out.append(f"  Agreement: {ev['agree']} of {ev['plain_done']} answers identical between the two decoders.")
    if mem is not None:
        if m["cuda"]:
            out.append("  memory: torch.cuda.max_memory_allocated over the run; + = above what the model (and "
                       "optimizer) held before it.")
        else:
            out.append(f"  memory: each path in a fresh spawned process on 1 thread ({MEMORY_STEPS} training steps "
                       f"/ 3 plain questions / all {ev['n']} batched questions); its peak RSS, + = the peak's growth "
                       "over the RSS after importing torch and building the model (and optimizer).")
    g_fast, g_ref = m["gflops_fast"], m["gflops_ref"]
    out.append("")
    out.append(f"achieved model FLOP/s, fast path: {g_fast:.1f} GFLOP/s (reference: {g_ref:.1f} GFLOP/s), counting "
               f"6N + 12·L·d·T_avg FLOPs per real input token: N = {m['non_embedding'] / 1e6:.2f}M "
               f"non-embedding parameters (LM head included), L = {cfg.n_layer}, d = {cfg.n_embd}, "
               f"T_avg = Σn²/Σn = {m['t_avg']:.1f} over example lengths n (PaLM convention, causal mask not "
               "discounted; padding and filler not counted)")
    if m["peak_tflops"]:
        peak = m["peak_tflops"]
        out.append(f"MFU, fast path: {g_fast / (peak * 1e3):.1%} of {peak:g} TFLOP/s (reference: {g_ref / (peak * 1e3):.1%})")
    check, scaling = m["check"], m["scaling"]
    out.append(f"loss check (same weights and batch, dropout off, fp32): padded {check['ref_loss']:.6f} "
               f"({check['ref_shape'][0]} x {check['ref_shape'][1]}) vs packed {check['fast_loss']:.6f} "
               f"({check['fast_shape'][0]} x {check['fast_shape'][1]}): |Δloss| {check['loss_diff']:.1e}, "
               f"max gradient difference {check['grad_rel_diff']:.1e} of the largest gradient")

    if scaling:
        out.append("")
        out.append(f"scaling: synthetic corpora, one pretraining epoch (every document corrupted once, batches "
                   f"of {bs} packed), fast path")
        base = scaling[0]["people"]
        srows = [[f"{r['people'] / base:g}x", f"{r['people']:,}", f"{r['gen_s']:.1f}", f"{r['prep_s']:.2f}",
                  f"{r['heap_mb']:,.1f}", f"{r['batches']:,}", f"{r['tok_s']:,.0f}", f"{r['epoch_train_s']:,.0f}",
                  f"{r['prep_share']:.1%}"] for r in scaling]
        out.append(_table(["corpus", "people", "generate s", "epoch prep s", "prep heap peak MiB", "batches",
                           "train tok/s", "epoch train s", "prep share"], srows))
        out.append("  prep heap peak = tracemalloc peak of the epoch's examples and batches (Python objects; a batch's "
                   "tensors are made one at a time); epoch train s = the epoch's real targets / train tok/s; prep "
                   "share = prep / (prep + train), the part of an epoch spent preparing data on the training thread.")
    out.append("")
    out.append(f"train speedup: {tsp:.1f}x  eval speedup: {esp:.1f}x")
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Markdown table with padded columns: first column left-aligned, the rest right-aligned."""
    cells = [header] + rows
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    sep = "|" + "|".join(":" + "-" * (w[i] + 1) if i == 0 else "-" * (w[i] + 1) + ":" for i in range(len(w))) + "|"
    return "\n".join([fmt(header), sep] + [fmt(r) for r in rows])


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def _faster(r: float) -> str:
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"


def _times(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"
