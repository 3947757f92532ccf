"""Adaptive token pruning on the tiny random BERT: prune/restore, equivalence with the dense model,
protected tokens, the keep floor, recovery, FLOPs against aggressiveness, batching invariance,
offsets and traces, and config validation.

Most tests use ``outside_engine``: its exit heads (after layers 1 and 2) are biased towards "O",
so the rule controller finds most tokens prunable and pruning really happens; the final classifier
is random, so many kept tokens look like entities and recovery fires too.
"""
from __future__ import annotations

import copy
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hypothesis import given, settings
from hypothesis import strategies as st

import bioprune.layer as layer_module
from bioprune import forward
from bioprune.config import DEFAULT, DENSE, OPERATING_POINTS, PruningConfig, dense_twin
from bioprune.controllers import CONTROLLER_FILE, LearnedController, attention_feature_columns, keep_mask
from bioprune.forward import TRIGGERS, Sequences, prune, restore
from bioprune.layer import _heads, packed_attention, run_layer
from bioprune.engine import ModelBundle, PruningEngine
from bioprune.exits import ExitHeads
from bioprune.labels import LABELS
from bioprune.types import ENTITY_TYPES

from conftest import entity_tuples, first_window_batch, label_probs

# Recovery triggers that fire often on the tiny random model: its texts hold a few dozen tokens, so
# a sequence never reaches the default spike_min_tokens uncertain tokens.
EAGER_TRIGGERS = dict(loss_entity_prob=0.05, spike_entropy_nats=1.2, spike_min_tokens=1, recovery_window_tokens=2)


def _recovering(**kwargs) -> PruningConfig:
    """Recovery on, with :data:`EAGER_TRIGGERS` unless ``kwargs`` set a trigger."""
    return PruningConfig(recovery=True, **{**EAGER_TRIGGERS, **kwargs})


AGGRESSIVE = PruningConfig(aggressiveness=1e6, min_keep_ratio=0.0, prune_layers=(1, 2), recovery=False)


@pytest.fixture(scope="module")
def long_text(texts) -> str:
    return " ".join([texts[0]] * 12)  # ~545 subword tokens: two windows


@pytest.fixture(scope="module")
def short_texts(texts) -> list[str]:
    return [texts[0], "", "Seizures.", texts[2], "famotidine " * 40, texts[1]]


@pytest.fixture(scope="module")
def mixed_texts(texts, long_text) -> list[str]:
    return [texts[0], "", "Seizures.", long_text, texts[2], "famotidine " * 40, texts[1], "a"]


def _trace_summary(trace):
    return (tuple(p.position for p in trace.pruned_tokens),
            tuple((p.layer, p.label) for p in trace.pruned_tokens),
            tuple((ev.trigger, ev.positions, ev.layer, ev.labels_before, ev.labels_after)
                  for ev in trace.recovery_events),
            trace.tokens_per_layer)


# --- 1. prune / restore --------------------------------------------------------------------------

@st.composite
def _pruning_case(draw):
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 9))
    H = draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    keep = draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2**16))
    return B, T, H, lengths, keep, seed


def _make(B, T, H, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g)
    valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) right padding
    positions = torch.randperm(100, generator=g)[:T].expand(B, T).clone()  # distinct, not arange
    return Sequences(hidden=hidden, positions=positions, valid=valid), g


@settings(max_examples=30, deadline=None)
@given(_pruning_case())
def test_prune_then_restore_round_trip(case):
    B, T, H, lengths, keep_bits, seed = case
    seqs, g = _make(B, T, H, lengths, seed)
    keep = torch.tensor(keep_bits)
    kept = keep & seqs.valid  # padding is never kept, even when keep says so
    out = prune(seqs, keep)

    width = max(int(kept.sum(dim=1).max()), 1)
    assert out.hidden.shape == (B, width, H) and out.positions.shape == out.valid.shape == (B, width)
    assert torch.equal(out.lengths, kept.sum(dim=1))
    for b in range(B):
        idx = kept[b].nonzero().flatten()  # kept tokens, in their original order
        k = idx.numel()
        assert out.valid[b, :k].all() and not out.valid[b, k:].any()  # kept first, then padding
        assert torch.equal(out.positions[b, :k], seqs.positions[b, idx])  # positions travel with the tokens
        assert torch.equal(out.hidden[b, :k], seqs.hidden[b, idx])

    # restore writes exactly the kept slots back (by original position) and leaves every other one untouched
    at = prune(replace(seqs, positions=torch.arange(T).expand(B, T)), keep)  # positions = the token axis
    background = torch.randn(B, T, H, generator=g)
    before = background.clone()
    restored = restore(background, at.hidden, at)
    assert torch.equal(background, before)  # not in place
    assert torch.equal(restored[kept], seqs.hidden[kept])
    assert torch.equal(restored[~kept], background[~kept])
    # with new values (as after running layers on the pruned batch)
    new_part = torch.randn(B, width, H, generator=g)
    restored = restore(background, new_part, at)
    assert torch.equal(restored[~kept], background[~kept])
    for b in range(B):
        k = int(kept[b].sum())
        assert torch.equal(restored[b, at.positions[b, :k]], new_part[b, :k])
    # (B, T) values take the same path
    assert torch.equal(restore(background[..., 0], new_part[..., 0], at), restored[..., 0])


