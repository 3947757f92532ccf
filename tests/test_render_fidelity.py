"""The README's fidelity tables (training/render_readme.py) from results files: rows matched by
pruning layers and λ across models, every command named."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import bioprune.forward as forward
from bioprune.config import DEFAULT, FAITHFUL
from bioprune.engine import PruningEngine
from training.benchmark_roof import layer_flops_by_precision, layer_flops_per_s, op_kind, time_shares, timing_layers
from training.render_readme import (allocator_sentence, kernels_table, layer3_int8_sentence, layer3_speed_sentence, PRUNED_LAYERS_FILES, _speed_cell, faithful_choice, faithful_table,
                                    fidelity_tokens_table, frontier_table, pruned_layers_table, roof_table)


def _sweep(command: str, rows: list[tuple[tuple[int, ...], float, float, float]]) -> dict:
    return {"command": command, "n_documents": 3, "rows": [
        {"config": {"prune_layers": list(layers), "aggressiveness": lam, "precision": "bf16", "frozen_context": True},
         "f1": {"micro": f1, "Chemical": f1, "Disease": f1}, "flops_saved_ratio": saved}
        for layers, lam, f1, saved in rows]}


def test_frontier_lines_up_each_variant_by_layers_and_lambda_and_skips_rows_one_lacks():
    shipped = _sweep("cmd-shipped", [((1, 2), 1.0, 0.9, 0.4), ((3,), 1.0, 0.95, 0.3)])
    soft = _sweep("cmd-soft", [((3,), 1.0, 0.96, 0.31), ((1, 2), 1.0, 0.91, 0.41)])
    hard = _sweep("cmd-hard", [((1, 2), 1.0, 0.93, 0.42)])  # no (3,) row
    table = frontier_table(shipped, [("distilled", soft, "a.json"), ("distilled on labels", hard, "b.json")])
    lines = table.splitlines()
    assert "distilled on labels: agreement" in lines[0]
    rows = [line for line in lines if line.startswith("| (")]
    assert rows == ["| (1, 2) | 1 | 0.9000 (0.900, 0.900) | 40.0% | 0.9100 (0.910, 0.910) | 41.0% "
                    "| 0.9300 (0.930, 0.930) | 42.0% |"]
    assert all(c in table for c in ("`cmd-shipped` → `results/fidelity_frontier_shipped.json`",
                                     "`cmd-soft` → `results/a.json`", "`cmd-hard` → `results/b.json`"))


def test_pruned_layers_table_pairs_own_and_trained_layers_on_both_halves_per_point():
    own1 = _sweep("c-own1", [((2,), 1.0, 0.93, 0.3), ((2,), 6.0, 0.92, 0.37)])
    trained1 = _sweep("c-tr1", [((2,), 6.0, 0.955, 0.37), ((2,), 1.0, 0.963, 0.3)])
    own2 = _sweep("c-own2", [((2,), 1.0, 0.95, 0.31)])  # no λ 6 row: that λ is left out
    trained2 = _sweep("c-tr2", [((2,), 1.0, 0.967, 0.31), ((2,), 6.0, 0.965, 0.38)])
    later = tuple(_sweep(f"c3-{i}", [((3,), 0.5, 0.97 + i / 1000, 0.28)]) for i in range(4))
    table = pruned_layers_table([((own1, trained1, own2, trained2), PRUNED_LAYERS_FILES[2]),
                                 (later, PRUNED_LAYERS_FILES[3])])
    rows = [line for line in table.splitlines() if line.startswith("| (")]
    assert rows == ["| (2,) | 1 | 0.9300 | **0.9630** | 30.0% | 0.9500 | **0.9670** (0.967, 0.967) | 31.0% |",
                    "| (3,) | 0.5 | 0.9700 | **0.9710** | 28.0% | 0.9720 | **0.9730** (0.973, 0.973) | 28.0% |"]
    assert "frozen context" in table
    commands = ("c-own1", "c-tr1", "c-own2", "c-tr2") + tuple(f"c3-{i}" for i in range(4))
    assert all(f"`{c}` → `results/{f}`" in table
               for c, f in zip(commands, PRUNED_LAYERS_FILES[2] + PRUNED_LAYERS_FILES[3]))
    assert len(set(PRUNED_LAYERS_FILES[2] + PRUNED_LAYERS_FILES[3])) == 8


def test_token_table_shows_a_dash_where_nothing_was_pruned():
    row = {"name": "dense bf16", "agreement": 0.99, "flops_saved_ratio": 0.0, "kept_tokens": 100,
           "kept_tokens_changed": 1, "kept_changed_ratio": 0.01, "pruned_tokens": 0, "pruned_tokens_changed": 0,
           "pruned_changed_ratio": 0.0, "changed_dense_unsure_ratio": 1.0, "documents_with_change_ratio": 0.5,
           "recovery_needed_ratio": {"oracle": 0.0, "lowest_kept_confidence": 0.25}}
    res = {"command": "cmd", "n_documents": 2, "half": "first", "unsure_prob": 0.9, "target_agreement": 0.97,
           "rows": [row]}
    line = [x for x in fidelity_tokens_table(res).splitlines() if x.startswith("| dense bf16")][0]
    assert line == "| dense bf16 | 0.9900 | 0.0% | 1 / 100 (1.00%) | – | 100.0% | 50.0% | 0.0% | 25.0% |"


def test_op_kinds_and_time_shares_leave_the_rest_as_other():
    assert op_kind("aten::addmm") == "linear"
    assert op_kind("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_kind("aten::_softmax") == op_kind("aten::bmm") == "attention"  # reduced precision's packed attention
    assert op_kind("mkldnn::_linear_pointwise") == op_kind("onednn::qlinear_pointwise") == "linear"
    assert op_kind("bioprune::fused_attention") == "attention"  # the compiled kernels, named by record_function
    assert op_kind("bioprune::int8_linear") == "linear"
    assert op_kind("aten::native_layer_norm") == "layer_norm"
    assert op_kind("aten::index_select") is None
    shares = time_shares([("aten::addmm", 2.0), ("aten::gelu", 1.0), ("aten::index_select", 3.0)], wall_s=10.0)
    assert shares["linear"] == 0.2 and shares["gelu"] == 0.1 and shares["attention"] == 0.0
    assert abs(shares["other"] - 0.7) < 1e-9  # the gather is not a kind of its own: it is in other


def test_roof_table_reports_each_system_against_its_precisions_roof():
    res = {"command": "cmd", "threads": 2, "matmul_shape": [4096, 384, 1536],
           "roof_gflops_per_s": {"fp32": 150.0, "bf16": 400.0}, "attention_shape": [16, 12, 256, 32],
           "attention_gflops_per_s": {"fp32": 100.0, "bf16": 101.0},
           "systems": {"dense bf16": {"16": {"achieved_gflops_per_s": 200.0, "fraction_of_roof": 0.5}}}}
    table = roof_table(res)
    assert "| dense bf16 | – | 200 (50.0%) |" in table
    assert "fp32 100 (torch's fused kernel), bf16 101 GFLOP/s" in table and "share of a dense annotate call" not in table


def test_timing_layers_splits_the_defaults_layers_at_its_pruning_point(default_model_dir):
    engine = PruningEngine.from_pretrained(default_model_dir, config=replace(DEFAULT, link=False, precision="fp32"))
    texts = ["Aspirin caused acute renal failure in two patients.", "Cisplatin nephrotoxicity was reduced."]
    encoder, point = engine.encoder, min(DEFAULT.prune_layers)
    n_layers = len(encoder.layers)
    # one window each: its tokens plus [CLS] and [SEP]
    whole = sum(forward.layer_flops(len(e.input_ids) + 2, encoder.hidden, encoder.intermediate) for e in engine.encode(texts))
    run_layer = forward.run_layer
    with timing_layers(encoder, encoder.weights_at("fp32"), point) as totals:
        engine.annotate(texts)
    assert forward.run_layer is run_layer  # put back after the block
    (dense_s, dense_flops, _), (pruned_s, pruned_flops, _) = totals["dense layers"], totals["pruned layers"]
    assert dense_flops == point * whole and dense_s > 0  # every token runs the layers before the point
    assert 0 < pruned_flops <= (n_layers - point) * whole and pruned_s > 0  # frozen context costs less than a token
    assert totals["dense layers"][2] == {"fp32": dense_flops}  # the fp32 copy: every FLOP answers to the fp32 roof
    rows = layer_flops_per_s(engine, texts, batch_size=1, rounds=2, roofs=lambda: {"fp32": 1e12})
    assert set(rows) == {"dense layers", "pruned layers"}
    assert abs(rows["dense layers"]["fraction_of_roof"] * 1e12 - rows["dense layers"]["achieved_gflops_per_s"] * 1e9) < 1


def test_a_layers_flops_answer_to_the_roof_of_the_precision_each_part_runs_at(default_model_dir):
    """In the int8 copy, a layer's Linear layers count at the int8 roof but for the feed-forward's
    second (kept bf16) and attention (bf16); in the bf16 copy everything at bf16; the parts add up
    to the forward's own count, frozen context included."""
    encoder = PruningEngine.from_pretrained(default_model_dir, config=replace(DEFAULT, link=False)).encoder
    H, inner = encoder.hidden, encoder.intermediate
    n, m = torch.tensor([10.0, 7.0]), torch.tensor([3.0, 0.0])
    total = float(forward.layer_flops(n, H, inner, m).sum())
    int8_layer = encoder.weights_at("int8").base_model.encoder.layer[0]
    parts = layer_flops_by_precision(int8_layer, n, m, H, inner)
    assert set(parts) == {"int8", "bf16"} and abs(sum(parts.values()) - total) < 1e-6
    bf16_parts = 2 * 17 * H * inner + 4 * float((n * (n + m)).sum()) * H  # FFN2 and attention
    assert abs(parts["bf16"] - bf16_parts) < 1e-6
    assert layer_flops_by_precision(encoder.weights_at("bf16").base_model.encoder.layer[0], n, m, H, inner) == {
        "bf16": pytest.approx(total)}


