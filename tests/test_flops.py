"""Analytic FLOPs: the formulas on hand-computed numbers, and what PrunedEncoder records."""
from __future__ import annotations

import pytest
import torch

from bioprune.config import DENSE, PruningConfig
from bioprune.evaluation import pruning_summary
from bioprune.forward import layer_flop_parts, head_flops, layer_flops
from bioprune.types import Trace, flops_saved_ratio, format_flops_saved

from conftest import first_window_batch


@pytest.fixture(scope="module")
def batch(outside_engine, texts):
    """(input_ids, attention_mask, special) of four right-padded documents (47, 30, 15, 4 tokens)."""
    return first_window_batch(outside_engine, [*texts, "Seizures."])


def dense_flops(n_tokens, n_layers: int, hidden: int, intermediate: int, n_classes: int):
    """The dense model on one sequence of ``n_tokens``: every layer, then the classifier."""
    return n_layers * layer_flops(n_tokens, hidden, intermediate) + head_flops(n_tokens, hidden, n_classes)


def _dims(engine):
    cfg = engine.model.config
    return cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_labels


# --- the formulas -----------------------------------------------------------------------------------

def test_formulas_on_hand_computed_numbers():
    # n = 10 tokens, H = 4, I = 8, C = 5, L = 3
    # linear: 2 * 10 * (4 * 16 + 2 * 4 * 8) = 20 * 128 = 2560; attention: 4 * 10^2 * 4 = 1600
    assert layer_flops(10, 4, 8) == 4160
    assert head_flops(10, 4, 5) == 400  # 2 * 10 * 4 * 5
    assert dense_flops(10, 3, 4, 8, 5) == 3 * 4160 + 400 == 12880
    # n = 1, H = 2, I = 3, C = 2, L = 2: 2 * (16 + 12) + 4 * 2 = 64 per layer, head 8
    assert layer_flops(1, 2, 3) == 64
    assert dense_flops(1, 2, 2, 3, 2) == 136
    assert layer_flops(0, 4, 8) == head_flops(0, 4, 5) == dense_flops(0, 3, 4, 8, 5) == 0


def test_formulas_attention_is_quadratic_and_tensors_work():
    # doubling n doubles the linear part and quadruples the attention part: the excess is 8 n^2 H
    assert layer_flops(20, 4, 8) - 2 * layer_flops(10, 4, 8) == 8 * 10 ** 2 * 4
    n = torch.tensor([0.0, 1.0, 10.0, 47.0], dtype=torch.float64)
    got = dense_flops(n, 3, 32, 64, 5)
    assert got.tolist() == [dense_flops(int(k), 3, 32, 64, 5) for k in n.tolist()]


def test_trace_ratios():
    t = Trace(tokens_per_layer=(10, 10, 4), flops=300.0, dense_flops=1000.0)
    assert t.flops_saved_ratio == pytest.approx(0.7) and t.keep_ratio == pytest.approx(0.4)
    assert Trace().flops_saved_ratio == 0.0 and Trace().keep_ratio == 1.0


# --- what the encoder records -------------------------------------------------------------------------

@pytest.mark.parametrize("config", [DENSE, PruningConfig(prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0),
                                    PruningConfig(prune_layers=(2,))])
def test_forward_dense_flops_per_row(outside_engine, batch, config):
    ids, mask, special = batch
    L, H, I, C = _dims(outside_engine)
    out = outside_engine.encoder.forward(ids, mask, special, config)
    lengths = mask.sum(dim=1).tolist()
    assert len(set(lengths)) == len(lengths)  # really different lengths in one padded batch
    assert out.dense_flops.tolist() == [float(dense_flops(n, L, H, I, C)) for n in lengths]


def test_dense_config_flops_equal_dense_flops_exactly(outside_engine, batch, texts):
    out = outside_engine.encoder.forward(*batch, DENSE)
    assert torch.equal(out.flops, out.dense_flops)
    L, H, I, C = _dims(outside_engine)
    # and in the engine, summed over windows of a long document
    text = " ".join([texts[0]] * 12)
    (enc,) = outside_engine.encode([text])
    assert len(enc.windows) == 2
    pruned = outside_engine.with_config(PruningConfig(prune_layers=(2,), recovery=False))
    (a,) = pruned.annotate([text])
    assert a.trace.dense_flops == sum(dense_flops(e - s + 2, L, H, I, C) for s, e in enc.windows)