@settings(max_examples=30, deadline=None)
@given(_pruning_case(), st.lists(st.booleans(), min_size=36, max_size=36))
def test_two_prunes_restore_through_positions(case, second_bits):
    """As in the encoder: prune twice, then write back into the original token axis by position."""
    B, T, H, lengths, keep_bits, seed = case
    seqs, g = _make(B, T, H, lengths, seed)
    seqs = replace(seqs, positions=torch.arange(T).expand(B, T))
    first = prune(seqs, torch.tensor(keep_bits))
    width = first.valid.size(1)  # B * width <= 4 * 9 = 36
    keep2 = torch.tensor(second_bits[:B * width]).view(B, width)
    second = prune(first, keep2)
    survived = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        survived[b, second.positions[b][second.valid[b]]] = True
    assert not (survived & ~seqs.valid).any()
    background = torch.randn(B, T, H, generator=g)
    restored = restore(background, second.hidden, second)
    assert torch.equal(restored[survived], seqs.hidden[survived])
    assert torch.equal(restored[~survived], background[~survived])


@pytest.mark.parametrize("lengths", [[5, 5, 5], [6, 3, 0, 1], [1], [4, 4]])
def test_prune_keep_all_is_identity(lengths):
    T = max(lengths)
    seqs, _ = _make(len(lengths), T, 3, lengths, seed=7)
    seqs = replace(seqs, positions=torch.arange(T).expand(len(lengths), T))
    out = prune(seqs, torch.ones(len(lengths), T, dtype=torch.bool))
    assert torch.equal(out.hidden, seqs.hidden)
    assert torch.equal(out.positions, seqs.positions)
    assert torch.equal(out.valid, seqs.valid)
    assert torch.equal(restore(torch.zeros_like(seqs.hidden), out.hidden, out), seqs.hidden * seqs.valid[..., None])


def test_prune_nothing_kept_gives_one_padding_slot():
    seqs, _ = _make(2, 4, 2, [4, 2], seed=3)
    out = prune(seqs, torch.zeros(2, 4, dtype=torch.bool))
    assert out.hidden.shape == (2, 1, 2) and not out.valid.any()
    background = torch.randn(2, 4, 2)
    assert torch.equal(restore(background, out.hidden, out), background)


# --- 2. pruning off equals the dense model --------------------------------------------------------

def test_dense_forward_equals_hf_model_on_padded_batch(outside_engine, texts):
    ids, mask, special = first_window_batch(outside_engine, [texts[2], texts[0], "Seizures."])
    assert (mask == 0).any()  # really padded
    out = outside_engine.encoder.forward(ids, mask, special, DENSE)
    with torch.no_grad():
        ref = torch.softmax(outside_engine.model(input_ids=ids, attention_mask=mask).logits, dim=-1)
    valid = mask.bool()
    torch.testing.assert_close(out.probs[valid], ref[valid], atol=1e-5, rtol=0)
    for b in range(ids.size(0)):  # and each row run alone, unpadded
        n = int(mask[b].sum())
        with torch.no_grad():
            alone = torch.softmax(outside_engine.model(input_ids=ids[b:b + 1, :n]).logits, dim=-1)[0]
        torch.testing.assert_close(out.probs[b, :n], alone, atol=1e-5, rtol=0)
    assert not out.pruned_layer.any() and not any(m.any() for m in out.recovery.values())
    assert torch.equal(out.tokens_per_layer, mask.sum(dim=1, keepdim=True).expand(-1, 3))


def test_enabled_config_with_nothing_pruned_equals_dense(outside_engine, texts):
    """λ = 0: no token is prunable, so the pruning points (explicit attention probs, exit heads,
    gather) run but the forward must still be the dense model."""
    ids, mask, special = first_window_batch(outside_engine, [texts[2], texts[0], texts[1]])
    config = _recovering(aggressiveness=0.0, min_keep_ratio=0.0, prune_layers=(1, 2), precision="fp32")
    assert config.enabled
    dense = outside_engine.encoder.forward(ids, mask, special, DENSE)
    out = outside_engine.encoder.forward(ids, mask, special, config)
    valid = mask.bool()
    assert not out.pruned_layer.any() and not any(m.any() for m in out.recovery.values())
    torch.testing.assert_close(out.probs[valid], dense.probs[valid], atol=1e-5, rtol=0)
    assert torch.equal(out.tokens_per_layer, dense.tokens_per_layer)


