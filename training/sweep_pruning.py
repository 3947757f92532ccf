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
import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from tqdm import tqdm

from bioprune.config import DEFAULT, DENSE, PruningConfig
from bioprune.engine import PruningEngine
from bioprune.evaluation import evaluate_engine
from bioprune.io.pubtator import Mention, PubTatorDocument, read_pubtator
from training.analysis.common import command_line, medline_halves, parse_dataclass, write_json_atomic


@dataclass(frozen=True)
class SweepArgs:
    model: str  # model directory
    output: str  # results JSON
    gold: str | None = None  # PubTator file with gold mentions (or --unlabelled)
    unlabelled: str | None = None  # PubMed XML scored against the dense predictions (or --gold)
    half: Literal["first", "second", "all"] = "first"  # with --unlabelled: which half of the documents
    controller: Literal["rule", "mlp", "none"] = "rule"  # none: the dense model at --set precision=... (default auto) against dense fp32
    lambdas: tuple[float, ...] = ()  # λ values; default: the controller's operating point
    min_keep_ratios: tuple[float, ...] = (DEFAULT.min_keep_ratio,)  # min_keep_ratio values to sweep
    prune_layers: tuple[tuple[int, ...], ...] = ()  # repeat for several sets; default: the operating point
    recovery: Literal["on", "off", "both"] = "on"  # recovery on, off or both
    loss_entity_probs: tuple[float, ...] = (DEFAULT.loss_entity_prob,)  # entity-loss trigger thresholds (above 1: off)
    spike_entropies: tuple[float, ...] = (DEFAULT.spike_entropy_nats,)  # entropy-spike trigger thresholds (nats)
    spike_min_tokens: tuple[int, ...] = (DEFAULT.spike_min_tokens,)  # uncertain kept tokens the entropy spike needs
    recovery_windows: tuple[int, ...] = (DEFAULT.recovery_window_tokens,)  # tokens re-inserted around a trigger
    limit_docs: int = 0  # 0: every document
    threads: int = 2  # torch intra-op threads
    set: tuple[str, ...] = field(default=(), metadata={"metavar": "FIELD=VALUE"})  # other PruningConfig fields, e.g. guard_window_tokens=2


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
    args = parse_dataclass(SweepArgs, __doc__, argv, check=lambda a: (a.gold is None) == (a.unlabelled is None)
                           and "give exactly one of --gold and --unlabelled")
    torch.set_num_threads(args.threads)
    extra = {k: _parse(getattr(DENSE, k), v) for k, v in (kv.split("=", 1) for kv in args.set)}
    engine = PruningEngine.from_pretrained(args.model, config=DENSE)
    if args.gold:
        gold = read_pubtator(args.gold)
    else:
        first, second = medline_halves(args.unlabelled)
        docs = {"first": first, "second": second, "all": first + second}[args.half]
        gold = [PubTatorDocument(pmid=a.id, title=d.text[: d.title_end], abstract=d.text[d.title_end + 1:] or None,
                                 mentions=tuple(Mention(e.start, e.end, e.text, e.label) for e in a.entities))
                for d, a in zip(docs, engine.annotate(docs))]
    gold = gold[: args.limit_docs or None]
    dense = evaluate_engine(engine, gold)
    recoveries = {"on": [True], "off": [False], "both": [True, False]}[args.recovery]
    grid = list(itertools.product(args.prune_layers or [None], args.lambdas or [None],
                                  args.min_keep_ratios, recoveries, args.loss_entity_probs, args.spike_entropies,
                                  args.spike_min_tokens, args.recovery_windows))
    rows = []
    for layers, lam, mkr, rec, loss_p, spike, min_tokens, window in tqdm(grid, desc="sweep", unit="config"):
        if not rec and (loss_p, spike, min_tokens, window) != (args.loss_entity_probs[0], args.spike_entropies[0],
                                                               args.spike_min_tokens[0], args.recovery_windows[0]):
            continue  # the triggers change nothing with recovery off
        config = PruningConfig(controller=args.controller, aggressiveness=lam, min_keep_ratio=mkr,
                               prune_layers=layers, recovery=rec,
                               **{"loss_entity_prob": loss_p, "spike_entropy_nats": spike,
                                  "spike_min_tokens": min_tokens, "recovery_window_tokens": window, **extra})
        rows.append(row(evaluate_engine(engine.with_config(config), gold), dense, config))
        r = rows[-1]
        logging.info("%s λ=%s mkr=%s rec=%s (loss %s, spike %s x%s, window %s): F1 %.4f (drop %.2f) FLOPs saved %.1f%% recovery %.1f%%",
                     config.prune_layers, config.aggressiveness, mkr, rec, loss_p, spike, min_tokens, window, r["f1"]["micro"],
                     r["f1_drop_points"]["micro"], 100 * r["flops_saved_ratio"],
                     100 * r["recovery_rate_documents"])
    result = {"command": command_line("-m training.sweep_pruning", argv),
              "model": args.model, "gold": args.gold or f"dense predictions on {args.unlabelled} ({args.half} half)", "n_documents": len(gold),
              "dense_f1": {t: dense["mention"][t]["f1"] for t in dense["mention"]}, "rows": rows}
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
