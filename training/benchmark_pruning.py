"""Dense vs pruned on the same abstracts, in one process, alternating, after warm-up (2 CPU threads).

    python -m training.benchmark_pruning --data DATA/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_pruning.json [--controller rule --lambda 1 ... --precision auto]

The reference is always the exact dense fp32 model (bioprune.config.DENSE, linking as the
measured config has it: ``--no-link`` times the forward paths alone); ``--controller none
--precision bf16`` times precision alone.

For batch 1 and batch 16: abstracts/s and ms/abstract of each, the speedup as the median of the
per-round ratios dense/pruned, tokens kept per layer, FLOPs saved, recovery rate, and the speedup
the FLOPs predict (dense FLOPs / pruned FLOPs) to compare against the measured one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace

import torch
from tqdm import tqdm

from bioprune.config import DENSE, PruningConfig
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import pruning_summary
from bioprune.io.pubtator import read_pubtator
from training.analysis.timing import TimingPlan, cpu_model, time_systems
from bioprune.options import add_config_arguments
from training.analysis.common import command_line, parse_dataclass, pruning_config, write_json_atomic


@dataclass(frozen=True)
class PruningBenchArgs:
    data: str  # PubTator file whose abstracts are annotated
    output: str = "results/benchmark_pruning.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (with exit heads)
    threads: int = 2  # torch intra-op threads
    rounds: int = 3  # alternating timed rounds per batch size; medians reported
    warmup_docs: int = 32  # abstracts annotated by each system before timing
    limit_docs: int = 0  # 0: all abstracts
    batch_sizes: tuple[int, ...] = (1, 16)  # sequences per forward pass, each timed
    device: str = "cpu"  # torch device of both systems ("cuda": issue 16's GPU check, at --batch-sizes 64)


def run(args: PruningBenchArgs, config: PruningConfig) -> dict:
    torch.set_num_threads(args.threads)
    texts = [d.text for d in read_pubtator(args.data)[: args.limit_docs or None]]
    pruned = PruningEngine.from_pretrained(args.model, config=config, device=args.device)
    dense = pruned.with_config(replace(DENSE, link=config.link))  # linking, if on, costs both sides alike
    summary = pruning_summary(pruned.annotate(texts))
    results = {"args": asdict(args), "config": asdict(config), "runs_at": pruned.precision, "n_abstracts": len(texts),
               "n_tokens": sum(end - start + 2 for doc in pruned.encode(texts) for start, end in doc.windows),
               "threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "pruning": summary,
               "flops_predicted_speedup": summary["dense_flops"] / summary["flops"] if summary else 1.0, "batch": {}}
    plan = TimingPlan(rounds=args.rounds, warmup_docs=args.warmup_docs, batch_sizes=args.batch_sizes)
    systems = {"dense": lambda t, bs: dense.annotate(t, batch_size=bs),
               "pruned": lambda t, bs: pruned.annotate(t, batch_size=bs)}
    with tqdm(total=len(args.batch_sizes) * args.rounds * 2, desc="benchmark", unit="run") as bar:
        results["batch"] = time_systems(systems, texts, plan, on_run=lambda: bar.update(1))
    for entry in results["batch"].values():
        entry["speedup_vs_flops_prediction"] = entry["speedup_median"] / results["flops_predicted_speedup"]
        for name in systems:  # wordpieces entering layer 1 per second ([CLS] and [SEP] of every window counted)
            entry[name]["tokens_per_s"] = results["n_tokens"] / entry[name]["median_s"]
    return results


def main(argv=None) -> dict:
    args, ns = parse_dataclass(PruningBenchArgs, __doc__, argv,  # none: dense at --precision vs dense fp32
                               lambda parser: add_config_arguments(parser, controllers=("rule", "mlp", "none")))
    res = run(args, pruning_config(ns))
    res["command"] = command_line("-m training.benchmark_pruning", argv)
    write_json_atomic(args.output, res)
    return res


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    out = main()
    print(json.dumps({bs: {k: e[k] for k in ("speedup_median", "speedup_vs_flops_prediction")}
                      for bs, e in out["batch"].items()}, indent=2))
    print(f"FLOPs saved {out['pruning'].get('flops_saved_ratio', 0.0):.1%}, "
          f"predicted speedup {out['flops_predicted_speedup']:.2f}")