def test_frozen_context_before_the_last_layer_leaves_kept_tokens_exactly_dense(outside_engine, texts):
    """Pruned before the last layer (3 layers, point 2), kept tokens attend to every token's state
    after layer 2 - pruned ones as frozen keys/values - which is exactly what the dense last layer
    sees; without frozen context they lose that context and their outputs move."""
    ids, mask, special = first_window_batch(outside_engine, [texts[2], texts[0], texts[1]])
    dense = outside_engine.encoder.forward(ids, mask, special, DENSE)
    kept_equal = {}
    for frozen in (True, False):
        config = PruningConfig(prune_layers=(2,), aggressiveness=1e6, min_keep_ratio=0.3, recovery=False,
                               frozen_context=frozen, precision="fp32")
        out = outside_engine.encoder.forward(ids, mask, special, config)
        kept = mask.bool() & ~out.pruned_layer.bool()
        assert out.pruned_layer.any() and kept.any()
        kept_equal[frozen] = torch.allclose(out.probs[kept], dense.probs[kept], atol=1e-5, rtol=0)
    assert kept_equal == {True: True, False: False}


@pytest.mark.parametrize("with_context", [False, True])
def test_packed_layer_equals_padded_layer(outside_engine, monkeypatch, with_context):
    """Running the linear layers on the packed real tokens changes nothing on them."""
    torch.manual_seed(0)
    layer = outside_engine.encoder.layers[1]
    lengths = [30, 4, 28, 3]
    valid = torch.arange(30)[None, :] < torch.tensor(lengths)[:, None]  # (4, 30): 46% padding
    hidden = torch.randn(4, 30, outside_engine.encoder.hidden)
    context = None
    if with_context:
        c_valid = torch.arange(5)[None, :] < torch.tensor([5, 0, 2, 1])[:, None]  # (4, 5)
        context = Sequences(hidden=torch.randn(4, 5, outside_engine.encoder.hidden),
                            positions=torch.zeros(4, 5, dtype=torch.long), valid=c_valid)
    packed = layer_module.packing(valid)
    assert packed.lengths == lengths and packed.index is not None and not packed.mostly_real
    whole = layer_module.packing(torch.ones(4, 30, dtype=torch.bool))
    assert whole.index is None and whole.mostly_real and whole.lengths == [30] * 4  # nothing to pack
    for signals in (False, True):
        out, sig = run_layer(layer, hidden, valid, signals, context)
        assert not out[~valid].any()  # padding slots come out as zeros
        monkeypatch.setattr(layer_module, "MIN_PADDING_TO_PACK", 1.01)  # never pack
        assert layer_module.packing(valid).mostly_real
        ref, ref_sig = run_layer(layer, hidden, valid, signals, context)
        monkeypatch.undo()
        torch.testing.assert_close(out[valid], ref[valid], atol=1e-5, rtol=0)
        if signals:
            for a, b in zip(sig, ref_sig):
                torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=0)


def test_min_keep_ratio_one_equals_dense(outside_engine, mixed_texts):
    full = outside_engine.with_config(_recovering(aggressiveness=1.0, min_keep_ratio=1.0, controller="rule",
                                                  prune_layers=(1, 2), precision="fp32"))
    dense = outside_engine.with_config(DENSE)
    a_full, a_dense = full.annotate(mixed_texts), dense.annotate(mixed_texts)
    assert [entity_tuples(a) for a in a_full] == [entity_tuples(a) for a in a_dense]
    assert all(a.trace is None for a in a_full + a_dense)
    encoded = dense.encode(mixed_texts)
    for p, q in zip(label_probs(full, encoded), label_probs(dense, encoded)):
        np.testing.assert_allclose(p, q, atol=1e-5)


# --- 3. special tokens and padding never leave ----------------------------------------------------

@pytest.mark.parametrize("recovery", [False, True])
def test_special_tokens_and_padding_never_pruned(outside_engine, texts, recovery):
    ids, mask, special = first_window_batch(outside_engine, [texts[0], texts[2], texts[1], "Seizures."])
    out = outside_engine.encoder.forward(ids, mask, special, AGGRESSIVE.with_(recovery=recovery))
    valid = mask.bool()
    tok = outside_engine.tokenizer
    is_cls_sep = (ids == tok.cls_token_id) | (ids == tok.sep_token_id)
    assert int(is_cls_sep.sum()) == 2 * ids.size(0)
    assert not out.pruned_layer[is_cls_sep].any()
    assert not out.pruned_layer[~valid].any()
    assert not out.pruned_layer[special].any()
    # pruning really happened: most content tokens left, at the configured points only
    content = valid & ~special
    pruned = out.pruned_layer > 0
    assert pruned[content].float().mean() > 0.6
    assert set(out.pruned_layer[pruned].tolist()) <= {1, 2}
    assert (out.tokens_per_layer[:, -1] >= 2).all()  # [CLS] and [SEP] ran every layer
    # pruned tokens carry exit-head probabilities (a distribution), padding none
    torch.testing.assert_close(out.probs[valid].sum(-1), torch.ones(int(valid.sum())), atol=1e-5, rtol=0)
    assert not out.probs[~valid].any()


# --- 4. recovered tokens are pruned tokens -------------------------------------------------------

RECOVERY_CONFIGS = [
    _recovering( aggressiveness=1.0, prune_layers=(1, 2)),
    _recovering( prune_layers=(2,), aggressiveness=5.0, min_keep_ratio=0.1),
    _recovering( prune_layers=(1,), aggressiveness=0.3, min_keep_ratio=0.0, recovery_window_tokens=4),
    _recovering( prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0, spike_entropy_nats=0.0),
    _recovering( prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.2, loss_entity_prob=0.0,
                  guard_window_tokens=0),
]


