"""training/fidelity_tokens.py: token-label changes split by kept and pruned tokens, the dense
model's confidence on them, and how many abstracts a re-run must cover to reach an agreement."""
from __future__ import annotations

import numpy as np
import pytest

from training.fidelity_tokens import DocumentOutput, agreement, recovery_needed, recovery_orders, token_changes


def _doc(labels, confidence=None, pruned=None, entities=(), **flops):
    labels = np.array(labels)
    return DocumentOutput(labels=labels,
                          confidence=np.full(len(labels), 0.99) if confidence is None else np.array(confidence),
                          pruned=np.zeros(len(labels), bool) if pruned is None else np.array(pruned),
                          entities=frozenset(entities), **flops)


def test_changes_are_split_by_kept_and_pruned_and_read_the_dense_confidence():
    reference = [_doc([0, 1, 2, 0], confidence=[0.99, 0.6, 0.95, 0.99]), _doc([0, 0], confidence=[0.99, 0.99])]
    # doc 0: a kept token changes where dense was unsure (0.6), a pruned one where it was sure (0.99)
    outputs = [_doc([0, 2, 2, 1], pruned=[False, False, True, True]), _doc([0, 0], pruned=[True, False])]
    out = token_changes(reference, outputs)
    assert (out["kept_tokens"], out["kept_tokens_changed"]) == (3, 1)
    assert (out["pruned_tokens"], out["pruned_tokens_changed"]) == (3, 1)
    assert out["changed_tokens"] == 2
    assert out["changed_dense_unsure_ratio"] == pytest.approx(0.5)
    assert out["documents_with_change_ratio"] == pytest.approx(0.5)


def test_recovery_share_follows_the_order_and_the_oracle_takes_the_worst_first():
    e = [(0, 5, "Chemical"), (10, 15, "Disease"), (20, 25, "Chemical")]
    reference = [_doc([0], entities=e), _doc([0], entities=e[:1]), _doc([0], entities=e[:1])]
    outputs = [_doc([0], entities=[]), _doc([0], entities=e[:1]), _doc([0], confidence=[0.5], entities=[])]
    assert agreement(reference, reference) == 1.0
    assert agreement(reference, outputs) < 0.97
    orders = recovery_orders(reference, outputs)
    assert orders["oracle"][0] == 0  # three entities changed there
    assert orders["lowest_kept_confidence"][0] == 2  # its kept token is the least sure
    assert recovery_needed(reference, outputs, orders["oracle"], 0.97) == pytest.approx(2 / 3)
    assert recovery_needed(reference, outputs, [1, 0, 2], 0.97) == pytest.approx(1.0)  # the useless one first
    assert recovery_needed(reference, reference, [0, 1, 2], 0.97) == 0.0


def test_flops_saved_is_over_all_abstracts_and_zero_for_dense():
    outputs = [_doc([0], flops=60.0, dense_flops=100.0), _doc([0], flops=100.0, dense_flops=300.0)]
    assert token_changes(outputs, outputs)["flops_saved_ratio"] == pytest.approx(1 - 160 / 400)
    assert token_changes([_doc([0])], [_doc([0])])["flops_saved_ratio"] == 0.0
