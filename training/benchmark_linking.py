"""What linking costs: annotation time with and without it on the same abstracts, and the linker's memory.

    python -m training.benchmark_linking --data DATA/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_linking.json [--model DIR] [--controller rule ...] [--limit-docs 200]

One engine (the model loaded once), two configs that differ only in ``link``; the same abstracts
timed at batch 16 (``--batch-sizes``) in alternating rounds after warm-up
(:func:`training.analysis.timing.time_systems`, as the other benchmarks), so the slowdown is the median of
the per-round ratios. Before timing, the linker is loaded and its TF-IDF fitted (both are once per
process, not per abstract), each timed once, with the process's resident memory (RSS) before and
after: the memory a worker pays for linking. The linker memoises the TF-IDF answers of the names
its look-ups miss (a corpus repeats them); every timed round starts with that memo empty, so the
rounds time a first pass over the abstracts, not a re-run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bioprune.config import PruningConfig
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.io.pubtator import read_pubtator
from bioprune.options import add_config_arguments
from training.analysis.timing import TimingPlan, cpu_model, time_systems
from training.analysis.common import command_line, parse_dataclass, pruning_config, write_json_atomic


@dataclass(frozen=True)
class LinkingBenchArgs:
    data: str  # PubTator file whose abstracts are annotated
    output: str = "results/benchmark_linking.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (its linker/ index is the one timed)
    threads: int = 2  # torch intra-op threads
    rounds: int = 5  # alternating timed rounds per batch size; medians reported
    warmup_docs: int = 32  # abstracts annotated by each system before timing
    limit_docs: int = 0  # 0: all abstracts
    batch_sizes: tuple[int, ...] = (16,)  # sequences per forward pass, each timed


def rss_mb() -> float:
    """This process's resident set size now, in MB (Linux /proc; 0.0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def linker_cost(engine: PruningEngine) -> dict:
    """Seconds and RSS growth of loading the engine's linker (look-up tables), then of fitting its
    TF-IDF for every type (what the first mention the tables miss would pay)."""
    before = rss_mb()
    started = time.perf_counter()
    linker = engine.linker
    tables_s, tables_mb = time.perf_counter() - started, rss_mb()
    started = time.perf_counter()
    for type_index in linker.index.values():
        type_index.neighbours.fit()
    return {"index": str(engine.linker_index_dir), "load_tables_s": tables_s,
            "fit_tfidf_s": time.perf_counter() - started, "rss_before_mb": before, "rss_after_tables_mb": tables_mb,
            "rss_after_tfidf_mb": rss_mb(), "rss_growth_mb": rss_mb() - before}


def run(args: LinkingBenchArgs, config: PruningConfig) -> dict:
    torch.set_num_threads(args.threads)
    texts = [d.text for d in read_pubtator(args.data)[: args.limit_docs or None]]
    linked = PruningEngine.from_pretrained(args.model, config=config.with_(link=True))
    plain = linked.with_config(config.with_(link=False))
    plain.annotate(texts[:1])  # the model's own first-call costs land before the linker's RSS is read
    results = {"args": asdict(args), "config": asdict(config), "n_abstracts": len(texts),
               "threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__,
               "linker": linker_cost(linked)}
    with_ids, without = linked.annotate(texts), plain.annotate(texts)
    entities = [e for a in with_ids for e in a.entities]
    kept, every = ([{(e.start, e.end, e.label) for e in a.entities} for a in run] for run in (with_ids, without))
    results["entities_only_dropped"] = all(k <= e for k, e in zip(kept, every))  # IDs added, gene products dropped
    results["gene_products_dropped"] = sum(len(e - k) for k, e in zip(kept, every))
    results["entities"] = len(entities)
    results["entities_with_ids"] = sum(bool(e.ids) for e in entities)
    plan = TimingPlan(rounds=args.rounds, warmup_docs=args.warmup_docs, batch_sizes=args.batch_sizes)
    def link_first_pass(t, bs):  # the linker's memo of TF-IDF answers starts empty: new text, not a re-run
        linked.linker.forget_answers()
        return linked.annotate(t, batch_size=bs)

    systems = {"no_link": lambda t, bs: plain.annotate(t, batch_size=bs), "link": link_first_pass}
    with tqdm(total=len(args.batch_sizes) * args.rounds * 2, desc="benchmark", unit="run") as bar:
        results["batch"] = time_systems(systems, texts, plan, on_run=lambda: bar.update(1))
    for entry in results["batch"].values():  # speedup_median is no_link time / link time: below 1
        entry["linking_ms_per_abstract"] = entry["link"]["ms_per_abstract"] - entry["no_link"]["ms_per_abstract"]
        entry["slowdown_median"] = 1.0 / entry["speedup_median"]
    return results


def main(argv=None) -> dict:
    """One flag per :class:`LinkingBenchArgs` field (``--data`` required) plus the engine's settings
    (:mod:`bioprune.options`; ``--link/--no-link`` is what this script varies, so it is ignored)."""
    args, ns = parse_dataclass(LinkingBenchArgs, __doc__, argv, add_config_arguments)
    res = run(args, pruning_config(ns))
    res["command"] = command_line("-m training.benchmark_linking", argv)
    write_json_atomic(args.output, res)
    return res


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    out = main()
    print(json.dumps({"linker": out["linker"], **{bs: {k: e[k] for k in ("slowdown_median", "linking_ms_per_abstract")}
                                                 for bs, e in out["batch"].items()}}, indent=2))