def test_recovered_subset_of_pruned(outside_engine, pruning_engine, texts, short_texts):
    ids, mask, special = first_window_batch(outside_engine, [*texts, "Seizures after famotidine."])
    n_events = 0
    for engine in (outside_engine, pruning_engine):
        for config in RECOVERY_CONFIGS:
            out = engine.encoder.forward(ids, mask, special, config)
            pruned = out.pruned_layer > 0
            assert set(out.recovery) == set(TRIGGERS)
            for trigger_mask in out.recovery.values():
                assert not (trigger_mask & ~pruned).any()
            for a in engine.with_config(config).annotate(short_texts):
                positions = {p.position for p in a.trace.pruned_tokens}
                layers = {p.position: p.layer for p in a.trace.pruned_tokens}
                for event in a.trace.recovery_events:
                    n_events += 1
                    assert event.trigger in TRIGGERS
                    assert event.positions and set(event.positions) <= positions
                    assert len(event.labels_before) == len(event.labels_after) == len(event.positions)
                    assert event.layer == min(layers[p] for p in event.positions)
                    assert event.layer in config.prune_layers
                    labels_now = {p.position: p.label for p in a.trace.pruned_tokens}
                    assert list(event.labels_after) == [labels_now[p] for p in event.positions]
    assert n_events > 0  # recovery really fired


# --- 5. the min_keep_ratio floor -------------------------------------------------------------------

@pytest.mark.parametrize("prune_layers", [(1,), (2,), (1, 2)])
@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.8])
def test_min_keep_ratio_floor(outside_engine, texts, ratio, prune_layers):
    ids, mask, special = first_window_batch(outside_engine, [texts[0], texts[1], texts[2], "Seizures."])
    config = PruningConfig(aggressiveness=1e6, min_keep_ratio=ratio, prune_layers=prune_layers, recovery=False)
    out = outside_engine.encoder.forward(ids, mask, special, config)
    n_real = mask.sum(dim=1)
    floor = torch.tensor([math.ceil(ratio * int(n)) for n in n_real])
    assert (out.tokens_per_layer[:, -1] < n_real).sum() >= 3  # pruning happened
    assert (out.tokens_per_layer[:, -1] >= floor).all(), (out.tokens_per_layer.tolist(), floor.tolist())


# --- 6. FLOPs against aggressiveness, and recovery's cost -----------------------------------------

LAMBDAS = [0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 100.0]


@pytest.mark.parametrize("prune_layers", [(1,), (2,)])
@pytest.mark.parametrize("min_keep_ratio", [0.0, 0.3])
def test_flops_non_increasing_in_aggressiveness(outside_engine, short_texts, prune_layers, min_keep_ratio):
    per_lambda = []
    for lam in LAMBDAS:
        config = PruningConfig(aggressiveness=lam, prune_layers=prune_layers, min_keep_ratio=min_keep_ratio,
                               recovery=False)
        per_lambda.append([a.trace.flops for a in outside_engine.with_config(config).annotate(short_texts)])
    flops = np.array(per_lambda)  # (lambdas, docs)
    assert (np.diff(flops, axis=0) <= 0).all(), flops
    assert flops[-1].sum() < 0.9 * flops[0].sum()  # and they really fall


@pytest.mark.parametrize("config", [
    _recovering( prune_layers=(2,), aggressiveness=1e6, min_keep_ratio=0.0),
    _recovering( prune_layers=(2,), aggressiveness=0.5, min_keep_ratio=0.3),
    _recovering( prune_layers=(2,), aggressiveness=1e6, min_keep_ratio=0.0, frozen_context=True),
    _recovering( prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0),
    _recovering( prune_layers=(1, 2), aggressiveness=1.0, min_keep_ratio=0.0, frozen_context=True),
])
def test_recovery_flops_are_recorded(outside_engine, texts, config):
    on = outside_engine.with_config(config).annotate(texts)
    off = outside_engine.with_config(config.with_(recovery=False)).annotate(texts)
    engine = outside_engine.encoder
    n_recovered_docs = 0
    for a_on, a_off in zip(on, off):
        t_on, t_off = a_on.trace, a_off.trace
        assert t_on.tokens_per_layer == t_off.tokens_per_layer  # recovery excluded from the counts
        assert t_on.dense_flops == t_off.dense_flops
        assert t_on.flops >= t_off.flops
        recovered = {p for event in t_on.recovery_events for p in event.positions}
        if not recovered:
            assert t_on.flops == t_off.flops
            continue
        n_recovered_docs += 1
        assert t_on.flops > t_off.flops
        # second pass, layers k1..L-1: the tokens that ran them the first time plus the recovered ones
        # that had left by then; the still-pruned ones leave at their own point (frozen keys/values after)
        left_at = {p.position: p.layer for p in t_on.pruned_tokens}
        first = min(config.prune_layers)
        extra = 0.0
        for i in range(first, len(t_on.tokens_per_layer)):
            n_i = t_on.tokens_per_layer[i] + sum(left_at[p] <= i for p in recovered)
            context = (t_on.tokens_per_layer[0] - n_i) * config.frozen_context
            extra += float(forward.layer_flops(float(n_i), engine.hidden, engine.intermediate, float(context)))
        extra += 2 * n_i * engine.hidden * engine.n_classes
        assert t_on.flops - t_off.flops == pytest.approx(extra, rel=1e-12)
    assert n_recovered_docs > 0


