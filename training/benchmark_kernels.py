"""The compiled CPU kernels against the torch ops they replace: speed, and the entities they change.

    python -m training.benchmark_kernels --data ../shared/data/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_kernels.json

What :mod:`bioprune.cpu_kernels` buys, in one process: the dense model at each reduced precision
(bf16: the default; int8) annotates the same abstracts with the kernels and with the torch ops
(:func:`bioprune.cpu_kernels.disabled`), alternating (training/analysis/timing.py), linking off, at
batch 1 and 16. Also per precision: abstracts whose entities differ between the two, and each
one's entity agreement with dense fp32. And each kernel alone, the fastest of ``--repeats`` calls:
attention over 16 sequences of 256 tokens and over one window of 352 (12 heads of 32: MiniLM-L6),
an int8 Linear layer (quantize, matmul, GELU) on a batch of 16 abstracts (4096 x 384 -> 1536) and on one
(300 x 384 -> 1152: Q, K and V), and a sub-layer's residual add and LayerNorm over 4096 x 384.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import torch

from bioprune import cpu_kernels
from bioprune.config import DEFAULT, DENSE
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import mention_scores
from bioprune.int8 import Int8Linear
from bioprune.io.pubtator import read_pubtator
from bioprune.layer import add_norm, packed_attention
from training.analysis.common import command_line, parse_dataclass, write_json_atomic
from training.analysis.timing import TimingPlan, cpu_model, time_systems
from training.benchmark_roof import fastest_s

PRECISIONS = ("bf16", "int8")
ATTENTION_SHAPES = ((16, 12, 256, 32), (1, 12, 352, 32))  # (sequences, heads, tokens, head dim)
# (rows, in, out, activation): a batch of 16 abstracts into the feed-forward, one abstract into Q, K and V
INT8_LINEAR_SHAPES = ((4096, 384, 1536, "gelu"), (300, 384, 1152, "none"))
NORM_SHAPE = (4096, 384)  # (rows, columns): a batch of 16 abstracts out of a sub-layer


@dataclass(frozen=True)
class KernelBenchArgs:
    data: str  # PubTator file whose abstracts are annotated (BC5CDR test)
    output: str = "results/benchmark_kernels.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    limit_docs: int = 200  # abstracts annotated per round (and compared)
    rounds: int = 5  # alternating timed rounds per batch size
    warmup_docs: int = 16  # abstracts annotated by each system before timing
    repeats: int = 50  # calls per kernel micro-benchmark; the fastest is reported
    threads: int = 2  # torch intra-op threads


def _entities(annotations) -> list[tuple]:
    return [(i, e.start, e.end, e.label) for i, a in enumerate(annotations) for e in a.entities]


def _without_kernels(run):
    def call(*args, **kwargs):
        with cpu_kernels.disabled():
            return run(*args, **kwargs)
    return call


def kernel_times(repeats: int) -> dict:
    """ms of the fastest call of each kernel and of the torch ops it replaces, on random inputs."""
    out = {}
    g = torch.Generator().manual_seed(0)
    for b, h, t, d in ATTENTION_SHAPES:
        q, k, v = (torch.randn(b * t, h * d, generator=g).bfloat16() for _ in range(3))  # (N, H) packed rows
        run = lambda: packed_attention(q, k, v, [t] * b, h, d ** -0.5)  # noqa: E731
        out[f"attention {b}x{t} tokens"] = {"kernel_ms": 1e3 * fastest_s(run, repeats),
                                            "torch_ops_ms": 1e3 * fastest_s(_without_kernels(run), repeats)}
    for m, k, n, activation in INT8_LINEAR_SHAPES:
        x = torch.randn(m, k, generator=g).bfloat16()
        layer = Int8Linear(torch.nn.Linear(k, n), activation=activation, smooth=torch.rand(k, generator=g) + 0.5)
        run = lambda layer=layer, x=x: layer(x)  # noqa: E731
        out[f"int8 linear {m}x{k}x{n}" + (" + GELU" if activation == "gelu" else "")] = {
            "kernel_ms": 1e3 * fastest_s(run, repeats), "torch_ops_ms": 1e3 * fastest_s(_without_kernels(run), repeats)}
    h, residual = (torch.randn(*NORM_SHAPE, generator=g).bfloat16() for _ in range(2))
    norm = torch.nn.LayerNorm(NORM_SHAPE[1]).bfloat16().requires_grad_(False)
    run = lambda: add_norm(h, residual, norm)  # noqa: E731
    out[f"add + layer norm {NORM_SHAPE[0]}x{NORM_SHAPE[1]}"] = {
        "kernel_ms": 1e3 * fastest_s(run, repeats), "torch_ops_ms": 1e3 * fastest_s(_without_kernels(run), repeats)}
    for entry in out.values():
        entry["speedup"] = entry["torch_ops_ms"] / entry["kernel_ms"]
    return out


def run(args: KernelBenchArgs) -> dict:
    torch.set_num_threads(args.threads)
    if cpu_kernels.library() is None:
        raise SystemExit("no CPU kernels on this machine (see the log): nothing to compare")
    texts = [d.text for d in read_pubtator(args.data)][: args.limit_docs]
    dense = PruningEngine.from_pretrained(args.model, config=DENSE.with_(link=False))
    reference = _entities(dense.annotate(texts, batch_size=16))
    result = {"args": asdict(args), "cpu": cpu_model(), "torch": torch.__version__, "n_abstracts": len(texts),
              "default_runs_at": dense.bundle.encoder.precision_at(DEFAULT, "cpu"),
              "kernels": kernel_times(args.repeats), "precisions": {}}
    plan = TimingPlan(rounds=args.rounds, warmup_docs=args.warmup_docs, batch_sizes=(1, 16))
    for precision in PRECISIONS:
        engine = dense.with_config(DENSE.with_(precision=precision, link=False))
        fast = engine.annotate(texts, batch_size=16)
        with cpu_kernels.disabled():
            slow = engine.annotate(texts, batch_size=16)
        spans = [[{(e.start, e.end, e.label) for e in a.entities} for a in run] for run in (fast, slow)]
        entry = {"abstracts_with_other_entities": sum(a != b for a, b in zip(*spans)),
                 "agreement_with_dense_fp32": {
                     "kernels": mention_scores(reference, _entities(fast))["micro"]["f1"],
                     "torch ops": mention_scores(reference, _entities(slow))["micro"]["f1"]}}
        systems = {"torch ops": _without_kernels(lambda t, bs: engine.annotate(t, batch_size=bs)),
                   "kernels": lambda t, bs: engine.annotate(t, batch_size=bs)}
        entry["batch"] = time_systems(systems, texts, plan)
        logging.info("%s: %s", precision, {bs: round(e["speedup_median"], 3) for bs, e in entry["batch"].items()})
        result["precisions"][precision] = entry
    return result


def main(argv=None) -> dict:
    args = parse_dataclass(KernelBenchArgs, __doc__, argv)
    result = run(args)
    result["command"] = command_line("-m training.benchmark_kernels", argv)
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    out = main()
    print(json.dumps({p: {bs: e["speedup_median"] for bs, e in v["batch"].items()}
                      for p, v in out["precisions"].items()}, indent=2))