def test_roof_table_adds_the_defaults_layers_alone():
    layer = {"achieved_gflops_per_s": 300.0, "fraction_of_roof": 0.75}
    res = {"command": "cmd", "threads": 2, "matmul_shape": [4096, 384, 1536],
           "roof_gflops_per_s": {"fp32": 150.0, "bf16": 400.0}, "attention_shape": [16, 12, 256, 32],
           "attention_gflops_per_s": {"fp32": 100.0, "bf16": 101.0}, "systems": {},
           "default_layers": {"dense layers": {"1": layer, "16": layer}, "pruned layers": {"16": layer}},
           "default_layers_config": {"prune_layers": [3], "precision": "bf16"}, "n_layers": 6, "layer_rounds": 3}
    table = roof_table(res)
    assert "| the default's dense layers alone (layers 1–3, bf16) | 300 (75.0%) | 300 (75.0%) |" in table
    assert "| the default's pruned layers alone (layers 4–6, bf16) | – | 300 (75.0%) |" in table
    assert "each of 3 passes per batch size right after its own roof measurement" in table


def test_speed_cells_show_the_spread_of_the_rounds():
    assert _speed_cell({"speedup_median": 3.0, "speedup_per_round": [3.5, 2.5, 3.0]}) == "**3.00×** (2.50–3.50)"
    assert _speed_cell({"speedup_median": 1.5, "speedup_per_round": [1.5]}) == "**1.50×**"


