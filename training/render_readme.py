"""Write the result tables of the README, docs/*.md and the model card from the results files, never by hand.

    python -m training.render_readme

Reads results/evaluate_test.json and results/evaluate_test_pruned.json (``bioprune evaluate``),
results/benchmark_*.json (training/benchmark_*.py), results/dev_curve.json (training/export_dev_curve.py)
and the evaluation suite's results/eval_suite.json, error_analysis.json, fairness.json and
fidelity_medline.json (training/eval_suite.py, error_analysis.py, fairness_analysis.py, fidelity_medline.py),
and replaces the text between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers in
README.md, every docs/*.md and the shipped model's card (:func:`doc_files`). A missing results file
leaves its block as it is; a table whose block is in none of those files is reported on stderr.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bioprune.config import DEFAULT, DEFAULT_MIN_AGREEMENT, FAITHFUL, FAITHFUL_MIN_AGREEMENT, OPERATING_POINTS
from bioprune.engine import DEFAULT_MODEL_DIR
from training.analysis.common import at_operating_point
from training.analysis.frontier import compare, interpolate_f1
from training.analysis.suite import layers_text
from training.compare_prune_aware import render_markdown

RESULTS = ROOT / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _header(row: str) -> list[str]:
    """A table's header ``row`` and the separator row under it, one ``---`` per column."""
    return [row, "|" + "---|" * (row.count("|") - 1)]


def evaluation_table(res: dict) -> str:
    rows = _header("| measure | type | precision | recall | F1 | gold | predicted |")
    for t in ("Chemical", "Disease", "micro"):
        s = res["mention"][t]
        rows.append(f"| exact mention match | {t} | {s['precision']:.4f} | {s['recall']:.4f} | **{s['f1']:.4f}** "
                    f"| {s['n_gold']} | {s['n_pred']} |")
    for t in ("Chemical", "Disease", "micro"):
        s = res["seqeval"][t]
        rows.append(f"| seqeval entity (word BIO) | {t} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} "
                    f"| {s['support']} | |")
    rows += ["", f"{res['n_documents']} abstracts; `{res['command']}` → `results/evaluate_test.json`."]
    return "\n".join(rows)


def spacy_overhead_table(res: dict) -> str:
    """docs/spacy.md: ``nlp.pipe`` against the engine called directly (training/benchmark_spacy.py)."""
    rows = _header("| batch | `nlp.pipe` abstracts/s | engine abstracts/s | overhead | tokenizer + alignment, share of the "
                   "engine's time | engine's entities in `doc.ents` |")
    for key, b in res["batch"].items():
        same = ("all" if b["entities_equal"] else f"{b['spacy_entities']:,} of {b['engine_entities']:,} "
                f"({b['skipped_entities']} not alignable to spaCy's tokens)")
        rows.append(f"| {key.split('_')[1]} | {b['spacy_pipe']['docs_per_s']:.1f} | {b['engine']['docs_per_s']:.1f} | "
                    f"{b['overhead_ratio']:+.1%} | {b['component_share_of_engine_time']:.1%} | {same} |")
    rows += ["", f"{res['n_abstracts']} BC5CDR test abstracts, {res['threads']} CPU threads, median of "
             f"{res['args']['rounds']} alternating rounds, the component's default config; the share column is "
             f"timed alone, so a busy machine does not blur it. `{res['command']}` → `results/benchmark_spacy.json`."]
    return "\n".join(rows)


def dev_curve_table(res: dict) -> str:
    rows = _header("| epoch | train loss | dev micro F1 | dev Chemical F1 | dev Disease F1 |")
    for e in res["epochs"]:
        m = e["dev"]["mention"]
        rows.append(f"| {e['epoch']} | {e['train_loss']:.4f} | {m['micro']['f1']:.4f} | {m['Chemical']['f1']:.4f} "
                    f"| {m['Disease']['f1']:.4f} |")
    rows += ["", f"Trained on {res['n_train_abstracts']} training abstracts, scored on the 500 dev abstracts; "
                f"`{res['command']}` → `results/dev_curve.json`."]
    return "\n".join(rows)


# Per controller: its evaluation at the default, its benchmark, same-evaluation variants, benchmark with recovery.
PRUNING_FILES = {
    "rule": ("evaluate_test_pruned.json", "benchmark_pruning.json",
             (("evaluate_test_pruned_recovery.json", "--recovery"), ("evaluate_test_pruned_frozen.json", "--frozen-context")),
             "benchmark_pruning_recovery.json"),
    "mlp": ("evaluate_test_pruned_mlp.json", "benchmark_pruning_mlp.json",
            (("evaluate_test_pruned_mlp_recovery.json", "--recovery"),), None),
}


def _config_text(c: dict) -> str:
    return (f"controller `{c['controller']}`, λ={c['aggressiveness']}, min_keep_ratio={c['min_keep_ratio']}, "
            f"prune_layers={tuple(c['prune_layers'])}, recovery {'on' if c['recovery'] else 'off'}")


def pruning_table(ev: dict, bench: dict | None, controller: str = "rule") -> str:
    ev_file, bench_file, variants, bench_recovery_file = PRUNING_FILES[controller]
    p, c = ev["pruning"], ev["config"]
    rows = _header(f"| | dense | pruned ({c['controller']} default) |")
    for t in ("Chemical", "Disease", "micro"):
        rows.append(f"| F1 {t} | {ev['dense']['mention'][t]['f1']:.4f} | {ev['mention'][t]['f1']:.4f} "
                    f"(drop {ev['f1_drop_points'][t]:.2f} points) |")
    rows.append(f"| tokens pruned | – | {p['tokens_pruned_ratio']:.1%} |")
    rows.append(f"| tokens per layer | {p['tokens_per_layer'][0]:,} × {len(p['tokens_per_layer'])} | "
                f"{' / '.join(f'{n:,}' for n in p['tokens_per_layer'])} |")
    rows.append(f"| FLOPs saved | – | {p['flops_saved_ratio']:.1%} |")
    rows.append(f"| documents with recovery | – | {p['recovery_rate_documents']:.1%} "
                f"({', '.join(f'{k}: {v}' for k, v in p['recovery_events_by_trigger'].items()) or 'none'}) |")
    if bench:
        for bs, e in bench["batch"].items():
            rows.append(f"| batch {bs}: abstracts/s (ms/abstract) | {e['dense']['abstracts_per_s']:.1f} "
                        f"({e['dense']['ms_per_abstract']:.1f}) | {e['pruned']['abstracts_per_s']:.1f} "
                        f"({e['pruned']['ms_per_abstract']:.1f}) |")
            spread = (f"; rounds {min(e['speedup_per_round']):.2f}–{max(e['speedup_per_round']):.2f}×"
                      if e.get("speedup_per_round") else "")
            rows.append(f"| batch {bs}: speedup (median of rounds) | 1.00× | **{e['speedup_median']:.2f}×** "
                        f"({e['speedup_vs_flops_prediction']:.0%} of the {bench['flops_predicted_speedup']:.2f}× "
                        f"the FLOPs predict{spread}) |")
    rows += ["", f"BC5CDR test set, shipped model, {_config_text(c)}. Accuracy: `{ev['command']}` → "
             f"`results/{ev_file}`."]
    for name, flag in variants:
        other = _load(name)
        if other:
            q = other["pruning"]
            rows.append(f"Same evaluation with `{flag}`: micro F1 {other['mention']['micro']['f1']:.4f} (drop "
                        f"{other['f1_drop_points']['micro']:.2f} points), FLOPs saved {q['flops_saved_ratio']:.1%}, "
                        f"tokens pruned {q['tokens_pruned_ratio']:.1%}, documents with recovery "
                        f"{q['recovery_rate_documents']:.1%}: `{other['command']}` → `results/{name}`.")
    if bench:
        rows.append(f"Speed: {bench['threads']} CPU threads, {bench['n_abstracts']} abstracts, dense and pruned "
                    f"alternating in one process: `{bench['command']}` → `results/{bench_file}`.")
    with_recovery = _load(bench_recovery_file) if bench_recovery_file else None
    if with_recovery:
        speeds = "; ".join(f"batch {bs}: {e['speedup_median']:.2f}× ({e['speedup_vs_flops_prediction']:.0%} of the "
                           f"{with_recovery['flops_predicted_speedup']:.2f}× predicted)"
                           for bs, e in with_recovery["batch"].items())
        rows.append(f"Speed with recovery on ({with_recovery['pruning']['recovery_rate_documents']:.1%} of documents "
                    f"recovered, FLOPs saved {with_recovery['pruning']['flops_saved_ratio']:.1%}): {speeds}: "
                    f"`{with_recovery['command']}` → `results/{bench_recovery_file}`.")
    return "\n".join(rows)


# --- Evaluation suite (training/eval_suite.py, error_analysis.py, fairness_analysis.py, fidelity_medline.py) ---

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _timing_cells(timing: dict | None, batches=("1", "16")) -> list[str]:
    """'ms/abstract (speedup×)' of the pruned system per batch size; '–' where untimed."""
    return [f"{e['pruned']['ms_per_abstract']:.1f} ({e['speedup_median']:.2f}×)" if (e := (timing or {}).get(bs))
            else "–" for bs in batches]


def _suite_footer(res: dict, what: str) -> str:
    plan = res.get("timing_plan", {})
    if res.get("timed_groups"):
        timing = (f"Timing (groups {', '.join(res['timed_groups'])}): ms/abstract of the pruned model and its speedup "
                  f"over dense (median of {plan.get('rounds', '?')} alternating rounds after warm-up, the same first "
                  f"{res['timing_docs']} abstracts, {res['threads']} CPU threads).")
    else:
        timing = "Not timed in this run (`--timing`)."
    return (f"{what}: {_data_and_model(res)}, exact mention match; drop = dense − pruned in F1 points. {timing} "
            f"`{res['command']}` → `results/{Path(res['output']).name}`.")


