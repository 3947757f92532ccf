"""Evaluation suite: many pruning configurations on the BC5CDR test set, one results file.

    python -m training.eval_suite --groups pareto ablations --timing pareto \
        --output results/eval_suite.json

Per configuration (the rows of :mod:`training.analysis.suite`): exact-mention F1 per type and
micro (``bioprune.evaluation.evaluate_engine``), the drop vs the dense model in points, tokens
pruned, FLOPs saved, the recovery rate; and, for the groups named by ``--timing`` (bare
``--timing``: all), CPU latency and throughput at batch 1 and 16 on the first ``--timing-docs``
abstracts, measured alternating with dense after warm-up (:func:`training.analysis.timing.time_systems`,
the loop of ``training/benchmark_pruning.py``). Timing is off by default: it costs far more than
scoring on a small CPU.

Identical configurations are scored once (the defaults appear in several ablations). The results
file is rewritten (atomically) after every row; ``--resume`` keeps the rows of an earlier run of
the same rows on the same data and only runs the rest. MLP rows need ``controller.safetensors``
beside the model; without it they are skipped with a warning.
"""
from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from bioprune.config import DENSE, PruningConfig
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import evaluate_engine
from bioprune.io.pubtator import read_pubtator
from training.analysis.timing import TimingPlan, time_systems
from training.analysis.common import (TEST_SET, command_line, parse_dataclass, config_dict,
                                      write_json_atomic)
from training.analysis.suite import (DEFAULT_LAMBDAS, DEFAULT_LAYER_SETS, DEFAULT_MIN_KEEP_RATIOS, GROUPS,
                                     MLP_FAMILIES, SuiteRow, suite_rows, timed_groups)
from training.sweep_pruning import row as sweep_row

logger = logging.getLogger("eval_suite")


@dataclass(frozen=True)
class SuiteArgs:
    gold: str = str(TEST_SET)  # PubTator file scored (the BC5CDR test set)
    output: str = "results/eval_suite.json"  # results JSON, rewritten after every row
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (exit heads; controller.safetensors for mlp rows)
    groups: tuple[Literal[GROUPS], ...] = GROUPS  # which groups of rows to run
    timing: tuple[Literal[GROUPS], ...] | None = None  # time the rows of these groups (bare --timing: every selected group)
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS  # λ values of the pareto and controllers curves
    min_keep_ratios: tuple[float, ...] = DEFAULT_MIN_KEEP_RATIOS  # min_keep_ratio values of the ablation
    prune_layers: tuple[tuple[int, ...], ...] = DEFAULT_LAYER_SETS  # ablation layer sets, one per flag (repeat it)
    limit_docs: int = 0  # 0: every document of --gold (smoke runs: a few)
    timing_docs: int = 100  # abstracts timed (the first ones of the scored documents)
    rounds: int = 3  # alternating timed rounds per batch size (medians reported)
    warmup_docs: int = 16  # abstracts each system annotates untimed before each batch size
    batch_sizes: tuple[int, ...] = (1, 16)  # timed batch sizes
    eval_batch_size: int = 16  # windows per forward pass when scoring
    threads: int = 2  # torch intra-op threads
    resume: bool = False  # keep the finished rows of an earlier run of --output


def score_row(row: SuiteRow, scores: dict, dense: dict) -> dict:
    """The results-file entry of a scored row: the sweep's fields plus per-type P/R and counts."""
    out = {"group": row.group, "family": row.family, "name": row.name, "x": row.x, "is_default": row.is_default,
           **sweep_row(scores, dense, row.config)}
    out["config"] = config_dict(row.config)
    out["mention"] = scores["mention"]
    p = scores.get("pruning", {})
    out["token_keep_ratio_last_layer"] = p.get("token_keep_ratio_last_layer", 1.0)
    out["recovered_tokens"] = p.get("recovered_tokens", 0)
    return out


def _reusable(previous: dict | None, header: dict) -> dict[tuple[str, str], dict]:
    """Rows of an earlier results file that were run on the same data and model, by (group, name)."""
    if not previous:
        return {}
    same = all(previous.get(k) == header[k] for k in ("gold", "model", "n_documents", "timing_docs", "threads"))
    if not same:
        logger.warning("--resume: %s was run on other data, model or timing settings; starting afresh", header["output"])
        return {}
    return {(r["group"], r["name"]): r for r in previous.get("rows", [])}