def test_faithful_is_the_first_halfs_most_saving_row_at_the_agreement_floor_and_is_marked():
    first = _sweep("cmd-first", [((3,), 0.25, 0.96, 0.26), ((4,), 0.1, 0.985, 0.18),
                                 ((4,), 6.0, 0.981, 0.188), ((4,), 0.5, 0.979, 0.193)])
    second = _sweep("cmd-second", [((4,), 6.0, 0.986, 0.189)])
    assert faithful_choice(first, 0.98) == ((4,), 6.0)  # 0.5 saves more but agrees less than 0.98
    assert faithful_choice(first, 0.99) is None
    table = faithful_table(first, second, {})
    assert (FAITHFUL.prune_layers, FAITHFUL.aggressiveness) == ((4,), 6.0)
    assert "| (4,) | **6 (FAITHFUL)** | 0.9810 | 18.8% | 0.9860 (0.986, 0.986) | 18.9% |" in table
    assert "| (3,) | 0.25 | 0.9600 | 26.0% | – | – |" in table  # no held-out row: dashes


def test_allocator_sentence_counts_the_rounds_each_mode_won():
    def mode(ms, faults, rounds):
        return {"ms_per_abstract": ms, "page_faults_per_abstract": faults, "seconds_per_round": rounds}
    res = {"n_abstracts": 100, "cpu": "AMD EPYC", "command": "python -m training.benchmark_allocator --data x",
           "batch": {"1": {"glibc default": mode(43.3, 3284, [4.0, 4.2, 4.1]), "fixed": mode(39.2, 147, [3.9, 4.3, 3.8]),
                           "speedup_median": 1.09},
                     "16": {"glibc default": mode(32.6, 1178, [3.2, 3.3]), "fixed": mode(32.6, 334, [3.3, 3.2]),
                            "speedup_median": 1.0}}}
    text = allocator_sentence(res)
    assert "One abstract at a time: 3,284 → 147 page faults and 43.3 → 39.2 ms per abstract (1.09×, faster in 2 of 3" in text
    assert "At batch 16: 1,178 → 334" in text and "faster in 1 of 2 rounds" in text
    assert text.endswith("`python -m training.benchmark_allocator --data x` → `results/benchmark_allocator.json`.")