def _data_and_model(res: dict) -> str:
    """'BC5CDR test set, 500 abstracts, shipped model', from a results file's gold and model paths."""
    gold = Path(res["gold"]).name
    split = "test" if "Test" in gold else "dev" if "Development" in gold else "training" if "Training" in gold else gold
    model = "shipped model" if Path(res["model"]).resolve() == DEFAULT_MODEL_DIR.resolve() else f"model `{res['model']}`"
    return f"BC5CDR {split} set, {res['n_documents']} abstracts, {model}"


def eval_suite_table(res: dict) -> str | None:
    rows = [r for r in res["rows"] if r["group"] == "pareto"]
    if not rows:
        return None
    out = _header("| configuration | F1 Chemical | F1 Disease | F1 micro | drop | tokens pruned | FLOPs saved "
                  "| docs recovered | batch 1 ms (speedup) | batch 16 ms (speedup) |")
    dense_t = res.get("dense_timing", {})
    for r in rows:
        f = r["f1"]
        if r["family"] == "dense":
            timing = [f"{dense_t[bs]['ms_per_abstract']:.1f} (1.00×)" if bs in dense_t else "–" for bs in ("1", "16")]
            cost = ["–", "–", "–"]
        else:
            timing = _timing_cells(r.get("timing"))
            cost = [_pct(r["tokens_pruned_ratio"]), _pct(r["flops_saved_ratio"]), _pct(r["recovery_rate_documents"])]
        name = f"**{r['name']}** (default)" if r.get("is_default") else r["name"]
        out.append(f"| {name} | {f['Chemical']:.4f} | {f['Disease']:.4f} | {f['micro']:.4f} "
                   f"| {r['f1_drop_points']['micro']:.2f} | " + " | ".join(cost + timing) + " |")
    out.append("")
    if not res.get("mlp_available", True):
        out.append("No `controller.safetensors` beside the model when this ran: the MLP rows are missing.")
    out.append(_suite_footer(res, "Controllers over λ"))
    overhead = _load("controller_overhead.json")
    if overhead:
        us, report = overhead["us_per_token"], DEFAULT_MODEL_DIR / "controller.json"
        without = report.is_file() and json.loads(report.read_text())["args"].get("without_attention", False)
        out.append(f"Controller overhead per token: MLP {us['mlp_controller']:.3f} µs, rule {us['rule_controller']:.3f} µs, "
                   f"exit head {us['exit_head']:.3f} µs, against {us['encoder_layer']:.1f} µs for one encoder layer "
                   f"(MLP = {overhead['mlp_vs_layer']:.2%} of a layer)"
                   + (f"; the layer before a pruning point costs {us['encoder_layer_with_attention_signals']:.1f} µs "
                      "when the controller reads attention signals (the rule controller does; the shipped MLP "
                      f"{'does not' if without else 'does too'})"
                      if "encoder_layer_with_attention_signals" in us else "")
                   + f": `{overhead['command'].strip()}` → `results/controller_overhead.json`.")
    return "\n".join(out)


def controllers_table(res: dict) -> str | None:
    """Rule vs MLP at the same pruning layers (the suite's ``controllers`` group) and whether the MLP
    dominates: its F1 against the rule curve's, interpolated at equal FLOPs saved."""
    rows = [r for r in res["rows"] if r["group"] == "controllers"]
    if not rows:
        return None
    by_layers: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        controller, layers = r["family"].split(" ", 1)
        by_layers.setdefault(layers, {}).setdefault(controller, []).append(r)
    lambdas = sorted({r["x"] for r in rows})
    out = _header("| pruning after layers | controller | " + " | ".join(f"λ={x:g}" for x in lambdas) + " |")
    verdicts = []
    for layers, by_controller in by_layers.items():
        for controller, rs in by_controller.items():
            bold = {r["x"]: "**" if at_operating_point(r["config"]) else "" for r in rs}
            cell = {r["x"]: (f"{bold[r['x']]}{r['f1_drop_points']['micro']:.2f} @ "
                             f"{_pct(r['flops_saved_ratio'])}{bold[r['x']]}") for r in rs}
            out.append(f"| {layers} | {controller} | " + " | ".join(cell.get(x, "–") for x in lambdas) + " |")
        curves = {c: [(r["flops_saved_ratio"], r["f1"]["micro"]) for r in rs] for c, rs in by_controller.items()}
        if "mlp" in curves and "rule" in curves:
            c = compare(curves["mlp"], curves["rule"])
            if c.n_compared:
                verdicts.append(f"after layers {layers}: MLP − rule F1 at equal FLOPs saved, over "
                                f"{_pct(c.flops_range[0])}–{_pct(c.flops_range[1])} ({c.n_compared} points): "
                                f"min {c.min_gain_points:+.2f}, mean {c.mean_gain_points:+.2f} points → "
                                f"{'the MLP dominates' if c.dominates else 'no dominance'}")
            else:
                verdicts.append(f"after layers {layers}: the curves' FLOPs ranges do not overlap")
    outside = [f"the {c.upper() if c == 'mlp' else c}'s, after layer{'s' * (len(p.prune_layers) > 1)} "
               f"{' and '.join(map(str, p.prune_layers))} at λ={p.aggressiveness:g}"
               f"{' with frozen context' if p.frozen_context else ''}" for c, p in OPERATING_POINTS.items()
               if c != "none" and any(r["config"]["controller"] == c for r in rows)
               and not any(at_operating_point(r["config"]) for r in rows if r["config"]["controller"] == c)]
    out += ["", "Cells: F1 drop vs dense (points) @ FLOPs saved; bold = that controller's operating point today"
               + (f" ({'; '.join(outside)}: not in this grid). " if outside else ". ")
               + ("Dominance (F1 of the other curve interpolated linearly at each point's FLOPs saved, inside "
                  "its range; `training/analysis/frontier.py`): " + "; ".join(verdicts) + "." if verdicts else "")]
    out.append(_suite_footer(res, "Rule vs MLP"))
    return "\n".join(out)


def recovery_dev_table(sweeps: list[dict], curves: dict | None) -> str:
    """Recovery on/off and the entropy spike's minimum of uncertain tokens, per controller
    (training/sweep_pruning.py on dev), beside what a lower λ without recovery gives at the same FLOPs
    saved (the controller's λ curve in ``curves``, results/controllers_dev.json, interpolated)."""
    out = _header("| controller | recovery | entropy spike: uncertain kept tokens ≥ | F1 micro | drop | FLOPs saved "
                  "| docs recovered (events) | drop of a lower λ without recovery at the same FLOPs |")
    commands = []
    for res in sweeps:
        dense = res["dense_f1"]["micro"]
        for r in sorted(res["rows"], key=lambda r: (r["config"]["recovery"], r["config"]["spike_min_tokens"])):
            c = r["config"]
            family = f"{c['controller']} {layers_text(c['prune_layers'])}"
            curve = [(p["flops_saved_ratio"], p["f1"]["micro"]) for p in (curves or {}).get("rows", [])
                     if p["family"] == family]
            same = interpolate_f1(curve, r["flops_saved_ratio"]) if c["recovery"] else None
            events = ", ".join(f"{k}: {v}" for k, v in r.get("recovery_events_by_trigger", {}).items()) or "none"
            out.append(f"| {c['controller']} λ={c['aggressiveness']:g} {layers_text(c['prune_layers'])} "
                       f"| {'on' if c['recovery'] else 'off'} | {c['spike_min_tokens'] if c['recovery'] else '–'} "
                       f"| {r['f1']['micro']:.4f} | {r['f1_drop_points']['micro']:.2f} | {_pct(r['flops_saved_ratio'])} "
                       f"| {_pct(r['recovery_rate_documents'])} ({events}) "
                       f"| {'–' if same is None else f'{100 * (dense - same):.2f}'} |")
        commands.append(f"`{res['command']}`")
    c = sweeps[0]["rows"][0]["config"]
    out += ["", f"BC5CDR dev set ({sweeps[0]['n_documents']} abstracts), model `{sweeps[0]['model']}`, each controller "
               f"at its operating point; entropy spike at {c['spike_entropy_nats']:g} nats, pruned tokens within "
               f"{c['recovery_window_tokens']} of a spike re-inserted, entity-loss trigger at p(entity) ≥ "
               f"{c['loss_entity_prob']:g}. Last column: the same controller and layers without recovery, its λ "
               "curve (`results/controllers_dev.json`) interpolated at the row's FLOPs saved (– outside the curve's "
               "range). " + "; ".join(commands) + " → `results/recovery_dev.json`, `results/recovery_dev_rule.json`."]
    return "\n".join(out)


def ablations_table(res: dict) -> str | None:
    rows = [r for r in res["rows"] if r["group"] == "ablations"]
    if not rows:
        return None
    out = _header("| ablation | setting | F1 micro | drop | tokens pruned | FLOPs saved | docs recovered (events) "
                  "| batch 1 ms (speedup) | batch 16 ms (speedup) |")
    for r in rows:
        events = ", ".join(f"{k}: {v}" for k, v in r.get("recovery_events_by_trigger", {}).items()) or "none"
        setting = f"**{r['x']}** (default)" if r.get("is_default") else str(r["x"])
        out.append(f"| {r['family']} | {setting} | {r['f1']['micro']:.4f} | {r['f1_drop_points']['micro']:.2f} "
                   f"| {_pct(r['tokens_pruned_ratio'])} | {_pct(r['flops_saved_ratio'])} "
                   f"| {_pct(r['recovery_rate_documents'])} ({events}) | " + " | ".join(_timing_cells(r.get("timing")))
                   + " |")
    out += ["", "Rule controller, every other setting at its default (the λ sweep is the rule curve above). "
               "`entity_loss only`: `spike_entropy_nats=inf`; `entropy_spike only`: `loss_entity_prob=inf`, "
               "`loss_next_to_entity=False`."]
    out.append(_suite_footer(res, "Ablations"))
    return "\n".join(out)


def _mention_text(m: dict | None) -> str:
    return "–" if m is None else f"“{m['text']}” ({m['type']})"


