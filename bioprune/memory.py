"""MemoryBuffer and recovery triggers: what was pruned, and when to put it back.

Pruned tokens keep the label their exit head gave them. The buffer keeps, for each batch, the
states at the first pruning point (all tokens, before anything left) plus where and when each token
left, which is all a recovery pass needs: re-insert the recovered tokens into the sequence at that
layer and re-run the later layers on the enlarged set — the Drop-and-Restore of the
Length-Adaptive Transformer (Kim & Cho, ACL 2021), applied only to the rows that need it.

Triggers (batched over the whole batch, no Python loop over rows):
  * entity_loss: a pruned token whose exit head still gave an entity ``loss_entity_prob`` or more,
    or a pruned token right next to a kept token predicted as an entity (its boundary could move);
  * entropy_spike: a kept token next to pruned ones whose final-layer label entropy is at least
    ``spike_entropy_nats`` (the context it lost may matter), in a sequence with at least
    ``spike_min_tokens`` of them: one uncertain token is common, many mark the sequences where
    pruning changed the most.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from bioprune.config import PruningConfig
from bioprune.encoder import Sequences
from bioprune.importance import neighbourhood_max

TRIGGERS = ("entity_loss", "entropy_spike")


@dataclass
class MemoryBuffer:
    """State to re-insert pruned tokens: states at the first pruning point and who left when.

    first_layer: the first pruning point (layers run before it); first_state: sequences at that
    point (all tokens); pruned_layer: (B, T) how many layers each token ran (0: never pruned);
    pruned_score: (B, T) importance when it left.
    """

    first_layer: int
    first_state: Sequences
    pruned_layer: torch.Tensor
    pruned_score: torch.Tensor

    @property
    def pruned(self) -> torch.Tensor:
        return self.pruned_layer > 0  # (B, T)


def recovery_triggers(probs: torch.Tensor, pruned: torch.Tensor, valid: torch.Tensor,
                      config: PruningConfig, outside_index: int = 0) -> dict[str, torch.Tensor]:
    """Per trigger, (B, T) the pruned tokens to re-insert.

    probs: (B, T, C) assembled label probabilities (exit-head ones for pruned tokens).
    """
    kept = valid & ~pruned
    p_entity = 1.0 - probs[..., outside_index]  # (B, T)
    is_entity = probs.argmax(dim=-1) != outside_index  # (B, T)
    entity_kept = (kept & is_entity).float()
    next_to_entity = (neighbourhood_max(entity_kept, 1) > 0) & config.loss_next_to_entity
    loss_points = pruned & ((p_entity >= config.loss_entity_prob) | next_to_entity)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1)  # (B, T)
    near_pruned = neighbourhood_max(pruned.float(), config.recovery_window_tokens) > 0
    spike_points = kept & near_pruned & (entropy >= config.spike_entropy_nats)  # (B, T)
    spike_points &= spike_points.sum(dim=1, keepdim=True) >= config.spike_min_tokens
    w = config.recovery_window_tokens
    return {
        "entity_loss": pruned & (loss_points | (neighbourhood_max(loss_points.float(), w) > 0)),
        "entropy_spike": pruned & (neighbourhood_max(spike_points.float(), w) > 0),
    }