# --- 7. batching does not change pruning decisions ------------------------------------------------

@pytest.mark.parametrize("config", [
    _recovering( aggressiveness=1.0, prune_layers=(1, 2)),
    _recovering( prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.3),
    PruningConfig(prune_layers=(2,), aggressiveness=0.2, min_keep_ratio=0.0, recovery=False),
])
def test_batched_equals_one_at_a_time_under_pruning(outside_engine, mixed_texts, config):
    engine = outside_engine.with_config(config)
    together = engine.annotate(mixed_texts, batch_size=16)
    alone = [engine.annotate([t], batch_size=1)[0] for t in mixed_texts]
    in_threes = engine.annotate(mixed_texts, batch_size=3)
    for a, b, c in zip(together, alone, in_threes):
        assert entity_tuples(a) == entity_tuples(b) == entity_tuples(c)
        assert _trace_summary(a.trace) == _trace_summary(b.trace) == _trace_summary(c.trace)
        assert a.trace.flops == b.trace.flops == c.trace.flops
        assert a.trace.dense_flops == b.trace.dense_flops
    assert any(a.trace.pruned_tokens for a in together)
    encoded = engine.encode(mixed_texts)
    for p16, p1 in zip(label_probs(engine, encoded, batch_size=16),
                       [label_probs(engine, [e], batch_size=1)[0] for e in encoded]):
        if engine.precision == "fp32":  # fp32 attention runs on the padded batch: its matmuls' blocking moves
            np.testing.assert_allclose(p16, p1, atol=1e-5)
        else:  # reduced precision runs every op row by row or sequence by sequence: the same bits
            np.testing.assert_array_equal(p16, p1)


# --- 8. offsets with pruning on -------------------------------------------------------------------

ODD_TEXTS = ["", "   ", "\n\t", "a", "😀famotidine😀 中文 e\u0301 ﬁ\x07 (renal)-failure;",
             "Famotidine-associated delirium,\u00a0renal\u2028failure.  "]


@pytest.mark.parametrize("config", [
    _recovering( aggressiveness=1.0, prune_layers=(1, 2)),
    _recovering( prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0),
    PruningConfig(prune_layers=(2,), aggressiveness=0.2, min_keep_ratio=0.5, recovery=False),
])
def test_offsets_valid_with_pruning(outside_engine, long_text, texts, config):
    engine = outside_engine.with_config(config)
    docs = ODD_TEXTS + [long_text, texts[0]]
    encoded = engine.encode(docs)
    assert len(encoded[len(ODD_TEXTS)].windows) > 1  # the long text needs windows
    n_entities = n_pruned = 0
    for text, enc, a in zip(docs, encoded, engine.annotate(docs)):
        assert a.text == text
        previous_end = 0
        for e in a.entities:
            assert 0 <= e.start < e.end <= len(text) and e.start >= previous_end
            assert text[e.start:e.end] == e.text and e.label in ENTITY_TYPES
            previous_end = e.end
        n_entities += len(a.entities)
        positions = [p.position for p in a.trace.pruned_tokens]
        assert positions == sorted(set(positions))  # unique, in document order
        for p in a.trace.pruned_tokens:
            assert 0 <= p.position < len(enc.input_ids)
            assert (p.start, p.end) == enc.offsets[p.position]
            assert 0 <= p.start <= p.end <= len(text)
            assert p.layer in config.prune_layers and p.label in LABELS
        n_pruned += len(positions)
        if not text.strip():
            assert a.entities == () and a.trace.pruned_tokens == () and a.trace.recovery_events == ()
    assert n_entities > 0 and n_pruned > 0
    # the long document's pruned tokens span both windows
    long_positions = [p.position for p in engine.annotate([long_text])[0].trace.pruned_tokens]
    assert max(long_positions) >= encoded[len(ODD_TEXTS)].windows[0][1]  # only the second window has these