def error_analysis_table(res: dict) -> str:
    e = res["errors"]
    out = _header("| error kind | dense | pruned | added by pruning | removed by pruning |")
    for k in res["kinds"]:
        out.append(f"| {k} | {e['dense'][k]} | {e['pruned'][k]} | {e['added_by_pruning'][k]} "
                   f"| {e['removed_by_pruning'][k]} |")
    out.append(f"| **total** | {sum(e['dense'].values())} | {sum(e['pruned'].values())} "
               f"| {sum(e['added_by_pruning'].values())} | {sum(e['removed_by_pruning'].values())} |")
    a = res["attribution"]
    out += ["", *_header("| cause of an added error | errors | share |")]
    for c in res["causes"]:
        out.append(f"| {c} | {a['by_cause'][c]} | {a['by_cause'][c] / a['total']:.0%} |" if a["total"]
                   else f"| {c} | 0 | – |")
    f = a["by_flag"]
    out += ["", f"Flags (not exclusive): a gold-entity token pruned in {f['entity_tokens_pruned']}, a pruned token "
            f"with a wrong exit label in {f['wrong_early_exit']}, no token of the mention pruned (context lost) in "
            f"{f['context_lost']} of the {a['total']} added errors, spread over "
            f"{res['documents_with_added_errors']} documents.", "", "Examples:", ""]
    for x in res["examples"]:
        dense = ", ".join(_mention_text(m) for m in x["dense"]) or "nothing"
        pruned_tokens = ", ".join(f"“{t['text']}”→{t['label']}" for t in x["pruned_tokens"]) or "none"
        out.append(f"- {x['doc_id']}, {x['kind']}, *{x['cause']}*: gold {_mention_text(x['gold'])}; dense "
                   f"{dense}; pruned {_mention_text(x['pruned'])}; pruned tokens there: {pruned_tokens}")
    c = res["config"]
    out += ["", f"BC5CDR test set, {res['n_documents']} abstracts; pruned = {_config_text(c)}. `{res['command']}` → "
            "`results/error_analysis.json`."]
    return "\n".join(out)


def fairness_table(res: dict) -> str:
    out = _header("| grouping | group | gold mentions | recall dense → pruned | recall drop | F1 dense → pruned | F1 drop |")
    for name, groups in res["groups"].items():
        for g, v in groups.items():
            out.append(f"| {name} | {g} | {v['n_gold']} | {v['dense']['recall']:.4f} → {v['pruned']['recall']:.4f} "
                       f"| {v['drop_points']['recall']:.2f} | {v['dense']['f1']:.4f} → {v['pruned']['f1']:.4f} "
                       f"| {v['drop_points']['f1']:.2f} |")
    o = res["overall"]
    c = res["config"]
    out += ["", f"All mentions: F1 {o['dense']['f1']:.4f} → {o['pruned']['f1']:.4f} (drop {o['drop_points']['f1']:.2f}). "
            "Recall is over the group's gold mentions; precision (in the JSON) over predictions whose own text falls "
            "in the group. Seen = the lower-cased mention string is a gold mention of CDR train + dev "
            f"({res['training_vocabulary_size']:,} strings); abbreviation: {res['definitions']['abbreviation']}; "
            f"abstract length in quartiles of the test abstracts. Pruned = controller `{c['controller']}`, "
            f"λ={c['aggressiveness']}, defaults otherwise. `{res['command']}` → `results/fairness.json`."]
    return "\n".join(out)


def fidelity_table(res: dict) -> str:
    out = _header("| controller | precision | λ | pruning after layers | recovery | agreement F1 micro | Chemical | Disease "
                  "| tokens pruned | FLOPs saved | docs recovered |")
    for controller, rows in res["controllers"].items():
        for r in rows:
            c, f = r["config"], r["f1"]
            dense = controller == "none"
            out.append(f"| {controller} | {c.get('precision', 'fp32')} | {'–' if dense else c['aggressiveness']} "
                       f"| {'–' if dense else tuple(c['prune_layers'])} "
                       f"| {'–' if dense else 'on' if c['recovery'] else 'off'} | {f['micro']:.4f} "
                       f"| {f['Chemical']:.4f} | {f['Disease']:.4f} | {_pct(r['tokens_pruned_ratio'])} "
                       f"| {_pct(r['flops_saved_ratio'])} | {_pct(r['recovery_rate_documents'])} |")
    out += ["", f"Agreement = exact-match F1 of the entities against the exact dense fp32 model's on the {res['half']} "
            f"half of the MEDLINE slice ({res['n_documents']} abstracts with text, never seen in training nor used to "
            "choose settings); precision auto = bf16 on a CPU with native bf16. "
            f"`{res['command']}` → `results/fidelity_medline.json`."]
    return "\n".join(out)


# The fidelity frontier's columns after the shipped model's: (heading, results file) of each
# fidelity-distilled variant (training/distill_pruned.py), shown when its file is there.
FRONTIER_VARIANTS = (("distilled", "fidelity_frontier_distilled.json"),
                     ("distilled on labels", "fidelity_frontier_distilled_labels.json"))


def _setting(r: dict) -> tuple[tuple[int, ...], float]:
    """(pruning layers, λ) of a sweep row."""
    return tuple(r["config"]["prune_layers"]), r["config"]["aggressiveness"]


def frontier_table(shipped: dict, variants: list[tuple[str, dict, str]]) -> str:
    """training/sweep_pruning.py on the held-out MEDLINE half for the shipped model and each
    fidelity-distilled variant ``(heading, results, file name)``: agreement with each model's own
    dense fp32 against FLOPs saved."""
    theirs = [{_setting(r): r for r in res["rows"]} for _, res, _ in variants]
    out = _header("| MLP after layers | λ | shipped: agreement (Chemical, Disease) | FLOPs saved "
                  + "".join(f"| {name}: agreement (Chemical, Disease) | FLOPs saved " for name, _, _ in variants) + "|")
    for r in shipped["rows"]:
        rows = [r] + [t.get(_setting(r)) for t in theirs]
        if any(x is None for x in rows):
            continue
        cells = [f"{x['f1']['micro']:.4f} ({x['f1']['Chemical']:.3f}, {x['f1']['Disease']:.3f}) | "
                 f"{_pct(x['flops_saved_ratio'])}" for x in rows]
        out.append(f"| {_setting(r)[0]} | {_setting(r)[1]:g} | {' | '.join(cells)} |")
    commands = "; ".join(f"`{res['command']}` → `results/{file}`" for _, res, file in
                         [("shipped", shipped, "fidelity_frontier_shipped.json"), *variants])
    out += ["", f"{shipped['n_documents']} abstracts of the held-out MEDLINE half, recovery off, precision "
            f"{shipped['rows'][0]['config']['precision']}; each model against its own dense fp32; the "
            "controller was retrained for each distilled backbone, so equal λ is not equal pruning: compare rows by "
            f"FLOPs saved. {commands}."]
    return "\n".join(out)


# per pruning point the trained layers were made for: the four sweeps (own, trained) x (first, second half)
PRUNED_LAYERS_FILES = {point: tuple(f"pruned_layers_{prefix}{kind}_{half}.json" for half in ("first", "second")
                                    for kind in ("own", "trained"))
                       for point, prefix in ((2, ""), (3, "l3_"))}


def pruned_layers_table(points: list[tuple[tuple[dict, dict, dict, dict], tuple[str, ...]]]) -> str:
    """training/sweep_pruning.py at the trained layers' pruning point on each MEDLINE half, with the
    model's own upper layers (``trained_layers=false``) and with those trained for pruning
    (training/distill_pruned.py): agreement with dense fp32 and FLOPs saved at each λ. ``points``:
    per pruning point, its four runs (own first, trained first, own second, trained second) and
    their file names."""
    out = _header("| MLP after layers | λ | first half: own layers | trained | FLOPs saved | held-out half: own layers "
                  "| trained (Chemical, Disease) | FLOPs saved |")
    for runs, _ in points:
        by = [{_setting(r): r for r in res["rows"]} for res in runs]
        for r in runs[1]["rows"]:
            rows = [b.get(_setting(r)) for b in by]
            if any(x is None for x in rows):
                continue
            of, tf, os_, ts = rows
            out.append(f"| {_setting(r)[0]} | {_setting(r)[1]:g} | {of['f1']['micro']:.4f} | **{tf['f1']['micro']:.4f}** | "
                       f"{_pct(tf['flops_saved_ratio'])} | {os_['f1']['micro']:.4f} | **{ts['f1']['micro']:.4f}** "
                       f"({ts['f1']['Chemical']:.3f}, {ts['f1']['Disease']:.3f}) | {_pct(ts['flops_saved_ratio'])} |")
    runs = points[0][0]
    config = runs[1]["rows"][0]["config"]
    files = "; ".join(f"`{res['command']}` → `results/{file}`" for runs, names in points
                      for res, file in zip(runs, names))
    out += ["", f"{runs[1]['n_documents']} and {runs[3]['n_documents']} abstracts of the MEDLINE slice's "
            f"two halves (neither trained on), {'frozen context, ' if config['frozen_context'] else ''}recovery off, "
            f"precision {config['precision']}; agreement = exact-match F1 against the dense fp32 model's entities; the "
            f"same pruning decisions in both columns, so equal FLOPs. {files}."]
    return "\n".join(out)


def faithful_choice(first: dict, min_agreement: float) -> tuple[tuple[int, ...], float] | None:
    """(pruning layers, λ) of the first-half sweep row that saves the most FLOPs with an agreement of
    at least ``min_agreement``: how :data:`bioprune.config.FAITHFUL` is chosen. None if no row qualifies."""
    ok = [r for r in first["rows"] if r["f1"]["micro"] >= min_agreement]
    return _setting(max(ok, key=lambda r: r["flops_saved_ratio"])) if ok else None


