"""Gather the multi-corpus recipe's dev evidence into results/multicorpus_dev.json.

    python -m training.export_multicorpus --stage1 runs/mc1 --candidate 2a=runs/mc2a \
        --candidate 2c=runs/mc2c --baseline results/dev_curve.json \
        --corpus-scores shipped=results/corpus_biored_dev_shipped.json ... \
        --postprocess runs/candidate/postprocess_dev.json --output results/multicorpus_dev.json

Runs live outside git (runs/ is ignored): what chose the shipped recipe is kept as a result. Each
run's per-epoch BC5CDR dev scores come from its ``training_run.json``, or, for a run stopped before
its end, from ``checkpoint/run.json``'s history. The baseline is the BC5CDR-only train-only curve.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.analysis.common import command_line, parse_dataclass, write_json_atomic

Named = tuple[tuple[str, ...], ...]  # a repeated NAME=VALUE option, its values per occurrence


@dataclass(frozen=True)
class ExportArgs:
    stage1: str  # the multi-corpus run's folder
    baseline: str  # results/dev_curve.json (BC5CDR only, train only)
    candidate: Named = ()  # NAME=FOLDER: a stage-2 run from the stage-1 model
    corpus_scores: Named = ()  # NAME=FILE: training.evaluate_corpus results of a model (BioRED dev before/after)
    dev_report: Named = ()  # NAME=FILE: bioprune evaluate results of a train-only candidate on BC5CDR dev (pruned paths)
    test_report: Named = ()  # NAME=FILE: bioprune evaluate results of the candidate on BC5CDR test: reported, never chosen on
    fidelity: Named = ()  # NAME=FILE: training/fidelity_medline.py results of a candidate
    postprocess: str | None = None  # choose_postprocess.py's results for the chosen candidate
    output: str = "results/multicorpus_dev.json"  # results JSON


def run_record(folder: str | Path) -> dict:
    """A run's recipe (files, epochs, learning rate, base) and its per-epoch dev micro/type F1."""
    folder = Path(folder)
    done = folder / "training_run.json"
    if done.is_file():
        run = json.loads(done.read_text())
        args, epochs, finished = run["args"], run["epochs"], True
    else:
        run = json.loads((folder / "checkpoint" / "run.json").read_text())
        args, epochs, finished = run["fingerprint"]["args"], run["history"], False
    curve = [{"epoch": e["epoch"], "train_loss": e["train_loss"],
              **{t: e["dev"]["mention"][t]["f1"] for t in ("micro", "Chemical", "Disease")},
              "chemical_precision": e["dev"]["mention"]["Chemical"]["precision"],
              "chemical_recall": e["dev"]["mention"]["Chemical"]["recall"]} for e in epochs if "dev" in e]
    return {"folder": str(folder), "finished": finished, "train": [Path(p).name for p in args["train"]],
            "base": Path(args["base"]).name, "epochs": args["epochs"], "learning_rate": args["learning_rate"],
            "train_precision": args.get("train_precision", "fp32"),
            "prune_layers": args.get("prune_layers") or [], "dev_curve": curve}


def named(values: Named) -> list[tuple[str, str]]:
    """A repeated option's ``NAME=VALUE`` arguments (per occurrence) as (name, value) pairs, in the order given."""
    return [tuple(v.split("=", 1)) for group in values for v in group]


def corpus_record(file: str | Path) -> dict:
    """Micro F1, chemical scores and chemicals on genes/variants, overall and on the gene-rich half,
    from ``training.evaluate_corpus``'s JSON."""
    scores = json.loads(Path(file).read_text())
    return {"source": str(file), "model": scores["model"], "gold": Path(scores["gold"]).name,
            "n_documents": scores["n_documents"],
            **{part: {"micro_f1": scores[part]["micro"]["f1"], "chemical": scores[part]["Chemical"],
                      "chemical_on_other_entity": scores[part]["chemical_on_other_entity"]}
               for part in ("all", "gene_rich")}}


def fidelity_record(file: str | Path) -> list[dict]:
    """Agreement with dense fp32 and FLOPs saved per row of ``training/fidelity_medline.py``'s JSON."""
    fid = json.loads(Path(file).read_text())
    return [{"controller": c, "recovery": r["config"]["recovery"], "agreement": r["f1"]["micro"],
             "flops_saved": r.get("flops_saved_ratio")} for c, rows in fid["controllers"].items() for r in rows]


def evaluation_record(file: str | Path) -> dict:
    """F1 per type, F1 drop against its dense model and agreement with it, from ``bioprune evaluate``'s JSON."""
    ev = json.loads(Path(file).read_text())
    return {"command": ev.get("command"), **{t: ev["mention"][t]["f1"] for t in ("micro", "Chemical", "Disease")},
            "f1_drop_points": ev.get("f1_drop_points", {}).get("micro"),
            "agreement": ev.get("agreement", {}).get("micro", {}).get("f1"),
            "flops_saved": ev.get("pruning", {}).get("flops_saved_ratio")}


def main(argv=None) -> dict:
    args = parse_dataclass(ExportArgs, __doc__, argv)
    baseline = json.loads(Path(args.baseline).read_text())
    best = baseline["epochs"][-1]["dev"]["mention"]
    result = {"command": command_line("-m training.export_multicorpus", argv),
              "baseline": {"source": args.baseline, "command": baseline["command"], "epochs": baseline["epochs"][-1]["epoch"],
                           **{t: best[t]["f1"] for t in ("micro", "Chemical", "Disease")}},
              "stage1": run_record(args.stage1),
              "candidates": {name: run_record(folder) for name, folder in named(args.candidate)},
              "corpus_scores": {name: corpus_record(file) for name, file in named(args.corpus_scores)},
              "dev_report": {name: evaluation_record(file) for name, file in named(args.dev_report)},
              "test_report": {name: evaluation_record(file) for name, file in named(args.test_report)},
              "fidelity_medline": {name: fidelity_record(file) for name, file in named(args.fidelity)}}
    if args.postprocess:
        pp = json.loads(Path(args.postprocess).read_text())
        result["postprocess"] = {"source": args.postprocess, "model": pp["args"]["model"],
                                 "micro_f1": {k: v["micro"]["f1"] for k, v in pp["variants"].items()}}
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    main()
