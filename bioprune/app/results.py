"""The Results tab's content: charts and scores the evaluation suite writes into ``results/``.

Charts are every ``*.png`` of the results directory (the F1-vs-latency Pareto plot, the ablations,
...), each shown full width with a caption: a sentence for the charts ``training/plot_results.py``
writes (:data:`CAPTIONS`), else one made from the file name. The directory is the package's shipped
copy when installed, the checkout's ``results/`` otherwise (:func:`bioprune.app.settings.default_results_dir`).
Charts are copied into the app's own output directory before they are shown, so the app never
serves a file from the repository or the installation itself.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

EVALUATION_FILE = "evaluate_test.json"
SCORE_HEADERS = ["type", "precision", "recall", "F1", "gold mentions", "predicted"]
# what each chart of training/plot_results.py shows (its docstring lists them)
CAPTIONS = {
    "pareto_f1_latency": "F1 vs latency (Pareto front of pruning settings): micro F1 against ms/abstract at "
                         "batch 16 and against FLOPs saved, one curve per controller over λ, dense as a point.",
    "controllers_test": "Rule vs MLP controller on the BC5CDR test set: F1 drop against FLOPs saved at the same "
                        "pruning layers.",
    "controllers_dev": "Rule vs MLP controller on the development set (train-only models): F1 drop against FLOPs "
                       "saved at the same pruning layers.",
    "ablation_min_keep_ratio": "Ablation: min keep ratio. F1 drop, FLOPs saved and documents with recovery "
                               "as min_keep_ratio changes.",
    "ablation_prune_layers": "Ablation: prune layers. F1 drop, FLOPs saved and documents with recovery for each "
                             "set of pruning layers.",
    "ablation_recovery": "Ablation: recovery. F1 drop, FLOPs saved and documents with recovery with recovery off, "
                         "on, and each trigger alone.",
    "benchmark_peers": "Peers on the same test abstracts: F1 against speed over bioprune dense fp32 at batch 16, "
                       "and speed at batch 1 and 16 (bioprune, HF pipeline, ONNX Runtime, spaCy CNN).",
    "fairness_groups": "Fairness: F1 and recall drop of the pruned model per group of mentions, with the number "
                       "of gold mentions in each.",
}
_WORDS = {"f1": "F1", "flops": "FLOPs", "mlp": "MLP", "lambda": "λ", "vs": "vs", "cpu": "CPU", "gpu": "GPU"}


@dataclass(frozen=True)
class Chart:
    path: Path
    caption: str


def caption_for(path: str | Path) -> str:
    """A caption from a chart's file name: ``ablation_min_keep_ratio.png`` -> "Ablation: min keep ratio"."""
    stem = Path(path).stem
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    words = [_WORDS.get(w.lower(), w) for w in stem.replace("-", "_").split("_") if w]
    if words and words[0].lower() == "ablation":
        return "Ablation: " + " ".join(words[1:]) if len(words) > 1 else "Ablation"
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else stem


def find_charts(results_dir: str | Path) -> list[Chart]:
    """Every ``*.png`` in ``results_dir``: Pareto plots first, then ablations, then the rest, by name."""
    directory = Path(results_dir)
    if not directory.is_dir():
        return []
    rank = lambda p: (0 if p.stem.startswith("pareto") else 1 if p.stem.startswith("ablation") else 2, p.stem)  # noqa: E731
    return [Chart(path, caption_for(path)) for path in sorted(directory.glob("*.png"), key=rank) if path.is_file()]


def stage_charts(charts: list[Chart], dest: Path) -> list[Chart]:
    """Copies of ``charts`` in ``dest`` (the app's output directory), replacing earlier copies."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    staged = []
    for chart in charts:
        target = dest / chart.path.name
        try:
            shutil.copyfile(chart.path, target)
        except OSError as err:  # a chart being rewritten right now: show the others
            logger.warning("could not copy %s: %s", chart.path, err)
            continue
        staged.append(Chart(target, chart.caption))
    return staged


def charts_note(results_dir: str | Path, charts: list[Chart]) -> str:
    """Markdown above the gallery: what is shown, or that no chart exists yet."""
    if not charts:
        return (f"**No charts yet.** The evaluation suite writes its charts (F1 vs latency, ablations) as PNG "
                f"files into `{Path(results_dir).name}/`; none exist there yet. Press *Reload* once they do.")
    return (f"{len(charts)} chart(s) written by the evaluation suite (`training/plot_results.py`), each at full "
            "width with its caption; click a chart to see it full screen.")


def dense_score_rows(results_dir: str | Path) -> list[list] | None:
    """Dense exact-match scores per entity type from ``evaluate_test.json``; None when absent or unreadable."""
    path = Path(results_dir) / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        mention = json.loads(path.read_text(encoding="utf-8"))["mention"]
        return [[t, round(s["precision"], 4), round(s["recall"], 4), round(s["f1"], 4), s.get("n_gold", ""),
                 s.get("n_pred", "")] for t, s in mention.items()]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("cannot read %s: %s", path, err)
        return None


def scores_note(results_dir: str | Path, rows: list[list] | None) -> str:
    name = f"{Path(results_dir).name}/{EVALUATION_FILE}"
    if rows is None:
        return f"No dense scores yet (`{name}` is missing)."
    return (f"Dense model on the BC5CDR test set, exact mention match (from `{name}`; "
            "`bioprune evaluate` writes it).")