def evaluation_line(ev: dict, file: str) -> str:
    """One ``bioprune evaluate`` run (it scores dense fp32 too) as a list item: F1, drop, agreement, command."""
    split = "test" if "Test" in ev["gold"]["path"] else "dev (trained on)"
    m = ev["mention"]
    return (f"- BC5CDR {split}: micro F1 {m['micro']['f1']:.4f} (Chemical {m['Chemical']['f1']:.4f}, Disease "
            f"{m['Disease']['f1']:.4f}), F1 drop against dense fp32 {ev['f1_drop_points']['micro']:.2f} "
            f"points (negative: above it), entity agreement {ev['agreement']['micro']['f1']:.4f}: "
            f"`{ev['command']}` → `results/{file}`.")


def default_block(first: dict, second: dict, evaluations: dict[str, dict]) -> str:
    """How :data:`bioprune.config.DEFAULT` is chosen and confirmed: the layer-3 sweep of the trained
    upper layers on the first MEDLINE half (the row with the most FLOPs saved at an agreement of at
    least DEFAULT_MIN_AGREEMENT), the same rows on the held-out half, and its BC5CDR evaluations."""
    shipped = (DEFAULT.prune_layers, DEFAULT.aggressiveness)
    choice = faithful_choice(first, DEFAULT_MIN_AGREEMENT)
    if choice != shipped:
        print(f"render_readme: DEFAULT is {shipped} but the first half chooses {choice}", file=sys.stderr)
    chosen = next(r for r in first["rows"] if _setting(r) == shipped)
    held = next(r for r in second["rows"] if _setting(r) == shipped)
    where = f"λ={shipped[1]:g} after layer{'s' if len(shipped[0]) > 1 else ''} {', '.join(map(str, shipped[0]))}"
    out = [f"- Chosen on the first MEDLINE half: {where} is the row of the sweep with the most FLOPs saved at an "
           f"agreement of at least {DEFAULT_MIN_AGREEMENT:g} with dense fp32: {chosen['f1']['micro']:.4f}, "
           f"{_pct(chosen['flops_saved_ratio'])} of the FLOPs saved (the \"trained\" rows of the table in "
           f"[Fidelity distillation](#fidelity-distillation)): `{first['command']}`.",
           f"- Confirmed on the held-out half: agreement {held['f1']['micro']:.4f} (Chemical "
           f"{held['f1']['Chemical']:.3f}, Disease {held['f1']['Disease']:.3f}), {_pct(held['flops_saved_ratio'])} "
           f"of the FLOPs saved: the same with `--half second`."]
    out += [evaluation_line(ev, file) for file, ev in evaluations.items()]
    return "\n".join(out)


def faithful_table(first: dict, second: dict, evaluations: dict[str, dict], int8: dict | None = None) -> str:
    """training/sweep_pruning.py with frozen context on each MEDLINE half: the first half chooses
    :data:`bioprune.config.FAITHFUL` (:func:`faithful_choice`), the held-out second half confirms it;
    ``evaluations``: its ``bioprune evaluate`` runs by results file name (each scores dense fp32 too);
    ``int8``: the same sweep on the first half at int8 precision (whether int8 stacks on it)."""
    shipped = (FAITHFUL.prune_layers, FAITHFUL.aggressiveness)
    choice = faithful_choice(first, FAITHFUL_MIN_AGREEMENT)
    if choice != shipped:
        print(f"render_readme: FAITHFUL is {shipped} but the first half chooses {choice}", file=sys.stderr)
    held = {_setting(r): r for r in second["rows"]}
    out = _header("| MLP after layers | λ | first half (chooses): agreement | FLOPs saved | held-out half: agreement "
                  "(Chemical, Disease) | FLOPs saved |")
    for r in first["rows"]:
        h = held.get(_setting(r))
        name = f"**{_setting(r)[1]:g} (FAITHFUL)**" if _setting(r) == shipped else f"{_setting(r)[1]:g}"
        held_cells = (f"{h['f1']['micro']:.4f} ({h['f1']['Chemical']:.3f}, {h['f1']['Disease']:.3f}) | "
                      f"{_pct(h['flops_saved_ratio'])}") if h is not None else "– | –"
        out.append(f"| {_setting(r)[0]} | {name} | {r['f1']['micro']:.4f} | {_pct(r['flops_saved_ratio'])} "
                   f"| {held_cells} |")
    config = first["rows"][0]["config"]
    out += ["", f"{first['n_documents']} and {second['n_documents']} abstracts of the MEDLINE slice's two halves, "
            f"frozen context, recovery off, precision {config['precision']}; agreement = exact-match F1 against "
            f"the dense fp32 model's entities. FAITHFUL is the row of the first half with the most FLOPs saved "
            f"at an agreement of at least {FAITHFUL_MIN_AGREEMENT:g}. `{first['command']}` → "
            f"`results/fidelity_frozen_first.json`; the same with `--half second` → `results/fidelity_frozen_second.json`."]
    out += [""] if evaluations else []
    out += [evaluation_line(ev, file) for file, ev in evaluations.items()]
    if int8 is not None:
        rows = "; ".join(f"{r['f1']['micro']:.4f} at λ={_setting(r)[1]:g} after layers {_setting(r)[0]} "
                         f"({_pct(r['flops_saved_ratio'])} FLOPs saved)" for r in int8["rows"])
        below = all(r["f1"]["micro"] < FAITHFUL_MIN_AGREEMENT for r in int8["rows"])
        out += ["", f"Stacked on int8 (`--precision int8`), the first half agrees {rows}: "
                f"{'below' if below else 'not all below'} the {FAITHFUL_MIN_AGREEMENT:g} that chose FAITHFUL"
                f"{', so faithful pruning runs at the default precision' if below else ''}. "
                f"`{int8['command']}` → `results/fidelity_frozen_int8_first.json`."]
    return "\n".join(out)


def fidelity_tokens_table(res: dict) -> str:
    """training/fidelity_tokens.py: where each setting's disagreement with dense fp32 sits, token by
    token, and how much of the text a dense re-run would have to cover to reach the target agreement."""
    out = _header("| setting | agreement | FLOPs saved | kept tokens changed | pruned tokens changed | changed tokens the "
                  f"dense model was < {res['unsure_prob']:g} sure of | abstracts with a change | re-run to reach "
                  f"{res['target_agreement']:g}: oracle | by lowest kept confidence |")
    for r in res["rows"]:
        need = r["recovery_needed_ratio"]
        pruned = (f"{r['pruned_tokens_changed']} / {r['pruned_tokens']} ({100 * r['pruned_changed_ratio']:.2f}%)"
                  if r["pruned_tokens"] else "–")
        out.append(f"| {r['name']} | {r['agreement']:.4f} | {_pct(r['flops_saved_ratio'])} "
                   f"| {r['kept_tokens_changed']} / {r['kept_tokens']} ({100 * r['kept_changed_ratio']:.2f}%) "
                   f"| {pruned} | {_pct(r['changed_dense_unsure_ratio'])} | {_pct(r['documents_with_change_ratio'])} "
                   f"| {_pct(need['oracle'])} | {_pct(need['lowest_kept_confidence'])} |")
    out += ["", f"{res['n_documents']} abstracts of the {res['half']} MEDLINE half (where settings are chosen), each "
            "token's label against the exact dense fp32 model's; pruning settings in fp32 without recovery, so precision's "
            "share is only in the dense bf16 and int8 rows; re-run = share of abstracts re-run dense, in the oracle's order "
            "(most changed entities first) or the run-time signal's. "
            f"`{res['command']}` → `results/fidelity_tokens.json`."]
    return "\n".join(out)


def roof_table(res: dict) -> str:
    """training/benchmark_roof.py: the matmul roof and the attention kernel at each precision, the
    fraction of the roof each system reaches, and where a dense forward's time goes."""
    roof, attn = res["roof_gflops_per_s"], res["attention_gflops_per_s"]
    out = _header("| system | batch 1: GFLOP/s (fraction of the roof at its precision) | batch 16 |")
    for name, batches in res["systems"].items():
        cells = [f"{b['achieved_gflops_per_s']:.0f} ({_pct(b['fraction_of_roof'])})" if (b := batches.get(k)) else "–"
                 for k in ("1", "16")]
        out.append(f"| {name} | {' | '.join(cells)} |")
    if (layers := res.get("default_layers")):
        point, n_layers = res["default_layers_config"]["prune_layers"][0], res.get("n_layers", 6)
        spans = {"dense layers": f"layers 1–{point}", "pruned layers": f"layers {point + 1}–{n_layers}"}
        for name, batches in layers.items():
            cells = [f"{b['achieved_gflops_per_s']:.0f} ({_pct(b['fraction_of_roof'])})" if (b := batches.get(k)) else "–"
                     for k in ("1", "16")]
            out.append(f"| the default's {name} alone ({spans[name]}, {res['default_layers_config']['precision']}) "
                       f"| {' | '.join(cells)} |")
    out += ["", f"Roof (one {' × '.join(map(str, res['matmul_shape'][:2]))} by {res['matmul_shape'][1]} × "
            f"{res['matmul_shape'][2]} matmul, {res['threads']} threads{', ' + res['cpu'] if res.get('cpu') else ''}): fp32 {roof['fp32']:.0f}, bf16 "
            f"{roof['bf16']:.0f}" + (f", int8 {roof['int8']:.0f} (oneDNN's u8 × s8 matmul, multiply-adds counted as 2 operations)"
                                     if "int8" in roof else "") + " GFLOP/s. The engine's attention at the model's shape (batch, heads, tokens, head dim = "
            f"{tuple(res['attention_shape'])}): fp32 {attn['fp32']:.0f} (torch's fused kernel), bf16 "
            f"{attn['bf16']:.0f} GFLOP/s (packed, one sequence at a time)."]
    if (shares := res.get("dense_time_shares")):
        kinds = list(next(iter(shares.values())))
        out += ["", *_header("| share of a dense annotate call | " + " | ".join(kinds) + " |")]
        out += [f"| {p} | " + " | ".join(_pct(v[k]) for k in kinds) + " |" for p, v in shares.items()]
        out += ["", f"{res['dense_time_shares_docs']} test abstracts at batch 16, linking off; torch.profiler self "
                "time by op; other = the rest of the wall clock (Python, gathers, tokenization, decoding, the "
                "profiler's own overhead)."]
    if layers:
        out += ["", "The default's layers alone: the wall time inside each encoder layer call (its linear layers, "
                "attention, layer norms and glue) against the FLOPs it ran, over the same abstracts; each of "
                f"{res['layer_rounds']} passes per batch size right after its own roof measurement (the host's speed "
                "drifts), the median pass; the rows above divide by the whole annotate call's time instead. The roof "
                "of a stretch of layers weighs each part by the roof of the precision it runs at (in mixed: int8 "
                "Linear layers at the int8 roof, the rest at bf16's)."]
    out += ["", f"`{res['command']}` → `results/benchmark_roof.json`."]
    return "\n".join(out)


