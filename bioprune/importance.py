"""Token importance signals at a pruning point, as batched tensor ops.

From the attention of the layer that feeds the decision (computed per sequence, padding sliced off):
  * attention entropy of each token's own attention row, normalised by log(n): 1 = uniform,
    0 = all on one token (the signal the attention-entropy pruning design follows);
  * attention received: the mean over heads and queries of the attention a token gets, times n,
    so 1 is the uniform share and hubs score well above 1 (as in LTP, Kim et al., KDD 2022).
From the exit head at that layer (token-level early exit, TOKEE, Li et al., ACL 2021):
  * p(O), the probability the token is outside every entity, and the entropy of the exit
    distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch


@dataclass
class TokenSignals:
    """Per-token signals, each (B, T); padding rows hold neutral values."""

    attention_entropy: torch.Tensor  # normalised to [0, 1]
    attention_received: torch.Tensor  # multiples of the uniform share
    exit_probs: torch.Tensor  # (B, T, C) exit-head label probabilities
    p_outside: torch.Tensor  # exit p(O)
    exit_entropy: torch.Tensor  # nats
    hidden_norm: torch.Tensor  # L2 norm of the state / sqrt(H): a cheap hidden-state summary
    relative_position: torch.Tensor  # original position / real length, in [0, 1)
    layer_fraction: float  # layers run before this point / all layers


AttentionSignals = tuple[torch.Tensor, torch.Tensor]  # (entropy, received), each (B, T)


def row_attention_signals(scores: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(entropy (n,), received (nk,)) for one sequence of n queries over nk keys, no padding.

    scores: (nh, n, nk) attention logits (scaled), probs: their softmax. The entropy uses
    H = logsumexp(s) - sum(p * s), which needs no elementwise log over the n x n matrix (several
    times cheaper on CPU than ``entr``); and logsumexp(s) = max(s) - log(max(p)), since
    log p = s - logsumexp(s) at every key and the largest p sits at the largest s: two max passes
    instead of another exp over the matrix. ``scores`` is overwritten.
    """
    n = scores.size(-1)
    lse = scores.amax(dim=-1) - probs.amax(dim=-1).log()  # (nh, n); max p >= 1/nk, so the log is safe
    row_entropy = (lse - scores.mul_(probs).sum(dim=-1)).mean(dim=0)  # (n,): mean over heads, nats
    entropy = row_entropy / math.log(max(n, 2))
    received = probs.sum(dim=1).mean(dim=0)  # (nk,): attention each key gets from all queries, mean over heads
    return entropy, received


def token_signals(attention: AttentionSignals, exit_logits: torch.Tensor, valid: torch.Tensor,
                  hidden: torch.Tensor, positions: torch.Tensor, n_real: torch.Tensor,
                  layer_fraction: float, outside_index: int = 0) -> TokenSignals:
    """All signals at a pruning point; ``attention`` from :func:`bioprune.layer.run_layer`
    (``need_signals=True``) at the layer before, or None when the controller does not read them
    (both are then zeros); hidden (B, T, H), positions (B, T), n_real (B,)."""
    if attention is None:
        attention = (hidden.new_zeros(valid.shape, dtype=torch.float32),) * 2
    entropy, received = attention
    exit_probs = exit_logits.float().softmax(dim=-1)  # (B, T, C)
    # Padding reads as certain "outside": neighbourhood features of a sequence's last tokens must not
    # see whatever the exit head says about padding, or a padded batch prunes differently from batch 1.
    neutral = torch.zeros_like(exit_probs[0, 0])  # (C,)
    neutral[outside_index] = 1.0
    exit_probs = torch.where(valid[..., None], exit_probs, neutral)  # (B, T, C)
    exit_entropy = -(exit_probs * exit_probs.clamp(min=1e-12).log()).sum(dim=-1)  # (B, T)
    hidden_norm = hidden.float().norm(dim=-1) / hidden.size(-1) ** 0.5  # (B, T)
    relative_position = positions.float() / n_real.clamp(min=1).float()[:, None]  # (B, T)
    return TokenSignals(attention_entropy=entropy, attention_received=received, exit_probs=exit_probs,
                        p_outside=exit_probs[..., outside_index], exit_entropy=exit_entropy,
                        hidden_norm=hidden_norm, relative_position=relative_position,
                        layer_fraction=layer_fraction)


def neighbourhood_max(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T) max of ``x`` over the ``window`` tokens on each side, the token itself excluded."""
    if window <= 0:
        return torch.zeros_like(x)
    padded = torch.nn.functional.pad(x, (window, window), value=float("-inf"))  # (B, T + 2w)
    shifted = [padded[:, window + d: window + d + x.size(1)] for d in range(-window, window + 1) if d != 0]
    return torch.stack(shifted, dim=0).max(dim=0).values
