"""The machine's matmul roof at each precision, and the fraction of it the engine reaches.

    python -m training.benchmark_roof --data DATA/bc5cdr/CDR_TestSet.PubTator.txt --output results/benchmark_roof.json

Times one large matmul of MiniLM-L6's feed-forward shape (16 abstracts of ~250 tokens: 4096 × 384
times 384 × 1536) in fp32 and in bf16 on the same threads, and reads the engine's measured speed
from the benchmark files (training/benchmark_pruning.py: results/benchmark_pruning_default.json
times dense fp32 and the default on the same abstracts and counts their FLOPs;
results/benchmark_precision.json times dense bf16 on the same abstracts). Achieved FLOP/s
= analytic FLOPs per abstract (bioprune.forward, multiply-add = 2) × abstracts/s; the roof is the
matmul's FLOP/s at the precision the system ran in (int8: oneDNN's u8 × s8 matmul; "mixed", whose
bf16 parts cannot reach the int8 roof, against the int8 one: a floor on its fraction). What the forward spends outside matmuls
(attention softmax, layer norm, gathers, tokenization) shows up as the gap, so two more
measurements say where it goes: the attention's own FLOP/s at the model's head shape (12 heads of
32 dimensions: each score costs a 32-long dot product, too short for the matmul units; fp32 runs
torch's fused kernel, bf16 the engine's packed attention: bioprune.cpu_kernels' compiled kernel
where it builds), and the share of a dense
annotate call's wall clock each kind of op takes (torch.profiler, self time) at fp32 and at bf16
(``--data``). With ``--data`` it also times the default's encoder layers themselves (issue 16's "fraction
of the roof in the pruned layers"): the seconds inside each layer call and the FLOPs it ran
(the forward's own count: :func:`bioprune.forward.layer_flops` over its tokens and frozen context), split into the dense layers
before the pruning point and the pruned layers after it, at batch 1 and 16, each pass right after
its own roof measurement (the host's speed drifts).
"""
from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import bioprune.forward as forward
from bioprune.config import DEFAULT, DENSE
from bioprune.layer import packed_attention
from bioprune.engine import PruningEngine
from bioprune.int8 import Int8Linear
from bioprune.io.pubtator import read_pubtator
from bioprune.precision import resolve_precision
from training.analysis.timing import cpu_model
from training.analysis.common import command_line, parse_dataclass, write_json_atomic

SHAPE = (4096, 384, 1536)  # (tokens, hidden, feed-forward): one batch of 16 abstracts through MiniLM-L6's FFN
ATTENTION_SHAPE = (16, 12, 256, 32)  # (batch, heads, tokens, head dim): the same batch through its attention
# Profiler op names (substrings) by kind; the rest of the wall clock is "other" (Python, gathers,
# tokenization, decoding).
OP_KINDS = {"linear": ("addmm", "aten::mm", "aten::linear", "mkldnn_linear", "_linear_pointwise", "onednn",
                      "bioprune::int8_linear"),
            "attention": ("scaled_dot_product", "flash_attention", "aten::bmm", "softmax", "bioprune::fused_attention"),
            "gelu": ("gelu",), "layer_norm": ("layer_norm",)}


@dataclass(frozen=True)
class RoofArgs:
    bench: str = "results/benchmark_pruning_default.json"  # a benchmark_pruning.py result: dense fp32 vs pruned
    dense_bench: str = "results/benchmark_precision.json"  # the same, --controller none (dense at another precision)
    data: str | None = None  # PubTator file: where a dense forward's time goes, by op (skipped without)
    limit_docs: int = 64  # abstracts of --data profiled
    output: str = "results/benchmark_roof.json"  # results JSON
    threads: int = 2  # torch intra-op threads
    repeats: int = 50  # timed calls per measurement; the fastest is reported
    layer_rounds: int = 5  # annotate passes over --data per batch size timing the layers, each after a roof measurement