# The precision table's rows: (setting, evaluate JSON on test, benchmark JSON vs dense fp32, MEDLINE fidelity
# JSON and its controller). Missing files leave their cells empty.
PRECISION_ROWS = (
    ("dense fp32 (`--controller none --precision fp32`, the reference)", "evaluate_test.json", None, None),
    ("dense, precision auto", "evaluate_test_dense_auto.json", "benchmark_precision.json",
     ("fidelity_medline.json", "none")),
    ("the default (MLP after layer 3), fp32", "evaluate_test_pruned_mlp.json", "benchmark_pruning_mlp.json",
     ("fidelity_medline_fp32.json", "mlp")),
    ("the default (precision auto)", "evaluate_test_default.json", "benchmark_pruning_default.json",
     ("fidelity_medline.json", "mlp")),
    ("the default, precision bf16", "evaluate_test_mlp_bf16.json", "benchmark_pruning_mlp_bf16.json",
     ("fidelity_medline_bf16.json", "mlp")),
    ("dense, precision int8", "evaluate_test_int8.json", "benchmark_int8.json", ("fidelity_medline_int8.json", "none")),
    ("the default, precision int8", "evaluate_test_mlp_int8.json", "benchmark_pruning_mlp_int8.json",
     ("fidelity_medline_int8.json", "mlp")),
)


def _speed_cell(batch: dict) -> str:
    """A benchmark_pruning batch result as "median× (slowest–fastest round)": on a shared host the
    rounds spread widely, and a reader should see how far."""
    rounds = batch.get("speedup_per_round", [])
    spread = f" ({min(rounds):.2f}–{max(rounds):.2f})" if len(rounds) > 1 else ""
    return f"**{batch['speedup_median']:.2f}×**{spread}"


def precision_table() -> str | None:
    """Speed, F1 and fidelity of dense and the default (the MLP's point) at each precision."""
    out = _header("| setting | runs at | F1 test (drop vs dense fp32) | entity agreement with dense fp32: test "
                  "| held-out MEDLINE (Chemical / Disease) | speed vs dense fp32, batch 16 | batch 1 |")
    commands, hosts = [], []
    for label, ev_file, bench_file, fidelity in PRECISION_ROWS:
        ev = _load(ev_file)
        if ev is None:
            continue
        bench = _load(bench_file) if bench_file else None
        fid = _load(fidelity[0]) if fidelity else None
        f1 = ev["mention"]["micro"]["f1"]
        drop = f" ({ev['f1_drop_points']['micro']:.2f})" if "f1_drop_points" in ev else ""
        agree = f"{ev['agreement']['micro']['f1']:.4f}" if "agreement" in ev else ("1" if not drop else "–")
        medline = "1" if fidelity is None else "–"
        if fid is not None:
            row = next((r for r in fid["controllers"].get(fidelity[1], []) if not r["config"]["recovery"]), None)
            if row is not None:
                medline = f"{row['f1']['micro']:.4f} ({row['f1']['Chemical']:.4f} / {row['f1']['Disease']:.4f})"
        speeds = ["1.00×", "1.00×"] if bench_file is None else ["–", "–"]
        if bench is not None:
            speeds = [_speed_cell(bench["batch"][bs]) for bs in ("16", "1") if bs in bench["batch"]]
            commands.append(f"`{bench['command']}`")
            hosts.append(bench.get("cpu", "AMD EPYC with AVX-512 BF16"))
        runs_at = ev.get("precision", ev["config"].get("precision", "fp32"))
        out.append(f"| {label} | {runs_at} | {f1:.4f}{drop} | {agree} | {medline} | {' | '.join(speeds)} |")
        commands.append(f"`{ev['command']}` → `results/{ev_file}`")
    if len(out) == 2:
        return None
    out += ["", "BC5CDR test (500 abstracts), shipped model; agreement = exact-match F1 of the entities against the "
            "exact dense fp32 model's; MEDLINE = the held-out second half of the slice "
            "(`python -m training.fidelity_medline [--precision fp32|bf16|int8]`); speed = median of alternating rounds "
            "against dense fp32 in one process (in brackets: the slowest and the fastest round), 2 CPU threads "
            f"({', '.join(dict.fromkeys(hosts))}). Commands: "
            + "; ".join(dict.fromkeys(commands)) + "."]
    return "\n".join(out)


# Folders of results/ holding the same three benchmarks from an earlier host (kept as written there)
EARLIER_HOSTS = ("family26",)


def hosts_table() -> str | None:
    """The same benchmarks on each host they ran on (results/ and :data:`EARLIER_HOSTS`): how far
    the default's and the MLP's speed-up and the fraction of the roof depend on the CPU."""
    out = _header("| host | bf16 roof GFLOP/s | dense bf16 vs dense fp32, batch 16 / 1 | MLP at its point (bf16) vs dense fp32, "
                  "batch 16 / 1 | fraction of the roof, batch 16: dense bf16 / pruned |")
    for folder in ("", *EARLIER_HOSTS):
        files = [_load(f"{folder}/{name}" if folder else name)
                 for name in ("benchmark_precision.json", "benchmark_pruning_mlp_bf16.json", "benchmark_roof.json")]
        if None in files:
            continue
        default, mlp, roof = files
        speeds = [" / ".join(f"{b['batch'][bs]['speedup_median']:.2f}×" for bs in ("16", "1")) for b in (default, mlp)]
        fractions = [s["16"]["fraction_of_roof"] for s in list(roof["systems"].values())[1:]]  # after dense fp32
        pruned_at = list(roof["systems"])[-1].removeprefix("pruned ")  # "(mlp, mixed)": what the pruned row ran
        out.append(f"| {roof['cpu']} (`results/{folder + '/' if folder else ''}`) | {roof['roof_gflops_per_s']['bf16']:.0f} "
                   f"| {speeds[0]} | {speeds[1]} | {' / '.join(f'{x:.0%}' for x in fractions)} {pruned_at} |")
    if len(out) == 2:  # no host has all three files
        return None
    out += ["", "The same commands (the precision table's and the roof table's) on each host; a folder of "
            "`results/` holds what an earlier host wrote, as it wrote it. AMD EPYC family 26 (Zen 5) executes "
            "AVX-512 on full-width units where family 25 (Zen 4) splits each instruction in two halves, so its "
            "bf16 matmul roof and bf16 speed-ups are higher. The MLP's point is the one of each run's day (its "
            "command says which): after layers 1 and 2 before issue 16's default, after layer 3 with frozen context since."]
    return "\n".join(out)


# (label, benchmark_pruning file, evaluate file) of issue 16's GPU check: training/gpu_check.sh's results/gpu/
GPU_ROWS = (("dense fp32", None, "evaluate_dense_fp32"), ("dense bf16", "benchmark_default", "evaluate_default"),
            ("the default: MLP after layer 3 (bf16)", "benchmark_pruned_default", "evaluate_pruned_default"),
            ("faithful pruning (bf16)", "benchmark_faithful", "evaluate_faithful"),
            ("MLP λ=6 after layers 1 and 2 (bf16)", "benchmark_mlp", None))


def gpu_table() -> str | None:
    """Each GPU_ROWS setting on the GPU: test F1 (agreement with dense fp32) and tokens/s against dense fp32."""
    out, commands, gpu = _header("| setting | F1 test (agreement with dense fp32) | batch 1: tokens/s vs dense fp32's, "
                                 "speed-up | batch 64 |"), [], None
    for label, b, e in GPU_ROWS:  # b None: the reference row, dense fp32
        bench, ev = (_load(f"gpu/{name}.json") if name else None for name in (b, e))
        f1 = f"{ev['mention']['micro']['f1']:.4f} ({ev.get('agreement', {}).get('micro', {}).get('f1', 1):.4f})" if ev else "–"
        speeds = [f"{r['pruned']['tokens_per_s']:,.0f} vs {r['dense']['tokens_per_s']:,.0f}, {_speed_cell(r)}"
                  for r in bench["batch"].values()] if bench else ["1.00×" if b is None else "–"] * 2
        out.append(f"| {label} | {f1} | {' | '.join(speeds)} |")
        commands += [f"`{r['command']}`" for r in (ev, bench) if r]
        gpu = f"{bench['gpu']} (torch {bench['torch']})" if bench else gpu  # any benchmark file names the machine
    return None if gpu is None else "\n".join(out + [
        "", f"BC5CDR test (500 abstracts) on one {gpu}, linking off, 2 CPU threads; "
        "tokens/s = wordpieces entering layer 1 per second, end to end; speed-up = median of alternating rounds (in brackets: "
        "the slowest and the fastest round). `bash training/gpu_check.sh` ran, as: " + "; ".join(commands) + "."])


PEERS_CHART = "benchmark_peers.png"  # training/plot_results.py writes it from benchmark_peers.json


