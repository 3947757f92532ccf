"""Sweep pruning settings against gold PubTator: F1 (and its drop vs dense), FLOPs saved, recovery.

    python -m training.sweep_pruning --model runs/dev-minilm --gold DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt \
        --lambdas 0.5 1 2 4 --prune-layers 2 --prune-layers 2 4 --output results/sweep_dev.json

Two modes. With ``--gold`` a PubTator file is scored against its gold mentions. With
``--unlabelled`` PubMed XML is scored against the dense model's own predictions (fidelity: the
dense entities are the reference), which is how the shipped model's defaults are chosen — it was
trained on train+dev, so the labelled text it never saw is the test set, kept for the final report;
the MEDLINE slice it never saw is split in halves, the first for choosing (``--half first``), the
second for the held-out fidelity report. The dense model runs once, in the same process, with the
same weights.
"""
from __future__ import annotations

import itertools
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from bioprune.config import DENSE, PruningConfig
from bioprune.engine import PruningEngine
from bioprune.evaluation import evaluate_engine
from bioprune.io.pubtator import Mention, PubTatorDocument, read_pubtator
from training.analysis.common import medline_halves


def _parse(default, text: str):
    """``--set`` value ``text`` as the type of the field's ``default`` (bool("False") would be True)."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"sweep_pruning: --set expects true or false for a yes/no field, got {text!r}")
        return text.lower() in ("true", "1")
    return type(default)(text)


def row(scores: dict, dense: dict, config: PruningConfig) -> dict:
    p = scores.get("pruning", {})
    return {"config": asdict(config),
            "f1": {t: scores["mention"][t]["f1"] for t in scores["mention"]},
            "f1_drop_points": {t: 100 * (dense["mention"][t]["f1"] - scores["mention"][t]["f1"])
                               for t in scores["mention"]},
            "flops_saved_ratio": p.get("flops_saved_ratio", 0.0),
            "tokens_pruned_ratio": p.get("tokens_pruned_ratio", 0.0),
            "recovery_rate_documents": p.get("recovery_rate_documents", 0.0),
            "recovery_events_by_trigger": p.get("recovery_events_by_trigger", {})}


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gold", help="PubTator file with gold mentions")
    source.add_argument("--unlabelled", help="PubMed XML scored against the dense predictions")
    parser.add_argument("--half", choices=["first", "second", "all"], default="first",
                        help="with --unlabelled: which half of the documents")
    parser.add_argument("--output", required=True)
    parser.add_argument("--controller", default="rule", choices=["rule", "mlp", "none"],
                        help="none: the dense model at --set precision=... (default auto) against dense fp32")
    parser.add_argument("--lambdas", type=float, nargs="+", help="default: the controller's operating point")
    parser.add_argument("--min-keep-ratios", type=float, nargs="+", default=[PruningConfig().min_keep_ratio])
    parser.add_argument("--prune-layers", type=int, nargs="+", action="append",
                        help="repeat for several sets; default: the controller's operating point")
    parser.add_argument("--recovery", choices=["on", "off", "both"], default="on")
    parser.add_argument("--loss-entity-probs", type=float, nargs="+", default=[PruningConfig().loss_entity_prob],
                        help="entity-loss recovery trigger thresholds to sweep (above 1: the trigger is off)")
    parser.add_argument("--spike-entropies", type=float, nargs="+", default=[PruningConfig().spike_entropy_nats],
                        help="entropy-spike recovery trigger thresholds (nats) to sweep")
    parser.add_argument("--spike-min-tokens", type=int, nargs="+", default=[PruningConfig().spike_min_tokens],
                        help="uncertain kept tokens a sequence needs before the entropy spike fires, to sweep")
    parser.add_argument("--recovery-windows", type=int, nargs="+", default=[PruningConfig().recovery_window_tokens],
                        help="how far from a trigger pruned tokens are re-inserted (tokens) to sweep")
    parser.add_argument("--limit-docs", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="other PruningConfig fields, e.g. guard_window_tokens=2")
    ns = parser.parse_args(argv)
    torch.set_num_threads(ns.threads)
    extra = {k: _parse(getattr(DENSE, k), v) for k, v in (kv.split("=", 1) for kv in ns.set)}
    engine = PruningEngine.from_pretrained(ns.model, config=DENSE)
    if ns.gold:
        gold = read_pubtator(ns.gold)
    else:
        first, second = medline_halves(ns.unlabelled)
        docs = {"first": first, "second": second, "all": first + second}[ns.half]
        gold = [PubTatorDocument(pmid=a.id, title=d.text[: d.title_end], abstract=d.text[d.title_end + 1:] or None,
                                 mentions=tuple(Mention(e.start, e.end, e.text, e.label) for e in a.entities))
                for d, a in zip(docs, engine.annotate(docs))]
    gold = gold[: ns.limit_docs] if ns.limit_docs else gold
    dense = evaluate_engine(engine, gold)
    recoveries = {"on": [True], "off": [False], "both": [True, False]}[ns.recovery]
    grid = list(itertools.product(ns.prune_layers or [None], ns.lambdas or [None],
                                  ns.min_keep_ratios, recoveries, ns.loss_entity_probs, ns.spike_entropies,
                                  ns.spike_min_tokens, ns.recovery_windows))
    rows = []
    for layers, lam, mkr, rec, loss_p, spike, min_tokens, window in tqdm(grid, desc="sweep", unit="config"):
        if not rec and (loss_p, spike, min_tokens, window) != (ns.loss_entity_probs[0], ns.spike_entropies[0],
                                                               ns.spike_min_tokens[0], ns.recovery_windows[0]):
            continue  # the triggers change nothing with recovery off
        config = PruningConfig(controller=ns.controller, aggressiveness=lam, min_keep_ratio=mkr,
                               prune_layers=layers, recovery=rec,
                               **{"loss_entity_prob": loss_p, "spike_entropy_nats": spike,
                                  "spike_min_tokens": min_tokens, "recovery_window_tokens": window, **extra})
        rows.append(row(evaluate_engine(engine.with_config(config), gold), dense, config))
        r = rows[-1]
        logging.info("%s λ=%s mkr=%s rec=%s (loss %s, spike %s x%s, window %s): F1 %.4f (drop %.2f) FLOPs saved %.1f%% recovery %.1f%%",
                     config.prune_layers, config.aggressiveness, mkr, rec, loss_p, spike, min_tokens, window, r["f1"]["micro"],
                     r["f1_drop_points"]["micro"], 100 * r["flops_saved_ratio"],
                     100 * r["recovery_rate_documents"])
    result = {"command": "python -m training.sweep_pruning " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": ns.model, "gold": ns.gold or f"dense predictions on {ns.unlabelled} ({ns.half} half)", "n_documents": len(gold),
              "dense_f1": {t: dense["mention"][t]["f1"] for t in dense["mention"]}, "rows": rows}
    Path(ns.output).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.output).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
