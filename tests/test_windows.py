"""Sliding windows over long documents: planning, ownership of overlapping tokens, and the merge."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bioprune.windows import merge_windows, plan_windows, window_owners


@st.composite
def window_params(draw):
    max_tokens = draw(st.integers(1, 600))
    overlap = draw(st.integers(0, max_tokens - 1))
    n_tokens = draw(st.one_of(st.integers(0, 2 * max_tokens + 3), st.integers(0, 5000)))
    return n_tokens, max_tokens, overlap


@pytest.mark.parametrize("n, max_tokens, overlap, windows", [
    (0, 510, 128, [(0, 0)]),  # zero tokens: one empty window
    (1, 510, 128, [(0, 1)]), (100, 510, 128, [(0, 100)]), (510, 510, 128, [(0, 510)]),  # short: one window
    (511, 510, 128, [(0, 510), (1, 511)]),  # one token too many: two windows
    (1000, 510, 128, [(0, 510), (382, 892), (490, 1000)]),  # step 382, the last window flush to the end
    (10, 4, 0, [(0, 4), (4, 8), (6, 10)]), (12, 4, 0, [(0, 4), (4, 8), (8, 12)]),
])
def test_plan_windows(n, max_tokens, overlap, windows):
    assert plan_windows(n, max_tokens, overlap) == windows


@pytest.mark.parametrize("max_tokens, overlap", [(0, 0), (-1, 0), (4, 4), (4, 5), (4, -1)])
def test_invalid_parameters(max_tokens, overlap):
    with pytest.raises(ValueError):
        plan_windows(10, max_tokens, overlap)


@settings(max_examples=300, deadline=None)
@given(window_params())
def test_plan_windows_properties(params):
    n, max_tokens, overlap = params
    windows = plan_windows(n, max_tokens, overlap)
    if n <= max_tokens:
        assert windows == [(0, n)]
        return
    assert windows[0][0] == 0 and windows[-1][1] == n
    for s, e in windows:
        assert 0 <= s < e <= n and e - s == max_tokens  # every window is full and within bounds
    for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
        assert s1 < s2  # strictly increasing: no duplicate windows
        assert s2 <= e1  # no gap: every token is covered
        assert e1 - s2 >= overlap  # consecutive windows share at least ``overlap`` tokens
    covered = np.zeros(n, dtype=bool)
    for s, e in windows:
        covered[s:e] = True
    assert covered.all()
    step = max_tokens - overlap
    assert len(windows) == math.ceil((n - max_tokens) / step) + 1  # no more windows than needed


@pytest.mark.parametrize("n, windows, owners", [
    (16, [(0, 10), (6, 16)], [0] * 8 + [1] * 8),  # the most central window
    (5, [(0, 4), (1, 5)], [0, 0, 0, 1, 1]),  # token 2 is 1 from an edge in both: the earlier window owns it
    (7, [(0, 7)], [0] * 7), (0, [(0, 0)], []),
])
def test_window_owners(n, windows, owners):
    assert window_owners(n, windows).tolist() == owners


@settings(max_examples=200, deadline=None)
@given(window_params())
def test_window_owners_properties(params):
    n, max_tokens, overlap = params
    windows = plan_windows(n, max_tokens, overlap)
    owners = window_owners(n, windows)
    assert owners.shape == (n,)
    assert np.array_equal(owners, window_owners(n, list(windows)))  # deterministic
    assert np.all(np.diff(owners) >= 0)  # ownership moves forward through the document
    for t in range(n):
        s, e = windows[owners[t]]
        assert s <= t < e
        margin = min(t - s, e - 1 - t)
        for w, (s2, e2) in enumerate(windows):
            if s2 <= t < e2:
                other = min(t - s2, e2 - 1 - t)
                assert margin >= other
                if other == margin:
                    assert owners[t] <= w  # earliest among the most central


@settings(max_examples=150, deadline=None)
@given(window_params(), st.integers(2, 6))
@example((0, 510, 128), 5)  # an empty document: one empty window, a (0, C) result
def test_merge_reproduces_probabilities_when_windows_agree(params, n_classes):
    n, max_tokens, overlap = params
    windows = plan_windows(n, max_tokens, overlap)
    probs = np.random.default_rng(n).random((n, n_classes)).astype(np.float32)
    merged = merge_windows(n, windows, [probs[s:e] for s, e in windows])
    assert merged.dtype == np.float32 and merged.shape == (n, n_classes)
    np.testing.assert_array_equal(merged, probs)


def test_merge_takes_each_token_from_its_owner():
    windows = plan_windows(20, 8, 3)
    parts = [np.full((e - s, 3), float(w)) for w, (s, e) in enumerate(windows)]
    merged = merge_windows(20, windows, parts)
    owners = window_owners(20, windows)
    np.testing.assert_array_equal(merged[:, 0], owners.astype(float))
    assert set(owners.tolist()) == set(range(len(windows)))  # every window contributes