def peers_table(res: dict, chart: bool = False) -> str:
    """training/benchmark_peers.py: each system's F1, agreement with dense fp32 and speed at each batch size.

    ``chart``: show results/benchmark_peers.png (training/plot_results.py) above the table. The HF
    pipeline's note appears only for a results file that has its row (older ones do not).
    """
    batches = list(next(iter(res["systems"].values()))["batch"])
    medline = res.get("medline")  # older results files have no held-out MEDLINE column
    out = [f"![F1 vs speed of the peers](results/{PEERS_CHART})", ""] if chart else []
    out += _header("| system | F1 test (micro) | entity agreement with dense fp32 | "
                   + ("agreement on held-out MEDLINE | " if medline else "")
                   + " | ".join(f"batch {bs}: speed vs dense fp32 (abstracts/s)" for bs in batches) + " |")
    for name, e in res["systems"].items():
        speeds = " | ".join(f"**{e['batch'][bs]['speedup_vs_dense_fp32']:.2f}×** ({e['batch'][bs]['abstracts_per_s']:.1f})"
                            for bs in batches)
        held_out = f"{e['medline_agreement_with_dense_fp32']['micro']:.4f} | " if medline else ""
        runs_at = e.get("runs_at")  # the precision "auto" ran at, where the name does not say it
        label = f"{name} ({runs_at})" if runs_at and not name.endswith(runs_at) else name
        out.append(f"| {label} | {e['f1']['micro']:.4f} | {e['agreement_with_dense_fp32']:.4f} | {held_out}{speeds} |")
    systems = ("the bioprune and ONNX Runtime rows go through the engine's own tokenization, windows and "
               "decoding, only the forward differs")
    torch_users = "torch"
    hf = res.get("hf_pipeline")
    if hf is not None and hf["system"] in res["systems"]:
        own = "document-level passes: " + (", ".join(res.get("bioprune_postprocess", [])) or "none")
        decoding = res.get("bioprune_decoding")
        if decoding and decoding.get("viterbi"):
            own = f"Viterbi decoding with an O bias of {decoding['outside_log_bias']:g}; " + own
        systems += (f"; the {hf['system']} row is the same fp32 weights through transformers "
                    f"{res['transformers']}: `pipeline(\"token-classification\", aggregation_strategy="
                    f"\"{hf['aggregation_strategy']}\", stride={hf['stride']})`, its own tokenization, abstracts "
                    "over 512 tokens read whole in overlapping chunks, per-word argmax, none of the shipped "
                    f"model's own `postprocess.json` ({own})")
        torch_users = "torch (bioprune and the HF pipeline)"
    if any(name.startswith("spaCy") for name in res["systems"]):
        systems += "; the spaCy row is its own pipeline and tokenizer"
    threads = f"{res['threads']} threads for {torch_users} and ONNX Runtime ({res['onnxruntime']}) alike" + (
        f" on {res['cpu']}" if res.get("cpu") else "")
    held_out = (f"; agreement on held-out MEDLINE: the same measure on the {medline['n_abstracts']} abstracts of the "
                f"{medline['half']} half of `{medline['file']}`, real abstracts unlike BC5CDR that no setting was "
                "trained or chosen on") if medline else ""
    out += ["", f"F1 and agreement on the {res['n_abstracts_scored']} BC5CDR test abstracts; speed on "
            f"{res['n_abstracts_timed']} of them, median of alternating rounds in one process, {threads}{held_out}; "
            f"{systems}. Every bioprune and ORT row runs with MeSH linking off (no peer links), so its F1 is the "
            "tagger's before linking drops gene products and unsure unlinked entities and splits entities made of "
            "several names (`bioprune evaluate`, "
            f"linking on, scores the default higher: docs/evaluation.md). `{res['command']}` → `results/benchmark_peers.json`"
            + (f"; chart: `python -m training.plot_results` → `results/{PEERS_CHART}`." if chart else ".")]
    return "\n".join(out)