def fastest_s(run, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` timed calls of ``run`` (after two untimed): a roof is
    what the machine can do, so the fastest repeat, not a median that the other core's jobs can drag."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_flops_per_s(precision: str, repeats: int) -> float:
    """Best FLOP/s of (M, K) @ (K, N) matmuls of :data:`SHAPE` at ``precision``: "fp32" and "bf16"
    as plain matmuls; "int8" as oneDNN's u8 × s8 matmul the int8 layers run (one activation scale,
    bf16 output, no bias: the matmul alone), a multiply-add counted as 2 operations as everywhere."""
    m, k, n = SHAPE
    if precision == "int8":
        a = torch.randint(0, 256, (m, k), dtype=torch.uint8)
        packed = torch.ops.onednn.qlinear_prepack(torch.randint(-127, 128, (n, k), dtype=torch.int8), None)
        scales, zeros, one, zero = torch.ones(n), torch.zeros(n, dtype=torch.long), torch.tensor(1.0), torch.tensor(128)
        run = lambda: torch.ops.onednn.qlinear_pointwise.tensor(  # noqa: E731
            a, one, zero, packed, scales, zeros, None, 1.0, 0, torch.bfloat16, "none", [], "")
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        run = lambda: a @ b  # noqa: E731
    return 2 * m * k * n / fastest_s(run, repeats)


def layer_flops_by_precision(layer, n: torch.Tensor, m: torch.Tensor | float, hidden: int, intermediate: int
                             ) -> dict[str, float]:
    """A layer's FLOPs (:func:`bioprune.forward.layer_flop_parts` over ``n`` tokens and ``m`` frozen
    context tokens per sequence, summed) by the precision each part runs at in this copy of the
    layer: its Linear layers' (int8 where they are :class:`bioprune.int8.Int8Linear`, else the
    weights' dtype) and attention's (the weights' dtype: the int8 copy attends in bf16)."""
    own = {torch.float32: "fp32", torch.bfloat16: "bf16"}[next(layer.parameters()).dtype]
    attn = layer.attention.self
    modules = {"attention.self.qkv": getattr(attn, "qkv", attn.query), "attention.self.kv": getattr(attn, "kv", attn.key),
               # the copies fuse GELU into one module in place of the intermediate block
               "intermediate.dense": getattr(layer.intermediate, "dense", layer.intermediate)}
    out: dict[str, float] = {}
    for part, flops in forward.layer_flop_parts(n, hidden, intermediate, m).items():
        module = None if part == "attention" else modules.get(part) or layer.get_submodule(part)
        precision = "int8" if isinstance(module, Int8Linear) else own
        out[precision] = out.get(precision, 0.0) + float(torch.as_tensor(flops, dtype=torch.float64).sum())
    return out


def attention_flops_per_s(dtype: torch.dtype, repeats: int) -> float:
    """Best FLOP/s of the attention every layer without a pruning decision runs, at
    :data:`ATTENTION_SHAPE` in ``dtype``: 4·B·heads·T²·d FLOPs (scores and weighted sum). fp32: the
    fused kernel (``scaled_dot_product_attention``); bf16: :func:`bioprune.layer.packed_attention`
    over the same sequences packed, the engine's reduced-precision attention."""
    b, h, t, d = ATTENTION_SHAPE
    if dtype == torch.float32:
        q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
        run = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
    else:
        q, k, v = (torch.randn(b * t, h * d).to(dtype) for _ in range(3))  # (N, H) packed rows
        run = lambda: packed_attention(q, k, v, [t] * b, h, d ** -0.5)  # noqa: E731
    return 4 * b * h * t * t * d / fastest_s(run, repeats)


def op_kind(name: str) -> str | None:
    """Which :data:`OP_KINDS` a profiler op name belongs to (None: other)."""
    return next((kind for kind, parts in OP_KINDS.items() if any(p in name for p in parts)), None)


def time_shares(events, wall_s: float) -> dict[str, float]:
    """Share of ``wall_s`` each op kind took, from (name, self CPU seconds) ``events``, and ``other``
    for the rest; self times, so nested ops are not counted twice."""
    shares = dict.fromkeys(OP_KINDS, 0.0)
    for name, self_s in events:
        kind = op_kind(name)
        if kind is not None:
            shares[kind] += self_s / wall_s
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def forward_time_shares(engine, texts: list[str], batch_size: int) -> dict[str, float]:
    """Where a dense annotate call's wall clock goes, by op kind (:func:`time_shares`), after one
    warm-up call; the profiler's own overhead lands in "other"."""
    from torch.profiler import ProfilerActivity, profile

    engine.annotate(texts[:batch_size], batch_size=batch_size)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        engine.annotate(texts, batch_size=batch_size)
        wall = time.perf_counter() - start
    events = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    return time_shares(events, wall)


@contextlib.contextmanager
def timing_layers(encoder: forward.PrunedEncoder, model, first_pruned: int):
    """Within the block, every encoder layer call of ``model`` (a copy ``encoder`` runs) adds its
    wall seconds and its FLOPs to the yielded dict, under "dense layers" (index below
    ``first_pruned``) or "pruned layers"; each value a [seconds, FLOPs, {precision: FLOPs}] triple
    (:func:`layer_flops_by_precision`: which roof each FLOP answers to)."""
    index = {id(layer): i for i, layer in enumerate(model.base_model.encoder.layer)}
    totals = {"dense layers": [0.0, 0.0, {}], "pruned layers": [0.0, 0.0, {}]}
    run_layer = forward.run_layer

    def timed(layer, hidden, valid, need_signals=False, context=None, **packings):
        start = time.perf_counter()
        out = run_layer(layer, hidden, valid, need_signals=need_signals, context=context, **packings)
        seconds = time.perf_counter() - start
        n = valid.sum(dim=1).double()
        m = context.lengths.double() if context is not None else 0.0
        flops = forward.layer_flops(n, encoder.hidden, encoder.intermediate, m)  # what the forward itself counts
        entry = totals["pruned layers" if index[id(layer)] >= first_pruned else "dense layers"]
        entry[0] += seconds
        entry[1] += float(flops.sum())
        for precision, part in layer_flops_by_precision(layer, n, m, encoder.hidden, encoder.intermediate).items():
            entry[2][precision] = entry[2].get(precision, 0.0) + part
        return out

    forward.run_layer = timed
    try:
        yield totals
    finally:
        forward.run_layer = run_layer


def layer_flops_per_s(engine: PruningEngine, texts: list[str], batch_size: int, rounds: int,
                      roofs: Callable[[], dict[str, float]]) -> dict[str, dict[str, float]]:
    """FLOP/s inside the default's dense and pruned layers (:func:`timing_layers`) over ``texts`` at
    ``batch_size``, after one warm-up pass: per round, the matmul roofs (``roofs()``: FLOP/s by
    precision) are measured right before an annotate pass, so that both see the machine in the
    same state (on a shared host its speed drifts by 10% within minutes). A stretch of layers'
    roof is the FLOP/s it would reach with every FLOP at the roof of the precision it runs at
    (FLOPs / the sum of each part's FLOPs over its roof: per-layer and per-Linear precision, as in
    "mixed" and int8, weigh in as they run); the fraction is the median of the rounds' fractions,
    the rates the median of their rates."""
    config = engine.config
    encoder = engine.encoder
    model = encoder.weights_at(engine.precision, encoder.runs_pruned_layers(config))
    engine.annotate(texts, batch_size=batch_size)
    passes = []
    for _ in range(rounds):
        peaks = roofs()
        with timing_layers(encoder, model, min(config.prune_layers)) as totals:
            engine.annotate(texts, batch_size=batch_size)
        passes.append({name: (seconds, flops, flops / sum(f / peaks[p] for p, f in parts.items()))
                       for name, (seconds, flops, parts) in totals.items()})  # (s, FLOPs, effective roof)
    out = {}
    for name in passes[0]:
        rates = [p[name][1] / p[name][0] for p in passes]
        out[name] = {"achieved_gflops_per_s": statistics.median(rates) / 1e9,
                     "roof_gflops_per_s": statistics.median(p[name][2] for p in passes) / 1e9,
                     "fraction_of_roof": statistics.median(r / p[name][2] for r, p in zip(rates, passes)),
                     "ms_per_abstract": 1e3 * statistics.median(p[name][0] for p in passes) / len(texts)}
    return out


def main(argv=None) -> dict:
    args = parse_dataclass(RoofArgs, __doc__, argv)
    torch.set_num_threads(args.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    roof = {p: matmul_flops_per_s(p, args.repeats) for p in ("fp32", "bf16", "int8")}
    attention = {p: attention_flops_per_s(dtype, args.repeats) for p, dtype in dtypes.items()}
    bench = json.loads(Path(args.bench).read_text())
    dense_bench = json.loads(Path(args.dense_bench).read_text())
    if dense_bench["n_abstracts"] != bench["n_abstracts"]:
        raise SystemExit(f"{args.dense_bench} timed {dense_bench['n_abstracts']} abstracts, {args.bench} "
                         f"{bench['n_abstracts']}: run both on the same --limit-docs")
    dense_flops = bench["pruning"]["dense_flops"] / bench["n_abstracts"]  # per abstract, the same at any precision
    # what each ran at ("runs_at": "auto" resolved when it ran; older files have only the config)
    pruned_precision = bench.get("runs_at") or resolve_precision(bench["config"].get("precision", "fp32"), "cpu")
    dense_precision = dense_bench.get("runs_at") or resolve_precision(dense_bench["config"].get("precision", "fp32"), "cpu")
    rows = (("dense fp32", bench, "dense", dense_flops, "fp32"),
            (f"dense {dense_precision}", dense_bench, "pruned", dense_flops, dense_precision),
            (f"pruned ({bench['config']['controller']}, {pruned_precision})", bench, "pruned",
             bench["pruning"]["flops"] / bench["n_abstracts"], pruned_precision))
    systems = {}
    for batch in bench["batch"]:
        for name, source, system, flops_per_abstract, precision in rows:
            flops = flops_per_abstract * source["batch"][batch][system]["abstracts_per_s"]  # achieved FLOP/s
            # mixed: the int8 roof, which its bf16 parts cannot reach (the fraction is a floor); the
            # default's layers below weigh each part by its own roof
            peak = roof["int8" if precision == "mixed" else precision]
            systems.setdefault(name, {})[batch] = {"achieved_gflops_per_s": flops / 1e9,
                                                   "roof_gflops_per_s": peak / 1e9, "fraction_of_roof": flops / peak}
    result = {"command": command_line("-m training.benchmark_roof", argv), "threads": args.threads, "cpu": cpu_model(),
              "matmul_shape": SHAPE, "roof_gflops_per_s": {k: v / 1e9 for k, v in roof.items()},
              "attention_shape": ATTENTION_SHAPE,
              "attention_gflops_per_s": {k: v / 1e9 for k, v in attention.items()},
              "bench": args.bench, "dense_bench": args.dense_bench, "systems": systems}
    if args.data:
        texts = [d.text for d in read_pubtator(args.data)[: args.limit_docs]]
        engine = PruningEngine.from_pretrained(config=replace(DENSE, link=False))
        result["dense_time_shares"] = {p: forward_time_shares(engine.with_config(replace(engine.config, precision=p)),
                                                              texts, batch_size=16) for p in ("fp32", "bf16")}
        result["dense_time_shares_docs"] = len(texts)
        default = engine.with_config(replace(DEFAULT, link=False))
        precision = default.precision  # "auto" resolved here
        by_batch = {str(b): layer_flops_per_s(default, texts, b, args.layer_rounds,
                                              lambda: {p: matmul_flops_per_s(p, args.repeats // 5)
                                                       for p in ("bf16", "int8")})
                    for b in (1, 16)}
        result["default_layers"] = {name: {b: v[name] for b, v in by_batch.items()} for name in by_batch["1"]}
        result["default_layers_config"] = {"prune_layers": list(default.config.prune_layers), "precision": precision}
        result["n_layers"] = len(default.encoder.layers)
        result["layer_rounds"] = args.layer_rounds
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