# --- 9. trace sanity -----------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    PruningConfig(aggressiveness=1.0, prune_layers=(2,), recovery=False),
    PruningConfig(prune_layers=(2,), aggressiveness=0.0, recovery=False),  # nothing prunable
    PruningConfig(prune_layers=(1,), aggressiveness=0.2, min_keep_ratio=0.5, recovery=False),
    PruningConfig(prune_layers=(1, 2), aggressiveness=1e6, min_keep_ratio=0.0, recovery=False),
    _recovering( aggressiveness=1.0, prune_layers=(1, 2)),
])
def test_trace_sanity(outside_engine, mixed_texts, config):
    engine = outside_engine.with_config(config)
    L = engine.model.config.num_hidden_layers
    for text, enc, a in zip(mixed_texts, engine.encode(mixed_texts), engine.annotate(mixed_texts)):
        t = a.trace
        assert t is not None and len(t.tokens_per_layer) == L
        assert list(t.tokens_per_layer) == sorted(t.tokens_per_layer, reverse=True)
        assert t.tokens_per_layer[0] == sum(e - s + 2 for s, e in enc.windows)
        assert t.dense_flops > 0 and 0.0 <= t.keep_ratio <= 1.0
        exit_heads = sum(2 * (e - s + 2) * engine.encoder.hidden * engine.encoder.n_classes
                         for s, e in enc.windows) * len(config.prune_layers)
        if not config.recovery:
            assert t.recovery_events == ()
            # pruning costs at most the exit heads on every token; on this 32-wide model an exit head
            # is 0.65% of the dense model, so it may exceed 1% only with two points and nothing pruned
            assert t.flops <= t.dense_flops + exit_heads
            if t.pruned_tokens or len(config.prune_layers) == 1:
                assert t.flops <= t.dense_flops * 1.01
        if t.pruned_tokens:
            assert t.tokens_per_layer[-1] < t.tokens_per_layer[0]
        else:
            assert len(set(t.tokens_per_layer)) == 1
        d = t.to_dict()
        assert d["flops_saved_ratio"] == pytest.approx(1 - t.flops / t.dense_flops)


def test_dense_configs_give_no_trace(outside_engine, texts):
    for config in (DENSE, PruningConfig(min_keep_ratio=1.0), PruningConfig(prune_layers=())):
        assert not config.enabled
        for a in outside_engine.with_config(config).annotate([texts[0], ""]):
            assert a.trace is None
            assert "trace" not in a.to_dict()


# --- 10. config validation and engine checks ------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"controller": "dense"}, {"controller": "RULE"}, {"controller": ""},
    {"aggressiveness": -0.1}, {"aggressiveness": -1e-9}, {"aggressiveness": float("nan")},
    {"min_keep_ratio": -0.01}, {"min_keep_ratio": 1.01}, {"min_keep_ratio": float("nan")},
    {"prune_layers": (2, 1)}, {"prune_layers": (1, 1)}, {"prune_layers": (0,)}, {"prune_layers": (-1, 2)},
    {"prune_layers": (1, 3, 2)}, {"spike_min_tokens": 0}, {"recovery_window_tokens": -1},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        PruningConfig(**kwargs)
    with pytest.raises(ValueError):
        PruningConfig().with_(**kwargs)


def test_each_controller_defaults_to_its_operating_point():
    rule, mlp = PruningConfig(controller="rule"), PruningConfig(controller="mlp")
    assert (rule.aggressiveness, rule.prune_layers, rule.frozen_context) == (2.0, (2,), False)
    assert (mlp.aggressiveness, mlp.prune_layers, mlp.frozen_context) == (OPERATING_POINTS["mlp"].aggressiveness,
                                                                          OPERATING_POINTS["mlp"].prune_layers, True)
    assert PruningConfig(controller="mlp", frozen_context=False).frozen_context is False  # given, not the point's
    assert mlp.prune_layers != rule.prune_layers  # the points differ, so a mix-up shows
    assert PruningConfig(controller="mlp", aggressiveness=1.5, prune_layers=[3]).prune_layers == (3,)
    assert PruningConfig(controller="mlp", aggressiveness=1.5).aggressiveness == 1.5
    assert rule.with_(controller="mlp").aggressiveness == rule.aggressiveness  # with_ changes only what it is told
    assert rule.with_(controller="mlp", aggressiveness=None, prune_layers=None, frozen_context=None) == mlp


def test_config_accepts_edge_values():
    assert PruningConfig(aggressiveness=0.0).enabled
    assert PruningConfig(min_keep_ratio=0.0).enabled  # not enabled: test_dense_configs_give_no_trace
    assert PruningConfig(prune_layers=[1, 2]).prune_layers == (1, 2)  # lists become tuples (hashable)
    assert hash(PruningConfig(prune_layers=[1, 2])) == hash(PruningConfig(prune_layers=(1, 2)))
    with pytest.raises(Exception):
        PruningConfig().aggressiveness = 2.0  # frozen


def test_engine_names_missing_exit_head(outside_engine, tiny_model_dir):
    model, tokenizer = outside_engine.model, outside_engine.tokenizer
    only_two = ExitHeads([2], model.config.hidden_size, model.config.num_labels)
    with pytest.raises(ValueError, match=r"no exit head after layer\(s\) \[1\]"):
        PruningEngine(ModelBundle(model, tokenizer, exit_heads=only_two), PruningConfig(prune_layers=(1, 2)))
    PruningEngine(ModelBundle(model, tokenizer, exit_heads=only_two), PruningConfig(prune_layers=(2,)))  # fine
    with pytest.raises(ValueError, match=r"\[2\]"):
        PruningEngine.from_pretrained(tiny_model_dir, config=PruningConfig(prune_layers=(2,)))  # no heads at all
    assert PruningEngine.from_pretrained(tiny_model_dir).config == dense_twin(DEFAULT)  # without heads: dense by default
    # disabled configs need no heads
    PruningEngine(ModelBundle(model, tokenizer), PruningConfig(min_keep_ratio=1.0, prune_layers=(1,)))