def fill(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


# Published document-level concept F1 on the BC5CDR test set (BioCreative V CDR), per type.
LINKING_REFERENCES = {"Disease": "DNorm 0.806", "Chemical": "tmChem 0.912"}


def linking_table(res: dict, cost: dict | None = None) -> str:
    """training/evaluate_linking.py on test: the CDR document-level ID measure end to end from the
    model's own mentions, and from the gold mentions, next to the systems users compare with; and
    what linking costs (training/benchmark_linking.py), when measured."""
    moved = res.get("document_from_predicted_mesh2024")
    out = _header("| type | document-level ID P | R | F1 (end to end) | F1 from gold mentions | normalization accuracy "
                  "| published |" + (" F1 end to end, IDs read in MeSH 2024 |" if moved else ""))
    for t, ref in LINKING_REFERENCES.items():
        e2e, gold = res["document_from_predicted"][t], res["document_from_gold"][t]
        out.append(f"| {t} | {e2e['precision']:.3f} | {e2e['recall']:.3f} | **{e2e['f1']:.3f}** | {gold['f1']:.3f} "
                   f"| {res['normalization_accuracy'][t]['accuracy']:.3f} | {ref} |"
                   + (f" {moved[t]['f1']:.3f} |" if moved else ""))
    out += ["", f"BC5CDR test (500 abstracts), shipped model and index. `{res['command']}` → "
            "`results/linking_test.json`."]
    if moved:
        out[-1] += (f" The last column reads both sides' IDs in MeSH 2024: {res['mesh2024_crosswalk_ids']} IDs that no "
                    "2024 descriptor holds but whose names are a 2024 descriptor's terms (supplementary records "
                    "promoted since BC5CDR's 2015 gold, e.g. linezolid C098010 → D000069349) count as that "
                    "descriptor. The published figures were measured in the gold's own MeSH year, so the strict "
                    "F1 is the one to compare.")
    if cost is not None:
        for bs, entry in cost["batch"].items():
            linker = cost["linker"]
            host = f" on {cost['cpu']}" if "cpu" in cost else ""
            out[-1] += (f" Cost at batch {bs} with the default setting{host}: **+{100 * (entry['slowdown_median'] - 1):.1f}%** "
                        f"annotation time ({entry['linking_ms_per_abstract']:.1f} ms per abstract, a first pass over "
                        f"the text), {linker['load_tables_s']:.1f} s to load the index and {linker['fit_tfidf_s']:.1f} s "
                        f"to fit its TF-IDF once per process, +{linker['rss_growth_mb']:.0f} MB resident memory: "
                        f"`{cost['command']}` → `results/benchmark_linking.json`.")
    return "\n".join(out)


def linking_sentence(res: dict, cost: dict | None = None) -> str:
    """The README's one paragraph on MeSH linking: :func:`linking_table`'s end-to-end F1 per type next
    to the published systems, and the cost at the measured batch size."""
    scores = ", ".join(f"{t} **{res['document_from_predicted'][t]['f1']:.3f}** ({ref})"
                       for t, ref in LINKING_REFERENCES.items())
    out = (f"**MeSH IDs** (on by default): on BC5CDR test, end to end from the default's own mentions, the "
           f"BioCreative V CDR document-level ID F1 is {scores}")
    if cost is not None:
        out += "".join(f"; linking adds {100 * (entry['slowdown_median'] - 1):.1f}% to annotation time at batch {bs}"
                       for bs, entry in cost["batch"].items())
    return (out + f": `{res['command']}` → `results/linking_test.json`; the table, the method and the cost: "
            "[docs/linking.md](docs/linking.md).")


def multicorpus_table(res: dict) -> str:
    """BC5CDR dev (train-only models) for the BC5CDR-only baseline, the multi-corpus stage 1 and each
    stage-2 candidate; then BioRED dev chemical precision and genes taken for chemicals, per model."""
    rows = _header("| model (train only) | data | epochs | dev micro F1 | dev Chemical F1 | dev Disease F1 |")
    b = res["baseline"]
    rows.append(f"| BC5CDR only (`results/dev_curve.json`) | BC5CDR train | {b['epochs']} | {b['micro']:.4f} | {b['Chemical']:.4f} "
                f"| {b['Disease']:.4f} |")
    for name, run in [("stage 1", res["stage1"]), *((f"stage 2 {k}", v) for k, v in res["candidates"].items())]:
        last = run["dev_curve"][-1]
        data = ", ".join(run["train"]) if len(run["train"]) < 4 else f"BC5CDR train + {len(run['train']) - 1} corpus files"
        stopped = "" if run["finished"] else f" (stopped after epoch {last['epoch']})"
        if run.get("prune_layers"):
            stopped += f", pruning-aware after layer {', '.join(map(str, run['prune_layers']))}"
        rows.append(f"| {name}, lr {run['learning_rate']:g} | {data} | {run['epochs']}{stopped} | {last['micro']:.4f} "
                    f"| {last['Chemical']:.4f} | {last['Disease']:.4f} |")
    if "postprocess" in res:
        pp = res["postprocess"]["micro_f1"]
        rows += ["", f"With the abbreviation pass (`postprocess.json`) the train-only candidate `{res['postprocess']['model']}` "
                 f"scores {pp['abbreviations']:.4f} on dev (none {pp['none']:.4f}; `training/choose_postprocess.py`, "
                 "kept in this results file)."]
    if res.get("corpus_scores"):
        rows += ["", *_header("| model | BioRED dev: micro F1 | Chemical P | Chemical R | predicted chemicals on a "
                              "gene/variant | gene-rich half: Chemical P | on a gene/variant |")]
        for name, c in res["corpus_scores"].items():
            a, g = c["all"], c["gene_rich"]
            rows.append(f"| {name} | {a['micro_f1']:.4f} | {a['chemical']['precision']:.4f} | {a['chemical']['recall']:.4f} "
                        f"| {100 * a['chemical_on_other_entity']['share']:.1f}% | {g['chemical']['precision']:.4f} "
                        f"| {100 * g['chemical_on_other_entity']['share']:.1f}% |")
    for key, title in (("dev_report", "BC5CDR dev, train-only candidates"),
                       ("test_report", "BC5CDR test (reported, not chosen on)")):
        if not res.get(key):
            continue
        rows += ["", *_header(f"| {title} | micro F1 | Chemical F1 | Disease F1 | F1 drop vs its dense (points) "
                              "| agreement with its dense fp32 |")]
        for name, t in res[key].items():
            drop = "" if t["f1_drop_points"] is None else f"{t['f1_drop_points']:.2f}"
            agree = "" if t["agreement"] is None else f"{t['agreement']:.4f}"
            rows.append(f"| {name} | {t['micro']:.4f} | {t['Chemical']:.4f} | {t['Disease']:.4f} | {drop} | {agree} |")
    for name, fidelity in res.get("fidelity_medline", {}).items():
        rows += ["", f"{name}: agreement with its dense fp32 on the held-out MEDLINE half: " + "; ".join(
            f"{f['controller']}{' + recovery' if f['recovery'] else ''} {f['agreement']:.4f}"
            + (f" ({100 * f['flops_saved']:.0f}% FLOPs saved)" if f.get("flops_saved") else "")
            for f in fidelity) + "."]
    rows += ["", f"`{res['command']}` → `results/multicorpus_dev.json`."]
    return "\n".join(rows)


def distill_table(res: dict) -> str:
    """BC5CDR dev scores of train-only models, their ensemble and a student distilled from it
    (training/ensemble.py's JSON), with each model's recipe."""
    rows = _header("| model (train only) | recipe | dev micro F1 | dev Chemical F1 | dev Disease F1 |")
    for name, scores in res["systems"].items():
        r = res["recipes"].get(name, {})
        if name == "ensemble":
            recipe = "mean of its members' per-token label probabilities (below)"
        else:
            data = ", ".join(r["train"]) if len(r["train"]) < 4 else f"BC5CDR train + {len(r['train']) - 1} corpus files"
            recipe = (f"from {r['base']}: {data}, {r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} at "
                      f"{r['learning_rate']:g}, seed {r['seed']}")
            if r["type_maps"]:
                recipe += "; " + ", ".join(f"{c}:{t}={target}" for c, t, target in r["type_maps"])
            if r["teachers"]:
                recipe += (f"; distilled from {' + '.join(r['teachers'])} (weight {r['distill_weight']:g}, "
                           f"T {r['distill_temperature']:g})" + (f", unlabelled {', '.join(r['unlabelled'])}"
                                                                  if r["unlabelled"] else ""))
        m = scores["mention"]
        rows.append(f"| `{name}` | {recipe} | {m['micro']['f1']:.4f} | {m['Chemical']['f1']:.4f} | {m['Disease']['f1']:.4f} |")
    members = ", ".join(f"`{m}`" for m in res["ensemble_of"])
    rows += ["", f"The ensemble averages {members}. `{res['command']}` → `results/distill_dev.json`."]
    return "\n".join(rows)


def decoding_table(res: dict) -> str:
    """BC5CDR dev micro F1 (Chemical, Disease) of one train-only model under each tag decoding, with
    no pass, the abbreviation pass, the best gazetteer setting and the choice without and with the
    brackets pass first (then each gazetteer setting, and the genes pass after the chosen one, under
    the chosen decoding, with the off-domain F1 and chemical precision): training/choose_postprocess.py's JSON."""
    variants = res["decodings"][res["best_decoding"]]
    off = res.get("off_domain")
    gazetteers = [v for v in variants if v.startswith("gazetteer") and "+ genes" not in v]
    bare = res["best"].removeprefix("brackets + ")  # the best setting without the brackets pass
    base = bare.split(" + genes")[0]
    best_gazetteer = base if base in gazetteers else max(gazetteers, key=lambda g: variants[g]["micro"]["f1"],
                                                         default=None)
    passes = list(dict.fromkeys(p for p in ("none", "abbreviations", best_gazetteer, bare, res["best"]) if p in variants))

    def cell(v: dict) -> str:
        return f"{v['micro']['f1']:.4f} ({v['Chemical']['f1']:.4f}, {v['Disease']['f1']:.4f})"

    def elsewhere(name: str) -> str:
        o = off["scores"][res["best_decoding"]][name] if off else None
        return (f" {o['micro']['f1']:.4f} | {o['Chemical']['precision']:.3f} | "
                f"{o['chemical_on_other_entity']['share']:.1%} |") if o else ""

    rows = _header("| decoding | " + " | ".join(f"passes: {p}" for p in passes) + " |")
    rows += [f"| {name} | " + " | ".join(cell(vs[p]) for p in passes) + " |" for name, vs in res["decodings"].items()]
    genes = [v for v in variants if v.startswith(base + " + genes")]
    genes += [b for v in (base, *genes) if (b := f"brackets + {v}") in variants]
    if gazetteers or genes:
        header = (f" {off['file']} micro F1 | its Chemical precision | its chemicals on a gene or variant |"
                  if off else "")
        rows += ["", *_header(f"| passes, {res['best_decoding']} | dev micro F1 (Chemical, Disease) |{header}")]
        rows += [f"| {g} | {cell(variants[g])} |{elsewhere(g)}" for g in ("abbreviations", *gazetteers, *genes)]
    chosen = (f"chosen by the mean of dev micro F1 and micro F1 on {off['n_documents']} {off['file']} documents "
              "(other guidelines, never trained on)" if off else "chosen by dev micro F1")
    rows += ["", f"Micro F1 (Chemical, Disease) on the {res['n_documents']} BC5CDR dev abstracts, model "
             f"`{res['args']['model']}` (train only), dense fp32; {chosen}: {res['best_decoding']}, {res['best']}. "
             f"`{res['command']}` → `results/decoding_dev.json`."]
    return "\n".join(rows + (unlinked_rows(res) if "unlinked" in res else []))


def unlinked_rows(res: dict) -> list[str]:
    """The chosen setting's entities linked with ``--linker-index``: scores as one type's least score
    of an unlinked entity kept varies, the other type's held at its chosen value."""
    u, off = res["unlinked"], res["unlinked"].get("off_domain")
    chosen = u["best"].split()
    rows = ["", *_header("| unlinked entities kept from score (Chemical, Disease) | dev micro F1 (Chemical, Disease) |"
                         + (" BioRED_Train micro F1 | its Chemical precision |" if off else ""))]
    for i in range(len(chosen)):
        for key in (k for k in u["dev"] if all(a == b for j, (a, b) in enumerate(zip(k.split(), chosen)) if j != i)
                    and (i == 0 or k != u["best"])):
            d = u["dev"][key]
            name = f"**{key}** (chosen)" if key == u["best"] else key
            rows.append(f"| {name} | {d['micro']['f1']:.4f} ({d['Chemical']['f1']:.4f}, {d['Disease']['f1']:.4f}) |"
                        + (f" {off[key]['micro']['f1']:.4f} | {off[key]['Chemical']['precision']:.3f} |" if off else ""))
    return rows + ["", "The chosen setting's entities linked with the train-only index (`--linker-index`, gene products "
                   "dropped): an entity the linker leaves without an ID is kept only if its score (the model's "
                   "confidence) reaches its type's value; 0 keeps all, 1.01 none; chosen by the same rule."]


def corpus_table(res: dict) -> str:
    """training/evaluate_corpus.py: the shipped model on BioRED dev as users get it and with --no-link (nothing dropped by linking)."""
    rows = _header("| shipped model, BioRED dev | micro F1 | Chemical P | Chemical R | predicted chemicals on a "
                   "gene/variant | gene-rich half: Chemical P | on a gene/variant |")
    runs = [(name, r, file) for name, file in (("default (linking on)", "corpus_biored_dev_shipped.json"),
            ("`--no-link`: gene products and unlinked entities kept", "corpus_biored_dev_no_link.json")) if (r := _load(file)) is not None]
    for name, a, g in ((name, r["all"], r["gene_rich"]) for name, r, _ in runs):
        rows.append(f"| {name} | {a['micro']['f1']:.4f} | {a['Chemical']['precision']:.4f} | {a['Chemical']['recall']:.4f} | "
                    f"{100 * a['chemical_on_other_entity']['share']:.1f}% | {g['Chemical']['precision']:.4f} | "
                    f"{100 * g['chemical_on_other_entity']['share']:.1f}% |")
    return "\n".join(rows + ["", f"{res['n_documents']} documents (none in BC5CDR train or dev). "
                              + "; ".join(f"`{r['command']}` → `results/{file}`" for _, r, file in runs) + "."])


def dev_default_sentence(res: dict) -> str:
    """What precision does on dev, where the shipped model was trained: a check, not a measure."""
    return (f"the default scores {res['mention']['micro']['f1']:.4f} there, "
            f"{res['f1_drop_points']['micro']:.2f} points from dense fp32\n(`{res['command']}` → "
            f"`results/evaluate_dev_default.json`).")


def allocator_sentence(res: dict) -> str:
    """training/benchmark_allocator.py: page faults and time of dense at the default precision with glibc's malloc thresholds
    left alone and fixed (bioprune.allocator), one abstract at a time and at batch 16."""
    parts = []
    for batch, what in (("1", "One abstract at a time"), ("16", "At batch 16")):
        b = res["batch"][batch]
        old, new = b["glibc default"], b["fixed"]
        faster = sum(o > n for o, n in zip(old["seconds_per_round"], new["seconds_per_round"]))
        parts.append(f"{what}: {old['page_faults_per_abstract']:,.0f} → {new['page_faults_per_abstract']:,.0f} "
                     f"page faults and {old['ms_per_abstract']:.1f} → {new['ms_per_abstract']:.1f} ms per abstract "
                     f"({b['speedup_median']:.2f}×, faster in {faster} of {len(old['seconds_per_round'])} rounds).")
    return (" ".join(parts) + f" {res['n_abstracts']} test abstracts, dense at the default precision, linking off, each mode in "
            f"processes of its own, alternating, on {res['cpu']}: `{res['command']}` → `results/benchmark_allocator.json`.")


def batch_independence_table(res: dict) -> str:
    """training/batch_independence.py: per precision, how many abstracts' probabilities differ
    between the two batch sizes, by how much at most, and how far their entities agree."""
    a, b = res["batch_sizes"]
    rows = [f"| precision (runs at) | abstracts whose probabilities differ, batch {a} vs {b} | largest difference "
            f"| entities (batch {a} / {b}) | entity agreement |", "|---|---|---|---|---|"]
    for precision, r in res["rows"].items():
        rows.append(f"| {precision} ({r['runs_at']}) | {r['abstracts_with_different_probabilities']} of "
                    f"{res['n_documents']} | {r['largest_probability_difference']:.1e} | "
                    f"{r['entities'][0]} / {r['entities'][1]} | {r['entity_agreement_f1']:.4f} |")
    return "\n".join(rows) + (f"\n\n{res['n_documents']} abstracts of the MEDLINE slice's {res['half']} half, "
                              f"{res['config']}.")


def kernels_table(res: dict) -> str:
    """training/benchmark_kernels.py: the dense model at bf16 and int8 with bioprune.cpu_kernels and
    with the torch ops they replace, end to end and kernel by kernel."""
    lines = _header("| precision | batch 1: ms per abstract, torch ops → kernels | batch 16 | abstracts with "
                    "other entities | entity agreement with dense fp32, torch ops → kernels |")
    for precision, entry in res["precisions"].items():
        cells = []
        for batch in ("1", "16"):
            b = entry["batch"][batch]
            faster = sum(o > n for o, n in zip(b["torch ops"]["seconds_per_round"], b["kernels"]["seconds_per_round"]))
            cells.append(f"{b['torch ops']['ms_per_abstract']:.1f} → {b['kernels']['ms_per_abstract']:.1f} "
                         f"(**{b['speedup_median']:.2f}×**, faster in {faster} of {len(b['kernels']['seconds_per_round'])} rounds)")
        agree = entry["agreement_with_dense_fp32"]
        name = f"{precision} (the default here)" if precision == res["default_runs_at"] else precision
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {entry['abstracts_with_other_entities']} of "
                     f"{res['n_abstracts']} | {agree['torch ops']:.4f} → {agree['kernels']:.4f} |")
    kernels = "; ".join(f"{name}: {k['torch_ops_ms']:.2f} → {k['kernel_ms']:.2f} ms ({k['speedup']:.1f}×)"
                        for name, k in res["kernels"].items())
    return ("\n".join(lines) + f"\n\n{res['n_abstracts']} BC5CDR test abstracts, the dense model, linking off, median "
            f"of alternating rounds in one process, 2 threads, on {res['cpu']}. Each kernel alone (fastest call; "
            f"attention: sequences × tokens, 12 heads of 32): {kernels}. `{res['command']}` → "
            f"`results/benchmark_kernels.json`.")


