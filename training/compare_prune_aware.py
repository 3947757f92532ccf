"""Collect the development-set comparison that chose pruning-aware fine-tuning into one results file.

    # two train-only models: the dense fine-tune, and the same continued 2 epochs pruning-aware
    python -m training.multicorpus --train TRAIN --dev DEV --output runs/dev-minilm --epochs 8
    python -m training.multicorpus --base runs/dev-minilm --train TRAIN --dev DEV --output runs/dev-minilm-pa \
        --epochs 2 --learning-rate 3e-5 --prune-layers 2
    # exit heads for each, then the rule controller without recovery at several λ on dev
    python -m training.train_exits --model runs/dev-minilm --texts TRAIN --unlabelled MEDLINE --layers 2 3
    bioprune evaluate --model runs/dev-minilm --gold DEV --controller rule --lambda 2 --no-recovery --output E.json
    python -m training.compare_prune_aware --evaluations runs/pa_eval_*.json \
        --error-analyses runs/pa_err_*.json --output results/prune_aware_dev.json

Each evaluation file already holds its command, model, configuration, dense and pruned scores (same
weights, same run); this script only groups them by model so the README table comes from one file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.analysis.common import command_line, parse_dataclass, write_json_atomic


@dataclass(frozen=True)
class CompareArgs:
    evaluations: tuple[str, ...]  # bioprune evaluate JSON files
    error_analyses: tuple[str, ...] = ()  # training/error_analysis.py JSON files
    output: str = "results/prune_aware_dev.json"  # results JSON


def summarize(evaluations: list[dict], error_analyses: list[dict]) -> dict:
    """Rows per model: λ, dense F1, pruned F1, drop, tokens pruned, FLOPs saved; plus error causes."""
    models: dict[str, dict] = {}
    for ev in evaluations:
        if not ev.get("pruning"):
            continue
        entry = models.setdefault(ev["model"], {"dense_f1": ev["dense"]["mention"]["micro"]["f1"], "rows": []})
        entry["rows"].append({
            "aggressiveness": ev["config"]["aggressiveness"], "prune_layers": ev["config"]["prune_layers"],
            "recovery": ev["config"]["recovery"], "f1": ev["mention"]["micro"]["f1"],
            "f1_drop_points": ev["f1_drop_points"]["micro"],
            "tokens_pruned_ratio": ev["pruning"]["tokens_pruned_ratio"],
            "flops_saved_ratio": ev["pruning"]["flops_saved_ratio"], "command": ev["command"]})
    for entry in models.values():
        entry["rows"].sort(key=lambda r: r["aggressiveness"])
    for err in error_analyses:
        if err["model"] in models:
            models[err["model"]]["errors_added_by_cause"] = {"command": err["command"], **err["attribution"]["by_cause"],
                                                             "total": err["attribution"]["total"]}
    return {"gold": evaluations[0]["gold"], "models": models}


def render_markdown(res: dict) -> str:
    rows = ["| model | dense F1 | λ | pruned F1 | drop (points) | tokens pruned | FLOPs saved |",
            "|---|---|---|---|---|---|---|"]
    for model, entry in res["models"].items():
        for r in entry["rows"]:
            rows.append(f"| `{model}` | {entry['dense_f1']:.4f} | {r['aggressiveness']:g} | {r['f1']:.4f} | "
                        f"{r['f1_drop_points']:.2f} | {r['tokens_pruned_ratio']:.1%} | {r['flops_saved_ratio']:.1%} |")
    rows.append("")
    causes = [f"`{m}`: {e['errors_added_by_cause']['total']} errors added, "
              f"{e['errors_added_by_cause']['context_lost']} of them context lost"
              for m, e in res["models"].items() if "errors_added_by_cause" in e]
    rows.append(f"BC5CDR development set (`{Path(res['gold']['path']).name}`), rule controller, prune after 2 layers, "
                "no recovery; each row is one `bioprune evaluate` run (its command is in "
                "`results/prune_aware_dev.json`). " + ("Error analysis at λ=1: " + "; ".join(causes) + "." if causes else ""))
    return "\n".join(rows)


def main(argv=None) -> None:
    args = parse_dataclass(CompareArgs, __doc__, argv)
    res = summarize([json.loads(Path(p).read_text()) for p in args.evaluations],
                    [json.loads(Path(p).read_text()) for p in args.error_analyses])
    res["command"] = command_line("-m training.compare_prune_aware", argv)
    write_json_atomic(args.output, res)


if __name__ == "__main__":
    main()
