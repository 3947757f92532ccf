"""The machine's matmul roof at each precision, and the fraction of it the engine reaches.

    python training/benchmark_roof.py --output results/benchmark_roof.json

Times one large matmul of MiniLM-L6's feed-forward shape (16 abstracts of ~250 tokens: 4096 × 384
times 384 × 1536) in fp32 and in bf16 on the same threads, and reads the engine's measured speed
from the benchmark files (training/benchmark_pruning.py: results/benchmark_pruning_mlp_bf16.json
times dense fp32 and the MLP default on the same abstracts and counts their FLOPs). Achieved FLOP/s
= analytic FLOPs per abstract (bioprune.flops, multiply-add = 2) × abstracts/s; the roof is the
matmul's FLOP/s at the precision the system ran in. What the forward spends outside matmuls
(attention softmax, layer norm, gathers, tokenization) shows up as the gap.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bioprune.precision import resolve_precision  # noqa: E402
from training.analysis.common import command_line, write_json_atomic  # noqa: E402

SHAPE = (4096, 384, 1536)  # (tokens, hidden, feed-forward): one batch of 16 abstracts through MiniLM-L6's FFN


def matmul_flops_per_s(dtype: torch.dtype, repeats: int) -> float:
    """Best FLOP/s of ``repeats`` timed (M, K) @ (K, N) matmuls in ``dtype`` (after two untimed): a roof is
    what the machine can do, so the fastest repeat, not a median that the other core's jobs can drag."""
    m, k, n = SHAPE
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / min(times)


def achieved(bench: dict, system: str, batch: str, flops_key: str) -> float:
    """FLOP/s a system of a benchmark_pruning result reached: FLOPs per abstract × abstracts/s."""
    per_abstract = bench["pruning"][flops_key] / bench["n_abstracts"]
    return per_abstract * bench["batch"][batch][system]["abstracts_per_s"]


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", default="results/benchmark_pruning_mlp_bf16.json",
                        help="a training/benchmark_pruning.py result (dense fp32 vs a pruned setting)")
    parser.add_argument("--output", default="results/benchmark_roof.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    ns = parser.parse_args(argv)
    torch.set_num_threads(ns.threads)
    roof = {"fp32": matmul_flops_per_s(torch.float32, ns.repeats),
            "bf16": matmul_flops_per_s(torch.bfloat16, ns.repeats)}
    bench = json.loads(Path(ns.bench).read_text())
    pruned_precision = resolve_precision(bench["config"].get("precision", "fp32"), "cpu")  # what it ran in here
    systems = {}
    for batch in bench["batch"]:
        for name, system, flops_key, precision in (("dense fp32", "dense", "dense_flops", "fp32"),
                                                   (f"pruned ({bench['config']['controller']}, {pruned_precision})",
                                                    "pruned", "flops", pruned_precision)):
            flops = achieved(bench, system, batch, flops_key)
            systems.setdefault(name, {})[batch] = {"achieved_gflops_per_s": flops / 1e9,
                                                   "roof_gflops_per_s": roof[precision] / 1e9,
                                                   "fraction_of_roof": flops / roof[precision]}
    result = {"command": command_line("training/benchmark_roof.py", argv), "threads": ns.threads,
              "matmul_shape": SHAPE, "roof_gflops_per_s": {k: v / 1e9 for k, v in roof.items()},
              "bench": ns.bench, "systems": systems}
    write_json_atomic(ns.output, result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