@pytest.mark.parametrize("config, match", [
    *[(PruningConfig(prune_layers=layers), "layers") for layers in [(3,), (1, 3), (2, 4)]],  # beyond the model
    (PruningConfig(controller="mlp", prune_layers=(1, 2)), "mlp"),  # the fixture model has no controller.safetensors
])
def test_engine_rejects_configs_the_model_cannot_run(outside_engine, config, match):
    with pytest.raises(ValueError, match=match):
        outside_engine.with_config(config)


def test_mlp_without_attention_features_skips_the_attention_signals(outside_model_dir, tmp_path, monkeypatch):
    n_classes = PruningEngine.from_pretrained(outside_model_dir).model.config.num_labels
    n_features = n_classes + 8
    dropped = attention_feature_columns(n_classes)
    columns = [c for c in range(n_features) if c not in dropped]
    torch.manual_seed(0)
    calls = []
    real = forward.run_layer
    monkeypatch.setattr(forward, "run_layer",
                        lambda *a, **k: calls.append(k["need_signals"]) or real(*a, **k))
    config = PruningConfig(controller="mlp", aggressiveness=1e6, min_keep_ratio=0.0, prune_layers=(1, 2))
    for controller, wants_signals in ((LearnedController(len(columns), columns=columns, uses_attention=False), False),
                                      (LearnedController(n_features), True)):
        target = shutil.copytree(outside_model_dir, tmp_path / str(wants_signals))
        controller.save(target)
        engine = PruningEngine.from_pretrained(target, config=config)
        assert engine.controllers["mlp"].needs_attention is wants_signals
        calls.clear()
        [ann] = engine.annotate(["Famotidine associated delirium in a patient treated with cisplatin ."])
        assert ann.trace.pruned_tokens  # λ = 1e6: every content token may leave
        assert any(calls) is wants_signals  # the layers before pruning points ran eager attention or not


def test_controller_files_from_before_feature_selection_still_load(tmp_path):
    state = {k: v for k, v in LearnedController(13).state_dict().items() if k not in ("columns", "uses_attention")}
    save_file(state, str(tmp_path / CONTROLLER_FILE))
    loaded = LearnedController.load(tmp_path)
    assert loaded.columns.tolist() == list(range(13)) and loaded.needs_attention


def test_from_pretrained_loads_exit_heads(outside_model_dir):
    engine = PruningEngine.from_pretrained(outside_model_dir)
    assert engine.exit_heads is not None and engine.exit_heads.layers == (1, 2)
    assert engine.config == dense_twin(DEFAULT)  # DEFAULT prunes after layer 3, beyond these 3 layers: dense
    assert float(engine.exit_heads.heads["1"].bias.detach()[0]) == 8.0


# --- 11. keep_mask on hand-made tensors -----------------------------------------------------------

def test_keep_mask_specials_and_floor():
    valid = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    special = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)  # pad too
    prunable = torch.ones(2, 8, dtype=torch.bool)  # everything claims to be prunable
    importance = torch.tensor([[9.0, 0.1, 0.7, 0.3, 0.9, 0.2, 0.5, 9.0],
                               [0.0, 0.4, 0.1, 0.8, 0.0, 5.0, 5.0, 5.0]])

    for ratio, expected in [
        (0.0, [[1, 0, 0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 0, 0]]),
        # floor ceil(0.5 * 8) = 4: the specials plus the two most important (0.9, 0.7)
        # floor ceil(0.5 * 5) = 3: the specials plus the most important (0.8); padding never
        (0.5, [[1, 0, 1, 0, 1, 0, 0, 1], [1, 0, 0, 1, 1, 0, 0, 0]]),
        (0.7, [[1, 0, 1, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 0, 0, 0]]),  # ceil(0.7 * 8) = 6 and ceil(0.7 * 5) = 4
        (1.0, valid.tolist()),
    ]:
        assert keep_mask(prunable, importance, valid, special, ratio).tolist() == expected