def test_flops_with_nothing_pruned_are_dense_plus_exit_heads(outside_engine, batch):
    ids, mask, special = batch
    L, H, I, C = _dims(outside_engine)
    config = PruningConfig(prune_layers=(1, 2), aggressiveness=0.0, recovery=False)  # nothing prunable
    out = outside_engine.encoder.forward(ids, mask, special, config)
    assert not out.pruned_layer.any()
    n = mask.sum(dim=1).double()
    assert torch.equal(out.flops, out.dense_flops + 2 * head_flops(n, H, C))


def _bounds(out, config, H, I, C):
    """Layer FLOPs from tokens_per_layer plus the final head, and the exit heads' cost on the
    tokens each one runs on (those present at its pruning point, before any leave). With frozen
    context, every token pruned before layer i adds its keys and values there."""
    tpl = out.tokens_per_layer.double()  # (B, L)
    context = [(tpl[:, 0] - tpl[:, i]) * config.frozen_context for i in range(tpl.size(1))]
    layers = sum(layer_flops(tpl[:, i], H, I, context[i]) for i in range(tpl.size(1))) + head_flops(tpl[:, -1], H, C)
    exits = sum(head_flops(tpl[:, k - 1], H, C) for k in config.prune_layers)
    return layers, exits


PRUNING_CONFIGS = [
    PruningConfig(prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0, recovery=False),
    PruningConfig(prune_layers=(1,), aggressiveness=1e6, min_keep_ratio=0.3, recovery=False),
    PruningConfig(prune_layers=(2,), aggressiveness=0.2, min_keep_ratio=0.0, recovery=False),
    PruningConfig(prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0, recovery=False, frozen_context=False),
]


@pytest.mark.parametrize("config", PRUNING_CONFIGS)
def test_pruned_flops_follow_tokens_per_layer_plus_exit_heads(outside_engine, batch, config):
    _, H, I, C = _dims(outside_engine)
    out = outside_engine.encoder.forward(*batch, config)
    assert (out.tokens_per_layer[:, -1] < out.tokens_per_layer[:, 0]).any()  # pruning happened
    layers, exits = _bounds(out, config, H, I, C)
    assert torch.equal(out.flops, layers + exits)
    assert (out.flops < out.dense_flops).all()


# --- FLOPs saved: net of pruning's own cost, so it may be negative ------------------------------------

def test_flops_saved_ratio_is_net_of_the_exit_heads_and_not_clamped(outside_engine):
    assert flops_saved_ratio(300.0, 1000.0) == pytest.approx(0.7) and flops_saved_ratio(0.0, 0.0) == 0.0
    assert flops_saved_ratio(1001.0, 1000.0) == pytest.approx(-0.001)  # spent more than dense: said so
    # a short document where nothing may leave: the pruned path is dense plus the exit head per point
    _, H, _, C = _dims(outside_engine)
    engine = outside_engine.with_config(PruningConfig(prune_layers=(1, 2), aggressiveness=0.0, recovery=False))
    (ann,) = engine.annotate(["Seizures."])
    trace = ann.trace
    assert not trace.pruned_tokens
    n = trace.tokens_per_layer[0]
    assert trace.flops == trace.dense_flops + 2 * head_flops(n, H, C)
    expected = -2 * head_flops(n, H, C) / trace.dense_flops
    assert trace.flops_saved_ratio == pytest.approx(expected) and expected < 0
    assert pruning_summary([ann])["flops_saved_ratio"] == flops_saved_ratio(trace.flops, trace.dense_flops)
    # report lines show the small net cost instead of "-0.0%"
    assert format_flops_saved(-0.00018) == "-0.018% (the exit heads cost more than pruning saved)"
    assert format_flops_saved(0.379) == "37.9%" and format_flops_saved(-0.2) == "-20.0%"


def test_layer_flop_parts_add_up_to_layer_flops():
    """The per-part split (which roof each part answers to, training/benchmark_roof.py) is the same
    count as the forward's, frozen context included."""
    for n, context in ((10, 0), (7, 3), (0, 5)):
        parts = layer_flop_parts(n, 4, 8, context)
        assert sum(parts.values()) == layer_flops(n, 4, 8, context)
        assert parts["attention.self.kv"] == 4 * context * 16 and parts["output.dense"] == 2 * n * 32
