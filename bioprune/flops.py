"""Analytic FLOPs of a BERT layer from actual sequence lengths (multiply-add = 2 FLOPs).

Per layer and sequence of n tokens, hidden size H, feed-forward size I (Kaplan et al. 2020, and
nanoGPT's ``estimate_mfu``, without the causal halving):
  linear:    2 n (4 H^2 + 2 H I)       Q, K, V, output projection and the two feed-forward matmuls
  attention: 2 * 2 n^2 H               QK^T and attention-times-V, quadratic in n
With m frozen context tokens (pruned tokens kept as keys and values): + 2 m (2 H^2) for their K and
V projections, and the attention term becomes 2 * 2 n (n + m) H.
Token heads (classifier, exit heads): 2 n H C. Embedding lookups, softmax, LayerNorm and GELU are
left out: they are linear in n and small. Padding is never counted: these are the FLOPs the model
needs, which a padded batch only approaches.

FLOPs saved are net of what pruning itself costs (:func:`flops_saved_ratio`), so they can be
negative: on a short document where no token leaves, the exit head at each pruning point is pure
overhead (2 n H C per point, about 0.02% of a MiniLM-L6 forward), and recovery re-runs layers.
"""
from __future__ import annotations


def layer_flops(n_tokens: int, hidden: int, intermediate: int, n_context: int = 0) -> int:
    """``n_context`` frozen tokens add only their key and value projections and their attention columns."""
    return (2 * n_tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * n_context * hidden * hidden
            + 4 * n_tokens * (n_tokens + n_context) * hidden)


def head_flops(n_tokens: int, hidden: int, n_classes: int) -> int:
    return 2 * n_tokens * hidden * n_classes


def dense_flops(n_tokens: int, n_layers: int, hidden: int, intermediate: int, n_classes: int) -> int:
    """FLOPs of the dense model on one sequence of ``n_tokens`` (special tokens included)."""
    return n_layers * layer_flops(n_tokens, hidden, intermediate) + head_flops(n_tokens, hidden, n_classes)


def flops_saved_ratio(flops: float, dense_flops: float) -> float:
    """1 - flops / dense_flops: the fraction of the dense model's FLOPs that pruning saved, net of its cost.

    Negative when pruning spent more than it saved: its exit heads run on every token present at a
    pruning point, so a document where nothing (or too little) leaves costs the dense FLOPs plus
    theirs (e.g. -0.00018 for a 6-layer H=384 model with one pruning point), and recovery re-runs
    later layers. Deliberately not clamped at 0: a clamp would hide a configuration whose recovery
    costs more than its pruning saves. 0.0 when there is nothing to compare with (dense_flops 0).
    Every report of FLOPs saved (traces, corpus summaries, CLI lines) is this one function.
    """
    return 1.0 - flops / dense_flops if dense_flops else 0.0


def format_flops_saved(ratio: float) -> str:
    """A FLOPs-saved ratio as a percentage for report lines, never "-0.0%": a small net cost (pruning
    removed less than its exit heads cost, see :func:`flops_saved_ratio`) keeps its digits and says so."""
    if -0.0005 < ratio < 0:
        return f"{ratio:.3%} (the exit heads cost more than pruning saved)"
    return f"{ratio:.1%}"
