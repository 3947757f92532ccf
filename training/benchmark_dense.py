"""Throughput of the dense engine vs Hugging Face's token-classification pipeline, on 2 CPU threads.

    python -m training.benchmark_dense --data DATA/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_dense.json

Both annotate the same abstracts (title + " " + abstract) with the same weights, at batch 1 and
batch 16, after a warm-up; rounds alternate between the two so drift hits both alike. Reports
abstracts/s and ms/abstract per round and their medians. The pipeline is what a user would reach
for otherwise (``aggregation_strategy="simple"``, which also yields character spans); note that it
truncates at 512 tokens while the engine windows long abstracts, so the engine does slightly more work.
The pipeline is ``training/benchmark_peers.py``'s ``hf_pipeline`` (the peers benchmark scores it too,
windowed and with word-level aggregation), on its own fp32 copy of the same weights.
"""
from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bioprune.config import DENSE
from training.analysis.timing import cpu_model
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.io.pubtator import read_pubtator
from training.analysis.common import add_dataclass_arguments, dataclass_from_args


@dataclass(frozen=True)
class BenchmarkArgs:
    data: str  # PubTator file whose abstracts are annotated
    output: str = "results/benchmark_dense.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    threads: int = 2  # torch intra-op threads
    rounds: int = 3  # timed rounds per (system, batch size); the median is reported
    warmup_docs: int = 16  # abstracts annotated before timing starts
    limit_docs: int = 0  # 0: all abstracts in --data


def time_round(fn, texts: list[str]) -> float:
    started = time.perf_counter()
    fn(texts)
    return time.perf_counter() - started


def main(args: BenchmarkArgs) -> dict:
    torch.set_num_threads(args.threads)
    docs = read_pubtator(args.data)
    texts = [d.text for d in (docs[: args.limit_docs] if args.limit_docs else docs)]
    engine = PruningEngine.from_pretrained(args.model, config=DENSE)
    from training.benchmark_peers import hf_pipeline

    hf = hf_pipeline(args.model, aggregation="simple", stride=None)  # this benchmark's settings, see the docstring
    systems = {
        "bioprune_dense": lambda bs: (lambda t: engine.annotate(t, batch_size=bs)),
        "hf_pipeline": lambda bs: (lambda t: hf(t, batch_size=bs)),
    }
    results: dict = {"args": asdict(args), "n_abstracts": len(texts), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "cpu": cpu_model(), "systems": {}}
    with tqdm(total=2 * len(systems) * args.rounds, desc="benchmark", unit="round") as bar:
        for batch_size in (1, 16):
            for name, make in systems.items():  # warm-up
                make(batch_size)(texts[: args.warmup_docs])
            times: dict[str, list[float]] = {name: [] for name in systems}
            for _ in range(args.rounds):
                for name, make in systems.items():
                    times[name].append(time_round(make(batch_size), texts))
                    bar.update(1)
            for name, ts in times.items():
                med = statistics.median(ts)
                results["systems"].setdefault(name, {})[f"batch_{batch_size}"] = {
                    "seconds_per_round": ts, "median_s": med,
                    "abstracts_per_s": len(texts) / med, "ms_per_abstract": 1000 * med / len(texts)}
    for bs in ("batch_1", "batch_16"):
        results[f"speedup_vs_hf_{bs}"] = (results["systems"]["hf_pipeline"][bs]["median_s"]
                                          / results["systems"]["bioprune_dense"][bs]["median_s"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, BenchmarkArgs)
    res = main(dataclass_from_args(BenchmarkArgs, vars(parser.parse_args())))
    print(json.dumps({k: v for k, v in res.items() if k.startswith("speedup")}, indent=2))