def test_keep_mask_non_prunable_tokens_count_towards_floor():
    valid = torch.ones(1, 6, dtype=torch.bool)
    special = torch.tensor([[1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    prunable = torch.tensor([[1, 0, 1, 1, 0, 1]], dtype=torch.bool)  # tokens 1 and 4 must stay
    importance = torch.tensor([[0.0, -5.0, 0.2, 0.6, -5.0, 0.0]])  # non-prunable ones least important
    keep = keep_mask(prunable, importance, valid, special, 0.5)  # floor 3 < 4 already kept
    assert keep.tolist() == [[1, 1, 0, 0, 1, 1]]
    keep = keep_mask(prunable, importance, valid, special, 0.8)  # floor ceil(4.8) = 5: add 0.6
    assert keep.tolist() == [[1, 1, 0, 1, 1, 1]]
    # exact multiples do not round up: 0.5 * 6 = 3
    keep = keep_mask(torch.ones(1, 6, dtype=torch.bool), torch.arange(6.0)[None], valid,
                     torch.zeros(1, 6, dtype=torch.bool), 0.5)
    assert keep.tolist() == [[0, 0, 0, 1, 1, 1]]


@settings(max_examples=30, deadline=None)
@given(_pruning_case(), st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, 1.0]))
def test_keep_mask_properties(case, ratio):
    B, T, _, lengths, bits, seed = case
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    prunable = torch.tensor(bits)
    special = torch.rand(B, T, generator=g) < 0.2
    importance = torch.rand(B, T, generator=g)
    keep = keep_mask(prunable, importance, valid, special, ratio)
    assert not (keep & ~valid).any()
    assert not ((special | ~prunable) & valid & ~keep).any()  # protected tokens stay
    n_real = valid.sum(dim=1)
    for b in range(B):
        floor = math.ceil(ratio * int(n_real[b]) - 1e-6)
        base = valid[b] & (special[b] | ~prunable[b])
        assert int(keep[b].sum()) == max(floor, int(base.sum()))
        added = keep[b] & ~base
        dropped = valid[b] & ~keep[b]
        if added.any() and dropped.any():  # the most important prunable tokens were restored
            assert importance[b][added].min() >= importance[b][dropped].max()


def test_packed_attention_is_masked_attention_on_each_sequence():
    """Reduced precision's attention over packed rows, one sequence at a time, is the padded,
    masked attention of the fused kernel: same numbers (in fp32, where both are exact to rounding)
    and nothing leaks between neighbouring sequences."""
    torch.manual_seed(0)
    lengths, n_heads, H = [7, 1, 12, 5], 4, 32
    valid = torch.arange(12)[None, :] < torch.tensor(lengths)[:, None]  # (4, 12)
    q, k, v = (torch.randn(4, 12, H) for _ in range(3))  # padded (B, T, H)
    ref = torch.nn.functional.scaled_dot_product_attention(
        _heads(q, n_heads), _heads(k, n_heads), _heads(v, n_heads), attn_mask=valid[:, None, None, :])
    ref = ref.transpose(1, 2).reshape(4, 12, H)[valid]  # (N, H) real tokens
    packed = [t[valid] for t in (q, k, v)]  # (N, H) each
    out = packed_attention(*packed, lengths, n_heads, scaling=(H // n_heads) ** -0.5)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # a strided view (the int8 copy's fused projection) gives the same
    fused = torch.cat(packed, dim=1)  # (N, 3H)
    out_views = packed_attention(*fused.chunk(3, dim=1), lengths, n_heads, scaling=(H // n_heads) ** -0.5)
    torch.testing.assert_close(out_views, out, atol=0, rtol=0)
    # frozen context: each sequence also attends to its own frozen tokens' keys and values, no one else's
    counts = [2, 0, 3, 1]
    c_valid = torch.arange(3)[None, :] < torch.tensor(counts)[:, None]  # (4, 3)
    ck, cv = torch.randn(4, 3, H), torch.randn(4, 3, H)
    kv_valid = torch.cat([valid, c_valid], dim=1)  # (4, 15)
    ref = torch.nn.functional.scaled_dot_product_attention(
        _heads(q, n_heads), _heads(torch.cat([k, ck], 1), n_heads), _heads(torch.cat([v, cv], 1), n_heads),
        attn_mask=kv_valid[:, None, None, :]).transpose(1, 2).reshape(4, 12, H)[valid]
    out = packed_attention(*packed, lengths, n_heads, (H // n_heads) ** -0.5, (ck[c_valid], cv[c_valid], counts))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_bf16_layer_runs_attention_on_packed_rows_and_keeps_padding_zero(outside_engine):
    """A bf16 layer (packed attention) gives the fp32 layer's states on the real tokens within bf16
    rounding, with or without padding in the batch and with or without frozen context, and zeros in
    the padding slots."""
    torch.manual_seed(0)
    layer = outside_engine.encoder.layers[1]
    layer16 = copy.deepcopy(layer).to(torch.bfloat16)
    for lengths in ([30, 4, 28, 3], [30, 30]):
        valid = torch.arange(30)[None, :] < torch.tensor(lengths)[:, None]
        hidden = torch.randn(len(lengths), 30, outside_engine.encoder.hidden)
        c_valid = torch.arange(5)[None, :] < torch.tensor([5, 0, 2, 1][:len(lengths)])[:, None]
        context = Sequences(hidden=torch.randn(len(lengths), 5, outside_engine.encoder.hidden),
                            positions=torch.zeros(len(lengths), 5, dtype=torch.long), valid=c_valid)
        context16 = Sequences(hidden=context.hidden.bfloat16(), positions=context.positions, valid=c_valid)
        for ctx, ctx16 in ((None, None), (context, context16)):
            ref, _ = run_layer(layer, hidden, valid, context=ctx)
            out, _ = run_layer(layer16, hidden.bfloat16(), valid, context=ctx16)
            assert not out[~valid].any()
            torch.testing.assert_close(out[valid].float(), ref[valid], atol=0.1, rtol=0.05)