def layer3_speed_sentence(auto: dict, int8: dict | None) -> str | None:
    """training/benchmark_pruning.py on the layer-3 trained copy (docs/pruning.md, "Fidelity
    distillation"): its speed against dense fp32 in bf16 and stacked on int8."""
    if int8 is None:
        return None
    speed = {name: [res["batch"][b]["speedup_median"] for b in ("1", "16")] for name, res in (("auto", auto), ("int8", int8))}
    return (f"- Speed against dense fp32, {auto['n_abstracts']} test abstracts, linking off: {speed['auto'][0]:.2f}× at "
            f"batch 1 and {speed['auto'][1]:.2f}× at batch 16 in bf16, {speed['int8'][0]:.2f}× and "
            f"{speed['int8'][1]:.2f}× stacked on int8: `{auto['command']}` → "
            f"`results/benchmark_pruned_layers_l3_auto.json`; `{int8['command']}` → "
            f"`results/benchmark_pruned_layers_l3_int8.json`. These runs are not the peers table's: read them\n"
            f"  beside its \"bioprune faithful\" row with the ~20% run-to-run caution.")


def layer3_int8_sentence(int8_first: dict, int8_second: dict | None, bf16_first: dict | None,
                         bf16_second: dict | None) -> str | None:
    """training/sweep_pruning.py on the layer-3 trained copy at precision int8 (docs/pruning.md,
    "Fidelity distillation"): its agreement with dense fp32 on each MEDLINE half, beside the same
    λs in bf16 (the trained rows of the pruned-layers table)."""
    if int8_second is None or bf16_first is None or bf16_second is None:
        return None

    def by_lambda(res: dict) -> dict[float, float]:
        return {r["config"]["aggressiveness"]: r["f1"]["micro"] for r in res["rows"]}

    def span(values: list[float]) -> str:
        low, high = f"{min(values):.3f}", f"{max(values):.3f}"
        return low if low == high else f"{low}–{high}"

    lambdas = sorted(by_lambda(int8_first))
    halves = []
    for name, int8, bf16 in (("the first half", int8_first, bf16_first), ("the held-out one", int8_second, bf16_second)):
        low, high = by_lambda(int8), by_lambda(bf16)
        halves.append(f"{span([low[lam] for lam in lambdas])} on {name} "
                      f"(bf16: {span([high[lam] for lam in lambdas if lam in high])})")
    return (f"- Stacked on int8 (`--precision int8`), the agreement at λ {', '.join(f'{lam:g}' for lam in lambdas)} is "
            f"{halves[0]} and {halves[1]}: `{int8_first['command']}` → "
            f"`results/pruned_layers_l3_trained_int8_first.json`; the same with `--half second` → "
            f"`results/pruned_layers_l3_trained_int8_second.json`.")


# (block, results file, render) of each table drawn from one results file (render may return None: block left)
BLOCKS = (("dev_default", "evaluate_dev_default.json", dev_default_sentence),
          ("evaluation", "evaluate_test.json", evaluation_table), ("dev_curve", "dev_curve.json", dev_curve_table),
          ("benchmark_spacy", "benchmark_spacy.json", spacy_overhead_table),
          ("multicorpus", "multicorpus_dev.json", multicorpus_table), ("corpus", "corpus_biored_dev_shipped.json", corpus_table),
          ("decoding_dev", "decoding_dev.json", decoding_table), ("distill", "distill_dev.json", distill_table),
          ("prune_aware_dev", "prune_aware_dev.json", render_markdown),
          ("allocator", "benchmark_allocator.json", allocator_sentence),
          ("kernels", "benchmark_kernels.json", kernels_table),
          ("batch_independence", "batch_independence.json", batch_independence_table),
          ("layer3_int8", "pruned_layers_l3_trained_int8_first.json",
           lambda res: layer3_int8_sentence(res, _load("pruned_layers_l3_trained_int8_second.json"),
                                            _load("pruned_layers_l3_trained_first.json"),
                                            _load("pruned_layers_l3_trained_second.json"))),
          ("layer3_speed", "benchmark_pruned_layers_l3_auto.json",
           lambda res: layer3_speed_sentence(res, _load("benchmark_pruned_layers_l3_int8.json"))),
          *((block, PRUNING_FILES[c][0], lambda ev, c=c: pruning_table(ev, _load(PRUNING_FILES[c][1]), c))
            for c, block in (("rule", "pruning"), ("mlp", "pruning_mlp"))),
          ("eval_suite", "eval_suite.json", eval_suite_table), ("ablations", "eval_suite.json", ablations_table),
          ("controllers_test", "eval_suite.json", controllers_table),
          ("controllers_dev", "controllers_dev.json", controllers_table),
          ("error_analysis", "error_analysis.json", error_analysis_table),
          ("fairness", "fairness.json", fairness_table), ("fidelity", "fidelity_medline.json", fidelity_table),
          ("roof", "benchmark_roof.json", lambda res: roof_table(res) if "attention_gflops_per_s" in res else None),
          ("fidelity_tokens", "fidelity_tokens.json", fidelity_tokens_table),
          ("peers", "benchmark_peers.json", lambda res: peers_table(res, chart=(RESULTS / PEERS_CHART).is_file())),
          ("linking", "linking_test.json", lambda res: linking_table(res, _load("benchmark_linking.json"))),
          ("linking_readme", "linking_test.json", lambda res: linking_sentence(res, _load("benchmark_linking.json"))))


def main() -> None:
    blocks = {name: body for name, file, render in BLOCKS
              if (res := _load(file)) is not None and (body := render(res)) is not None}
    sweeps = [res for res in (_load("recovery_dev.json"), _load("recovery_dev_rule.json")) if res is not None]
    if sweeps:
        blocks["recovery_dev"] = recovery_dev_table(sweeps, _load("controllers_dev.json"))
    for name, table in (("precision", precision_table()), ("hosts", hosts_table()), ("gpu", gpu_table())):
        if table is not None:
            blocks[name] = table
    variants = [(name, res, file) for name, file in FRONTIER_VARIANTS if (res := _load(file)) is not None]
    if (shipped := _load("fidelity_frontier_shipped.json")) is not None and variants:
        blocks["fidelity_frontier"] = frontier_table(shipped, variants)
    points = [(tuple(runs), names) for names in PRUNED_LAYERS_FILES.values()
              if all(runs := [_load(f) for f in names])]
    if points:
        blocks["pruned_layers"] = pruned_layers_table(points)
    first, second = _load("pruned_layers_l3_trained_first.json"), _load("pruned_layers_l3_trained_second.json")
    if first is not None and second is not None:
        runs = {f: ev for f in ("evaluate_dev_default.json", "evaluate_test_default.json") if (ev := _load(f))}
        blocks["default"] = default_block(first, second, runs)
    first, second = _load("fidelity_frozen_first.json"), _load("fidelity_frozen_second.json")
    if first is not None and second is not None:
        runs = {f: ev for f in ("evaluate_test_faithful.json", "evaluate_dev_faithful.json") if (ev := _load(f))}
        blocks["faithful"] = faithful_table(first, second, runs, _load("fidelity_frozen_int8_first.json"))
    placed = set()
    for path in doc_files():
        text = path.read_text()
        placed.update(name for name in blocks if f"<!-- results:{name} -->" in text)
        for name, body in blocks.items():
            text = fill(text, name, body)
        path.write_text(text)
    for name in sorted(set(blocks) - placed):
        print(f"render_readme: no <!-- results:{name} --> block in README.md, docs/*.md or the model card",
              file=sys.stderr)


def doc_files() -> list[Path]:
    """The Markdown files whose results blocks this script fills: README.md, docs/*.md, the model card."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), DEFAULT_MODEL_DIR / "README.md"]
    return [path for path in paths if path.is_file()]


if __name__ == "__main__":
    main()