def dense_timing_summary(rows: list[dict]) -> dict:
    """Median over the timed rows of the dense model's measurements (each taken beside one row)."""
    out = {}
    for r in rows:
        for bs, entry in (r.get("timing") or {}).items():
            out.setdefault(bs, []).append(entry["dense"]["ms_per_abstract"])
    return {bs: {"ms_per_abstract": statistics.median(v), "abstracts_per_s": 1000 / statistics.median(v),
                 "n_measurements": len(v)} for bs, v in out.items()}


def run(args: SuiteArgs, command: str) -> dict:
    torch.set_num_threads(args.threads)
    docs = read_pubtator(args.gold)[: args.limit_docs or None]
    engine = PruningEngine.from_pretrained(args.model, config=DENSE)
    with_mlp = "mlp" in engine.controllers
    if "pareto" in args.groups and not with_mlp:
        logger.warning("no controller.safetensors in %s: skipping the rows of %s", args.model, ", ".join(MLP_FAMILIES))
    rows = suite_rows(args.groups, args.lambdas, with_mlp, args.min_keep_ratios, args.prune_layers)
    timed = timed_groups(args.timing, args.groups)
    texts = [d.text for d in docs[: args.timing_docs]]
    plan = TimingPlan(rounds=args.rounds, warmup_docs=args.warmup_docs, batch_sizes=args.batch_sizes)
    header = {"command": command, "output": args.output, "gold": args.gold, "model": args.model,
              "n_documents": len(docs), "timing_docs": len(texts), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "groups": list(args.groups), "timed_groups": sorted(timed),
              "timing_plan": {"rounds": plan.rounds, "warmup_docs": plan.warmup_docs,
                              "batch_sizes": list(plan.batch_sizes)},
              "mlp_available": with_mlp}
    previous = json.loads(Path(args.output).read_text()) if args.resume and Path(args.output).is_file() else None
    reusable = _reusable(previous, header)

    started = time.perf_counter()
    dense = evaluate_engine(engine, docs, batch_size=args.eval_batch_size)
    logger.info("dense: micro F1 %.4f (%.0f s)", dense["mention"]["micro"]["f1"], time.perf_counter() - started)
    result = {**header, "dense": {"mention": dense["mention"]}, "rows": [], "dense_timing": {}}
    write_json_atomic(args.output, result)
    scored: dict[PruningConfig, dict] = {DENSE: dense}
    for row in tqdm(rows, desc="suite", unit="row"):
        want_timing = row.group in timed and row.config.enabled
        old = reusable.get((row.group, row.name))
        if old is not None and old["config"] == config_dict(row.config) and (old.get("timing") or not want_timing):
            logger.info("%s: kept from the earlier run", row.name)
            result["rows"].append(old)
            continue
        started = time.perf_counter()
        if row.config not in scored:
            scored[row.config] = evaluate_engine(engine.with_config(row.config), docs, batch_size=args.eval_batch_size)
        entry = score_row(row, scored[row.config], dense)
        entry["eval_seconds"] = time.perf_counter() - started
        if want_timing:
            pruned = engine.with_config(row.config)
            entry["timing"] = time_systems({"dense": lambda t, bs: engine.annotate(t, batch_size=bs),
                                            "pruned": lambda t, bs: pruned.annotate(t, batch_size=bs)}, texts, plan)
        result["rows"].append(entry)
        result["dense_timing"] = dense_timing_summary(result["rows"])
        write_json_atomic(args.output, result)
        speed = "; ".join(f"batch {bs} {e['speedup_median']:.2f}×" for bs, e in entry.get("timing", {}).items())
        logger.info("%s: F1 %.4f (drop %.2f) FLOPs saved %.1f%% pruned %.1f%% recovery %.1f%% %s", row.name,
                    entry["f1"]["micro"], entry["f1_drop_points"]["micro"], 100 * entry["flops_saved_ratio"],
                    100 * entry["tokens_pruned_ratio"], 100 * entry["recovery_rate_documents"], speed)
    return result


def main(argv=None) -> dict:
    args = parse_dataclass(SuiteArgs, __doc__, argv)
    return run(args, command_line("-m training.eval_suite", argv))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
