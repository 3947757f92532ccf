"""Charts of the evaluation suite, from the results files (matplotlib, Agg; ``pip install -e ".[eval]"``).

    python -m training.plot_results [--results-dir results] [--output-dir results]

Reads ``eval_suite.json`` and ``controllers_dev.json`` (training/eval_suite.py) and ``fairness.json``
(training/fairness_analysis.py) and writes, where their data is present:

* ``pareto_f1_latency.png``: micro F1 vs ms/abstract at batch 16 (timed rows) and vs FLOPs saved,
  one curve per controller over λ, dense as a point;
* ``controllers_test.png``, ``controllers_dev.png``: F1 drop vs FLOPs saved of the rule and MLP
  controllers at the same pruning layers (the ``controllers`` group), on test and on dev;
* ``ablation_min_keep_ratio.png``, ``ablation_prune_layers.png``, ``ablation_recovery.png``: F1 drop,
  FLOPs saved and documents with recovery along each ablation;
* ``fairness_groups.png``: F1 and recall drop per group, with the number of gold mentions;

and from ``benchmark_peers.json`` (training/benchmark_peers.py):

* ``benchmark_peers.png``: each peer's micro F1 against its speed over bioprune dense fp32 at batch
  16, beside its speed at every batch size timed (grouped bars).

The data selection is plain functions (testable without matplotlib); the plotting is thin.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from training.analysis.common import at_operating_point, parse_dataclass

logger = logging.getLogger("plot_results")

CURVE_FAMILIES = ("rule", "mlp", "mlp+recovery")
ABLATIONS = {"min_keep_ratio": ("ablation_min_keep_ratio.png", "min_keep_ratio"),
             "prune_layers": ("ablation_prune_layers.png", "prune layers"),
             "recovery": ("ablation_recovery.png", "recovery")}
TIMED_BATCH = "16"


@dataclass(frozen=True)
class PlotArgs:
    results_dir: str = "results"  # where the results JSON files are read
    output_dir: str | None = None  # where the charts go (default: the results dir)


def pareto_curves(suite: dict, batch: str = TIMED_BATCH) -> dict[str, list[dict]]:
    """Per controller family, its pareto rows sorted by λ: λ, micro F1, FLOPs saved, and the pruned
    ms/abstract at ``batch`` (None when the row was not timed)."""
    curves: dict[str, list[dict]] = {}
    for r in suite["rows"]:
        if r["group"] != "pareto" or r["family"] not in CURVE_FAMILIES:
            continue
        timing = (r.get("timing") or {}).get(batch)
        curves.setdefault(r["family"], []).append({
            "lambda": r["x"], "f1": r["f1"]["micro"], "flops_saved": r["flops_saved_ratio"],
            "ms": timing["pruned"]["ms_per_abstract"] if timing else None})
    return {f: sorted(pts, key=lambda p: p["lambda"]) for f, pts in curves.items()}


def dense_point(suite: dict, batch: str = TIMED_BATCH) -> dict:
    """Dense micro F1 and its median ms/abstract at ``batch`` over the timed rows (None if untimed)."""
    timing = suite.get("dense_timing", {}).get(batch)
    return {"f1": suite["dense"]["mention"]["micro"]["f1"], "ms": timing["ms_per_abstract"] if timing else None}


def controller_curves(suite: dict) -> dict[str, dict[str, list[dict]]]:
    """The ``controllers`` group by layer set, then controller: points (λ, F1 drop, FLOPs saved) by λ."""
    out: dict[str, dict[str, list[dict]]] = {}
    for r in suite["rows"]:
        if r["group"] != "controllers":
            continue
        controller, layers = r["family"].split(" ", 1)
        out.setdefault(layers, {}).setdefault(controller, []).append(
            {"lambda": r["x"], "f1": r["f1"]["micro"], "drop": r["f1_drop_points"]["micro"],
             "flops_saved": r["flops_saved_ratio"], "default": at_operating_point(r["config"])})
    return {ls: {c: sorted(pts, key=lambda p: p["lambda"]) for c, pts in by_c.items()} for ls, by_c in out.items()}


def ablation_series(suite: dict, family: str) -> list[dict]:
    """The rows of one ablation in run order: label, F1 drop (points), FLOPs saved, tokens pruned,
    documents with recovery, and whether it is the default configuration."""
    return [{"label": str(r["x"]), "x": r["x"], "f1_drop": r["f1_drop_points"]["micro"],
             "flops_saved": r["flops_saved_ratio"], "tokens_pruned": r["tokens_pruned_ratio"],
             "recovery": r["recovery_rate_documents"], "default": r.get("is_default", False)}
            for r in suite["rows"] if r["group"] == "ablations" and r["family"] == family]


def peers_points(peers: dict) -> list[dict]:
    """Per system of benchmark_peers.json, in its order: name, micro F1, entity agreement with dense
    fp32, and speed over dense fp32 per batch size timed (``{"1": ratio, "16": ratio}``)."""
    return [{"name": name, "f1": e["f1"]["micro"], "agreement": e["agreement_with_dense_fp32"],
             "speed": {bs: b["speedup_vs_dense_fp32"] for bs, b in e["batch"].items()}}
            for name, e in peers["systems"].items()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(suite: dict, path: Path) -> None:
    plt = _pyplot()
    curves, dense = pareto_curves(suite), dense_point(suite)
    fig, (ax_ms, ax_fl) = plt.subplots(1, 2, figsize=(11, 4.2))
    for family, pts in curves.items():
        for ax, key, scale in ((ax_ms, "ms", 1.0), (ax_fl, "flops_saved", 100.0)):
            shown = [p for p in pts if p[key] is not None]
            if not shown:
                continue
            xs = [scale * p[key] for p in shown]
            ax.plot(xs, [p["f1"] for p in shown], marker="o", label=family)
            for x, p in zip(xs, shown):
                ax.annotate(f"λ={p['lambda']:g}", (x, p["f1"]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if dense["ms"] is not None:
        ax_ms.plot([dense["ms"]], [dense["f1"]], marker="*", markersize=12, color="black", linestyle="", label="dense")
    else:
        ax_ms.text(0.5, 0.5, "no timing in eval_suite.json\n(run it with --timing pareto)", ha="center",
                   va="center", transform=ax_ms.transAxes)
    ax_fl.plot([0.0], [dense["f1"]], marker="*", markersize=12, color="black", linestyle="", label="dense")
    ax_ms.set_xlabel(f"ms / abstract, batch {TIMED_BATCH}, {suite.get('threads', '?')} CPU threads")
    ax_fl.set_xlabel("FLOPs saved (%)")
    for ax in (ax_ms, ax_fl):
        ax.set_ylabel("micro F1 (exact mention)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"BC5CDR test ({suite['n_documents']} abstracts): F1 vs cost, one curve per controller over λ")
    _save(plt, fig, path)


def plot_controllers(suite: dict, split: str, path: Path) -> bool:
    curves = controller_curves(suite)
    if not curves:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.0), squeeze=False, sharey=True)
    for ax, (layers, by_controller) in zip(axes[0], curves.items()):
        for controller, pts in by_controller.items():
            xs = [100 * p["flops_saved"] for p in pts]
            ax.plot(xs, [p["drop"] for p in pts], marker="o", label=controller)
            for x, p in zip(xs, pts):
                ax.annotate(f"λ={p['lambda']:g}" + (" *" if p["default"] else ""), (x, p["drop"]),
                            textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(f"pruning after layers {layers}", fontsize=9)
        ax.set_xlabel("FLOPs saved (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("micro F1 drop vs dense (points; lower is better)")
    fig.suptitle(f"Rule vs MLP controller at the same pruning layers\n{split} "
                 f"({suite['n_documents']} abstracts; * = a controller's default)", fontsize=10)
    _save(plt, fig, path)
    return True


def plot_ablation(suite: dict, family: str, title: str, path: Path) -> bool:
    series = ablation_series(suite, family)
    if not series:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    labels = [s["label"] + (" *" if s["default"] else "") for s in series]
    panels = (("f1_drop", 1.0, "micro F1 drop vs dense (points)"), ("flops_saved", 100.0, "FLOPs saved (%)"),
              ("recovery", 100.0, "documents with recovery (%)"))
    numeric = all(isinstance(s["x"], (int, float)) for s in series)
    for ax, (key, scale, ylabel) in zip(axes, panels):
        values = [scale * s[key] for s in series]
        if numeric:
            ax.plot([s["x"] for s in series], values, marker="o")
            ax.plot([s["x"] for s in series if s["default"]], [v for s, v in zip(series, values) if s["default"]],
                     marker="o", linestyle="", color="tab:orange", label="default")
            ax.set_xlabel(title)
        else:
            ax.bar(range(len(series)), values, color=["tab:orange" if s["default"] else "tab:blue" for s in series])
            ax.set_xticks(range(len(series)), labels, rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Ablation: {title} (rule controller, other settings at their defaults; * = default)")
    _save(plt, fig, path)
    return True


def plot_fairness(fair: dict, path: Path) -> None:
    plt = _pyplot()
    groupings = list(fair["groups"].items())
    fig, axes = plt.subplots(1, len(groupings), figsize=(3.4 * len(groupings), 4.2), squeeze=False)
    for ax, (name, groups) in zip(axes[0], groupings):
        names = list(groups)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [groups[g]["drop_points"]["f1"] for g in names], width=0.4, label="F1")
        ax.bar([x + 0.2 for x in xs], [groups[g]["drop_points"]["recall"] for g in names], width=0.4, label="recall")
        long = max(len(g) for g in names) > 10
        ax.set_xticks(list(xs), [f"{g}\nn={groups[g]['n_gold']}" for g in names], fontsize=7,
                      rotation=30 if long else 0, ha="right" if long else "center")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("drop vs dense (points)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Drop per group, pruned ({fair['config']['controller']}, λ={fair['config']['aggressiveness']:g}) "
                 f"vs dense, BC5CDR test ({fair['n_documents']} abstracts)")
    _save(plt, fig, path)


def plot_peers(peers: dict, path: Path) -> None:
    """Left: micro F1 against speed over dense fp32 at batch 16 (the last batch size timed if 16 was
    not), one marker per system. Right: speed over dense fp32 per system, one bar per batch size."""
    plt = _pyplot()
    points = peers_points(peers)
    batches = list(points[0]["speed"])
    batch = TIMED_BATCH if TIMED_BATCH in batches else batches[-1]
    fig, (ax_f1, ax_bars) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.15]})
    markers = "o*sDv^P<>Xh"
    for i, p in enumerate(points):
        ax_f1.plot([p["speed"][batch]], [p["f1"]], marker=markers[i % len(markers)], markersize=10 if i else 14,
                   linestyle="", color=f"C{i}", label=f"{p['name']} (agreement {p['agreement']:.3f})")
    ax_f1.axvline(1.0, color="black", linewidth=0.6)
    ax_f1.set_xlabel(f"speed vs bioprune dense fp32, batch {batch} (×; higher is faster)")
    ax_f1.set_ylabel("micro F1 (exact mention)")
    ax_f1.set_title(f"F1 vs speed, batch {batch}", fontsize=10)
    ax_f1.grid(alpha=0.3)
    ax_f1.legend(fontsize=7, loc="best")
    width = 0.8 / len(batches)
    ys = range(len(points))
    for j, bs in enumerate(batches):
        offsets = [y - 0.4 + width * (j + 0.5) for y in ys]
        speeds = [p["speed"][bs] for p in points]
        bars = ax_bars.barh(offsets, speeds, height=width, label=f"batch {bs}", color=f"C{j}", alpha=0.85)
        ax_bars.bar_label(bars, labels=[f"{v:.2f}×" for v in speeds], fontsize=7, padding=2)
    ax_bars.axvline(1.0, color="black", linewidth=0.6)
    ax_bars.set_yticks(list(ys), [p["name"] for p in points], fontsize=8)
    ax_bars.invert_yaxis()  # the results' order, dense fp32 on top
    ax_bars.set_xlabel("speed vs bioprune dense fp32 (×)")
    ax_bars.set_title("speed per batch size", fontsize=10)
    ax_bars.grid(alpha=0.3, axis="x")
    ax_bars.legend(fontsize=8, loc="upper right")  # beside the baseline's short bars
    ax_bars.margins(x=0.12)
    fig.suptitle(f"Peers on BC5CDR test: F1 on {peers['n_abstracts_scored']} abstracts, speed on "
                 f"{peers['n_abstracts_timed']} ({peers['threads']} CPU threads, median of alternating rounds)",
                 fontsize=10)
    _save(plt, fig, path)


def main(argv=None) -> list[Path]:
    args = parse_dataclass(PlotArgs, __doc__, argv)
    src = Path(args.results_dir)
    out = Path(args.output_dir or args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def draw(name: str, plot, *data) -> None:
        if plot(*data, out / name) is not False:  # False: no data for the chart
            written.append(out / name)

    def load(name: str, missing: str):
        if (src / name).is_file():
            return json.loads((src / name).read_text())
        logger.warning("%s not found: %s", src / name, missing)

    if (suite := load("eval_suite.json", "no pareto or ablation charts")) is not None:
        if pareto_curves(suite):
            draw("pareto_f1_latency.png", plot_pareto, suite)
        for family, (name, title) in ABLATIONS.items():
            draw(name, plot_ablation, suite, family, title)
        draw("controllers_test.png", plot_controllers, suite, "BC5CDR test, shipped model")
    if (src / "controllers_dev.json").is_file():
        draw("controllers_dev.png", plot_controllers, json.loads((src / "controllers_dev.json").read_text()),
             "BC5CDR dev, model trained on train only")
    if (fair := load("fairness.json", "no fairness chart")) is not None:
        draw("fairness_groups.png", plot_fairness, fair)
    if (peers := load("benchmark_peers.json", "no peers chart")) is not None:
        draw("benchmark_peers.png", plot_peers, peers)
    for p in written:
        logger.info("wrote %s", p)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