def test_kernels_table_counts_rounds_won_and_marks_what_the_default_runs():
    def side(ms, rounds):
        return {"ms_per_abstract": ms, "seconds_per_round": rounds}
    def precision(changed):
        return {"abstracts_with_other_entities": changed,
                "agreement_with_dense_fp32": {"torch ops": 0.9982, "kernels": 0.9976},
                "batch": {"1": {"torch ops": side(36.9, [7.4, 7.5]), "kernels": side(30.6, [6.1, 7.6]), "speedup_median": 1.2},
                          "16": {"torch ops": side(29.3, [5.9]), "kernels": side(25.6, [5.1]), "speedup_median": 1.15}}}
    res = {"n_abstracts": 200, "cpu": "AMD EPYC", "command": "cmd", "default_runs_at": "bf16",
           "precisions": {"bf16": precision(4), "int8": precision(0)},
           "kernels": {"quantize 4096x384": {"torch_ops_ms": 0.81, "kernel_ms": 0.21, "speedup": 3.86}}}
    table = kernels_table(res)
    assert ("| bf16 (the default here) | 36.9 → 30.6 (**1.20×**, faster in 1 of 2 rounds) | 29.3 → 25.6 (**1.15×**, "
            "faster in 1 of 1 rounds) | 4 of 200 | 0.9982 → 0.9976 |") in table
    assert "| int8 | " in table and "0 of 200" in table
    assert "quantize 4096x384: 0.81 → 0.21 ms (3.9×)" in table and table.endswith("`cmd` → `results/benchmark_kernels.json`.")


def test_layer3_speed_sentence_needs_both_runs():
    def run(b1, b16, cmd):
        return {"n_abstracts": 200, "command": cmd, "batch": {"1": {"speedup_median": b1}, "16": {"speedup_median": b16}}}
    assert layer3_speed_sentence(run(2.2, 2.9, "a"), None) is None
    text = layer3_speed_sentence(run(2.207, 2.94, "auto-cmd"), run(2.62, 3.45, "int8-cmd"))
    assert "2.21× at batch 1 and 2.94× at batch 16 in bf16, 2.62× and 3.45× stacked on int8" in text
    assert "`auto-cmd` → `results/benchmark_pruned_layers_l3_auto.json`; `int8-cmd`" in text


def test_layer3_int8_sentence_sets_int8_beside_bf16_at_the_same_lambdas():
    def sweep(values, cmd="cmd"):
        return {"command": cmd, "rows": [{"config": {"aggressiveness": lam}, "f1": {"micro": f1}} for lam, f1 in values.items()]}
    int8_first = sweep({0.5: 0.9679, 2.0: 0.9704, 6.0: 0.9690}, "int8-first-cmd")
    int8_second = sweep({0.5: 0.9771, 2.0: 0.9771, 6.0: 0.9790})
    bf16 = sweep({0.1: 0.95, 0.5: 0.9741, 2.0: 0.9760, 6.0: 0.9749})
    assert layer3_int8_sentence(int8_first, None, bf16, bf16) is None
    text = layer3_int8_sentence(int8_first, int8_second, bf16, bf16)
    assert text.startswith("- Stacked on int8 (`--precision int8`), the agreement at λ 0.5, 2, 6 is "
                           "0.968–0.970 on the first half (bf16: 0.974–0.976) and 0.977–0.979 on the held-out one")
    assert "`int8-first-cmd` → `results/pruned_layers_l3_trained_int8_first.json`" in text
