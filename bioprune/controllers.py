"""Pruning controllers: which tokens leave at a pruning point. One interface, a registry.

A controller maps the token signals at a pruning point to a keep mask and an importance score
(higher = more needed by the deep layers). The floor ``min_keep_ratio`` and the protection of
special tokens and padding are applied here, the same way for every controller.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from bioprune.config import PruningConfig
from bioprune.importance import TokenSignals, neighbourhood_max


class Controller(Protocol):
    def importance(self, signals: TokenSignals, config: PruningConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """(prunable, importance), each (B, T): which tokens may leave, and how much each matters."""


class RuleController:
    """Thresholds over exit confidence, attention received and the neighbourhood (see PruningConfig).

    Importance is the exit head's entity probability 1 - p(O), nudged up for tokens whose own
    attention is focused (low normalised entropy) and for attention hubs, so the floor keeps
    those first.
    """

    def importance(self, signals: TokenSignals, config: PruningConfig):
        p_entity = 1.0 - signals.p_outside  # (B, T)
        confident = p_entity <= config.exit_margin * config.aggressiveness
        not_hub = signals.attention_received <= config.hub_attention_ratio
        guarded = neighbourhood_max(p_entity, config.guard_window_tokens) >= config.guard_entity_prob
        prunable = confident & not_hub & ~guarded
        importance = p_entity + 1e-3 * (1.0 - signals.attention_entropy) + 1e-3 * signals.attention_received
        return prunable, importance


CONTROLLERS: dict[str, Controller] = {"rule": RuleController()}


def register_controller(name: str, controller: Controller) -> None:
    CONTROLLERS[name] = controller


def keep_mask(prunable: torch.Tensor, importance: torch.Tensor, valid: torch.Tensor, special: torch.Tensor,
              min_keep_ratio: float, n_real: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) tokens that stay: all but the prunable ones, topped up to the floor by importance.

    Special tokens and (trivially) padding never leave; at least ``ceil(min_keep_ratio * n)`` stay,
    n being each sequence's real tokens before any pruning (``n_real``, (B,); default: the tokens
    present now), the most important prunable ones filling the gap.
    """
    prunable = prunable & valid & ~special
    keep = valid & ~prunable
    n_real = valid.sum(dim=1) if n_real is None else n_real  # (B,)
    floor = torch.ceil(n_real.float() * min_keep_ratio - 1e-6).long()  # (B,)
    deficit = (floor - keep.sum(dim=1)).clamp(min=0)  # (B,)
    if int(deficit.max()) > 0:
        score = importance.masked_fill(~prunable, -math.inf)  # only prunable tokens can be restored
        rank = score.argsort(dim=1, descending=True).argsort(dim=1)  # (B, T) 0 = most important
        keep = keep | (prunable & (rank < deficit[:, None]))
    return keep
