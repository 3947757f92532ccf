"""The evaluation suite's plan (rows, timing selection), its JSON output, and the shared timing loop."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from typing import Literal  # module level: get_type_hints resolves a test's dataclass fields here

import pytest

from bioprune.config import DENSE, OPERATING_POINTS, PruningConfig
from training.analysis.timing import TimingPlan, cpu_model, time_systems
from training.analysis.common import (add_dataclass_arguments, config_dict, dataclass_from_args, json_safe,
                                      write_json_atomic)
from training.analysis.suite import (ablation_rows, pareto_rows, recovery_variant, suite_rows, timed_groups)
from training.plot_results import ablation_series, controller_curves, dense_point, pareto_curves
from training.render_readme import ablations_table, controllers_table, eval_suite_table, recovery_dev_table


def test_pareto_rows_dense_first_mlp_only_when_available():
    rows = pareto_rows([0.5, 2.0], with_mlp=False)
    assert [r.name for r in rows] == ["dense", "rule λ=0.5", "rule λ=2"]
    assert rows[0].config == DENSE and rows[1].config.aggressiveness == 0.5
    with_mlp = pareto_rows([1.0], with_mlp=True)
    assert [(r.family, r.config.controller, r.config.recovery) for r in with_mlp[2:]] == \
        [("mlp", "mlp", False), ("mlp+recovery", "mlp", True)]


def test_rows_vary_one_field_from_the_defaults():
    d = PruningConfig()
    for row in ablation_rows([0.1], [(2, 4)]):
        changed = {k for k, v in vars(row.config).items() if getattr(d, k) != v}
        assert changed <= {"min_keep_ratio", "prune_layers", "recovery", "spike_entropy_nats", "loss_entity_prob",
                           "loss_next_to_entity", "frozen_context"}
    mkr = ablation_rows([0.1], [])[0]
    assert mkr.config == d.with_(min_keep_ratio=0.1) and mkr.x == 0.1


def test_default_rule_row_is_marked_and_appears_in_several_ablations():
    d = PruningConfig()
    rows = suite_rows(["pareto", "ablations"], lambdas=[1.0, d.aggressiveness], with_mlp=False)
    defaults = [r.name for r in rows if r.is_default]
    assert defaults == [f"rule λ={d.aggressiveness:g}", f"min_keep_ratio={d.min_keep_ratio:g}",
                        "prune_layers=(2,)", f"recovery {'on' if d.recovery else 'off'}", "frozen_context off"]


def test_recovery_variants_isolate_each_trigger():
    base = PruningConfig()
    assert recovery_variant("off", base).recovery is False
    ent = recovery_variant("entity_loss only", base)
    assert ent.recovery and ent.spike_entropy_nats == math.inf and ent.loss_entity_prob == base.loss_entity_prob
    spike = recovery_variant("entropy_spike only", base.with_(loss_next_to_entity=True))
    assert spike.loss_entity_prob == math.inf and spike.loss_next_to_entity is False
    assert spike.spike_entropy_nats == base.spike_entropy_nats
    with pytest.raises(ValueError):
        recovery_variant("both off", base)


def test_timed_groups_flag_semantics():
    assert timed_groups(None, ["pareto", "ablations"]) == set()
    assert timed_groups([], ["pareto"]) == {"pareto"}
    assert timed_groups(["ablations"], ["pareto", "ablations"]) == {"ablations"}
    assert timed_groups(["ablations"], ["pareto"]) == set()  # not selected, not run, not timed
    with pytest.raises(ValueError):
        suite_rows(["pareto", "speed"])


def test_json_is_strict_and_written_atomically(tmp_path):
    config = recovery_variant("entity_loss only")
    assert config_dict(config)["spike_entropy_nats"] == "inf"
    assert json_safe({"a": (1.0, float("nan"))}) == {"a": [1.0, "nan"]}
    path = tmp_path / "out" / "r.json"
    write_json_atomic(path, {"config": config_dict(config), "x": float("-inf")})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))["x"] == "-inf"
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left behind
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # readable as any file, not owner-only


def test_time_systems_alternates_after_warm_up_and_takes_median_ratios():
    calls = []
    now = [0.0]
    cost = {"dense": 2.0, "pruned": 1.0}  # seconds per text

    def system(name):
        def annotate(texts, batch_size):
            calls.append((name, len(texts), batch_size))
            now[0] += cost[name] * len(texts)
        return annotate

    out = time_systems({"dense": system("dense"), "pruned": system("pruned")}, ["t"] * 4,
                       TimingPlan(rounds=2, warmup_docs=1, batch_sizes=(1, 16)), clock=lambda: now[0])
    assert calls[:6] == [("dense", 1, 1), ("pruned", 1, 1), ("dense", 4, 1), ("pruned", 4, 1), ("dense", 4, 1),
                         ("pruned", 4, 1)]
    assert list(out) == ["1", "16"]
    assert out["16"]["speedup_median"] == pytest.approx(2.0)
    assert out["1"]["dense"]["ms_per_abstract"] == pytest.approx(2000.0)
    assert out["1"]["pruned"]["abstracts_per_s"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TimingPlan(rounds=0)


def _row(group, family, name, x, f1, flops, timing_ms=None, default=False, config=None):
    timing = None if timing_ms is None else {"16": {"pruned": {"ms_per_abstract": timing_ms}, "speedup_median": 1.5,
                                                    "dense": {"ms_per_abstract": 1.5 * timing_ms}}}
    return {"group": group, "family": family, "name": name, "x": x, "is_default": default, "config": config or {},
            "f1": {"Chemical": f1, "Disease": f1, "micro": f1}, "f1_drop_points": {"micro": 100 * (0.85 - f1)},
            "flops_saved_ratio": flops, "tokens_pruned_ratio": 2 * flops, "recovery_rate_documents": 0.1,
            "recovery_events_by_trigger": {"entropy_spike": 3}, "timing": timing}


SUITE = {"n_documents": 500, "timing_docs": 100, "threads": 2, "command": "python -m training.eval_suite",
         "gold": "data/bc5cdr/CDR_TestSet.PubTator.txt", "model": "runs/some-model", "output": "results/eval_suite.json",
         "timed_groups": ["pareto"], "timing_plan": {"rounds": 3}, "mlp_available": False,
         "dense": {"mention": {"micro": {"f1": 0.85}}}, "dense_timing": {"16": {"ms_per_abstract": 60.0}},
         "rows": [_row("pareto", "dense", "dense", None, 0.85, 0.0),
                  _row("pareto", "rule", "rule λ=2", 2.0, 0.83, 0.4, timing_ms=40.0),
                  _row("pareto", "rule", "rule λ=1", 1.0, 0.84, 0.3, default=True),
                  _row("ablations", "min_keep_ratio", "min_keep_ratio=0.3", 0.3, 0.84, 0.3, default=True),
                  _row("ablations", "recovery", "recovery off", "off", 0.839, 0.35)]}


def test_plot_data_curves_sorted_by_lambda_with_untimed_points_none():
    curves = pareto_curves(SUITE)
    assert list(curves) == ["rule"]  # dense is a point, not a curve
    assert [p["lambda"] for p in curves["rule"]] == [1.0, 2.0]
    assert [p["ms"] for p in curves["rule"]] == [None, 40.0]
    assert dense_point(SUITE) == {"f1": 0.85, "ms": 60.0}
    series = ablation_series(SUITE, "recovery")
    assert [s["label"] for s in series] == ["off"] and series[0]["f1_drop"] == pytest.approx(1.1)


def test_readme_tables_mark_the_default_and_say_where_mlp_rows_are():
    table = eval_suite_table(SUITE)
    assert "| **rule λ=1** (default) |" in table and "| 40.0 (1.50×) |" in table
    assert "controller.safetensors" in table and "`python -m training.eval_suite`" in table
    assert "| min_keep_ratio | **0.3** (default) |" in ablations_table(SUITE)
    assert ablations_table({**SUITE, "rows": SUITE["rows"][:3]}) is None  # no ablations run: block left alone


def _controllers_suite(mlp_f1s):
    rows = []
    for lam, rule_f1, mlp_f1, flops in zip((1.0, 2.0, 4.0), (0.84, 0.83, 0.82), mlp_f1s, (0.30, 0.35, 0.40)):
        rows.append(_row("controllers", "rule (2,)", f"rule (2,) λ={lam:g}", lam, rule_f1, flops,
                         config={"controller": "rule", "aggressiveness": lam, "prune_layers": [2]}))
        # marked the default when it ran, but the MLP's operating point has moved since: not bold
        rows.append(_row("controllers", "mlp (2,)", f"mlp (2,) λ={lam:g}", lam, mlp_f1, flops + 0.01, default=lam == 4.0,
                         config={"controller": "mlp", "aggressiveness": lam, "prune_layers": [2]}))
    return {**SUITE, "gold": "x/CDR_DevelopmentSet.PubTator.txt", "output": "results/controllers_dev.json",
            "rows": rows}


def test_controller_comparison_says_whether_the_mlp_dominates():
    better = _controllers_suite((0.845, 0.835, 0.825))
    curves = controller_curves(better)
    assert list(curves) == ["(2,)"] and set(curves["(2,)"]) == {"rule", "mlp"}
    assert [p["lambda"] for p in curves["(2,)"]["mlp"]] == [1.0, 2.0, 4.0]
    table = controllers_table(better)
    assert "the MLP dominates" in table and "| (2,) | rule | 1.00 @ 30.0% | **2.00 @ 35.0%** | 3.00 @ 40.0% |" in table
    assert "| (2,) | mlp | 0.50 @ 31.0% | 1.50 @ 36.0% | 2.50 @ 41.0% |" in table  # today's point is elsewhere
    point = OPERATING_POINTS["mlp"]
    assert f"(the MLP's, after layer {point.prune_layers[0]} at λ={point.aggressiveness:g}" in table
    assert [p["default"] for p in curves["(2,)"]["mlp"]] == [False] * 3
    assert "BC5CDR dev set" in table and "`results/controllers_dev.json`" in table
    worse = controllers_table(_controllers_suite((0.845, 0.80, 0.81)))
    assert "no dominance" in worse and "the MLP dominates" not in worse
    assert controllers_table(SUITE) is None  # no controllers group: its block is left alone


def test_recovery_table_compares_with_a_lower_lambda_at_the_same_flops():
    def row(recovery, min_tokens, f1, flops, docs):
        config = config_dict(PruningConfig(controller="mlp", prune_layers=(1, 2), frozen_context=False, recovery=recovery,
                                           spike_min_tokens=min_tokens))
        return {"config": config, "f1": {"micro": f1}, "f1_drop_points": {"micro": 100 * (0.82 - f1)},
                "flops_saved_ratio": flops, "recovery_rate_documents": docs,
                "recovery_events_by_trigger": {"entropy_spike": 3} if recovery else {}}

    res = {"n_documents": 500, "model": "runs/dev", "command": "python -m training.sweep_pruning", "dense_f1": {"micro": 0.82},
           "rows": [row(False, 32, 0.805, 0.45, 0.0), row(True, 32, 0.81, 0.38, 0.07), row(True, 8, 0.82, 0.05, 0.7)]}
    curve = {"rows": [{"family": "mlp (1, 2)", "flops_saved_ratio": x, "f1": {"micro": f1}}
                      for x, f1 in ((0.34, 0.818), (0.40, 0.812))] +
                     [{"family": "mlp (2,)", "flops_saved_ratio": 0.38, "f1": {"micro": 0.5}}]}  # other layers: ignored
    table = recovery_dev_table([res], curve)
    assert "| mlp λ=6 (1, 2) | off | – | 0.8050 | 1.50 | 45.0% | 0.0% (none) | – |" in table
    # the λ curve at 38% FLOPs: 0.818 + (0.812 - 0.818) * 4/6 = 0.814 -> drop 0.60
    assert "| mlp λ=6 (1, 2) | on | 32 | 0.8100 | 1.00 | 38.0% | 7.0% (entropy_spike: 3) | 0.60 |" in table
    assert "| mlp λ=6 (1, 2) | on | 8 | 0.8200 | 0.00 | 5.0% | 70.0% (entropy_spike: 3) | – |" in table  # outside the curve
    assert table.index("| off |") < table.index("| on | 8 |") < table.index("| on | 32 |")
    assert "`results/recovery_dev.json`" in table and "0.3 nats" in table


def test_cpu_model_names_the_family_that_sets_the_speed():
    info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n" \
           "processor\t: 1\ncpu family\t: 26\n"
    assert cpu_model(info) == "AMD EPYC (family 26, model 2)"
    assert cpu_model("processor\t: 0\n") == "unknown"


def test_script_options_come_from_the_config_dataclass():
    """training/analysis/common.add_dataclass_arguments: every field is an option with its default and
    type (a new field shows up with no other change), bools are --x/--no-x, tuples take several values."""

    @dataclass(frozen=True)
    class Args:
        train: tuple[str, ...]
        layers: tuple[int, ...] = (1, 2)
        rate: float = 1e-4
        dev: str | None = None
        fast: bool = True
        pairs: tuple[tuple[str, float], ...] = field(default=(), metadata={"metavar": "NAME=W", "help": "pairs"})

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Args)
    parsed = dataclass_from_args(Args, vars(parser.parse_args(["--train", "a", "b", "--layers", "3", "--rate", "2",
                                                               "--no-fast", "--pairs", "x=1"])))
    assert parsed == Args(train=("a", "b"), layers=(3,), rate=2.0, dev=None, fast=False, pairs=("x=1",))
    assert dataclass_from_args(Args, vars(parser.parse_args(["--train", "a"]))) == Args(train=("a",))
    # given twice, a tuple's values add up (sweep_pruning's --set a=1 --set b=2 dropped a=1), and a
    # given value replaces a default rather than extending it
    twice = dataclass_from_args(Args, vars(parser.parse_args(["--train", "a", "--train", "b", "--layers", "3",
                                                              "--pairs", "x=1", "--pairs", "y=2"])))
    assert (twice.train, twice.layers, twice.pairs) == (("a", "b"), (3,), ("x=1", "y=2"))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --train has no default: required


def test_script_options_take_choices_repeats_pairs_and_their_help_from_comments(capsys):
    """A Literal field is a choice, ``tuple[tuple[int, ...], ...]`` a repeated option, ``tuple[str, str]``
    exactly two values, and a field's trailing comment is its --help text."""

    @dataclass(frozen=True)
    class Args:
        half: Literal["first", "second"] = "first"  # which half of the slice
        layer_sets: tuple[tuple[int, ...], ...] = ((4,),)  # after which layers to prune (repeatable)
        compare: tuple[str, str] | None = None  # two fingerprint files

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Args)
    parsed = dataclass_from_args(Args, vars(parser.parse_args(
        ["--half", "second", "--layer-sets", "2", "4", "--layer-sets", "3", "--compare", "a", "b"])))
    assert parsed == Args(half="second", layer_sets=((2, 4), (3,)), compare=("a", "b"))
    assert dataclass_from_args(Args, vars(parser.parse_args([]))) == Args()
    for bad in (["--half", "third"], ["--compare", "a"], ["--layer-sets", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    parser.print_help()
    assert "which half of the slice" in capsys.readouterr().out
