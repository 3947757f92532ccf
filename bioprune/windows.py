"""Sliding windows over long documents and the deterministic merge of their predictions.

A BERT encoder sees at most 512 positions (510 content tokens plus [CLS] and [SEP]). Longer
documents are cut into windows that overlap by ``overlap_tokens``; every token takes its prediction
from the window in which it lies furthest from an edge (most context on both sides), the earlier
window on ties, so the merge does not depend on batch order.
"""
from __future__ import annotations

import numpy as np


def plan_windows(n_tokens: int, max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` token ranges covering ``range(n_tokens)``; one empty range if 0."""
    if max_tokens <= 0 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"need 0 <= overlap_tokens ({overlap_tokens}) < max_tokens ({max_tokens})")
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max_tokens - overlap_tokens
    starts = list(range(0, n_tokens - max_tokens, step)) + [n_tokens - max_tokens]
    return [(s, s + max_tokens) for s in starts]


def window_owners(n_tokens: int, windows: list[tuple[int, int]]) -> np.ndarray:
    """(n_tokens,) index of the window each token takes its prediction from."""
    positions = np.arange(n_tokens)[:, None]  # (T, 1)
    starts = np.array([s for s, _ in windows])[None, :]  # (1, N)
    ends = np.array([e for _, e in windows])[None, :]
    inside = (positions >= starts) & (positions < ends)  # (T, N)
    margin = np.where(inside, np.minimum(positions - starts, ends - 1 - positions), -1)  # (T, N)
    return margin.argmax(axis=1)  # argmax takes the first (earliest) window on ties


def merge_windows(n_tokens: int, windows: list[tuple[int, int]], window_probs: list[np.ndarray]) -> np.ndarray:
    """(n_tokens, C) document probabilities from per-window (len_i, C) probabilities."""
    n_classes = window_probs[0].shape[1]
    merged = np.zeros((n_tokens, n_classes), dtype=window_probs[0].dtype)
    owners = window_owners(n_tokens, windows)
    for w, ((start, end), probs) in enumerate(zip(windows, window_probs)):
        mine = np.nonzero(owners[start:end] == w)[0]
        merged[start + mine] = probs[mine]
    return merged
