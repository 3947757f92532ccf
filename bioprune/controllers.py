"""Pruning controllers: which tokens leave at a pruning point. One interface, a registry.

A controller maps the token signals at a pruning point to a keep mask and an importance score
(higher = more needed by the deep layers). The floor ``min_keep_ratio`` and the protection of
special tokens and padding are applied here, the same way for every controller.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file
from torch import nn

from bioprune.config import PruningConfig
from bioprune.importance import TokenSignals, neighbourhood_max
from bioprune.model_files import save_tensors


class Controller(Protocol):
    needs_attention: bool  # whether it reads the attention signals (the layer before then runs eagerly)

    def importance(self, signals: TokenSignals, config: PruningConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """(prunable, importance), each (B, T): which tokens may leave, and how much each matters."""


class RuleController:
    """Thresholds over exit confidence, attention received and the neighbourhood (see PruningConfig).

    Importance is the exit head's entity probability 1 - p(O), nudged up for tokens whose own
    attention is focused (low normalised entropy) and for attention hubs, so the floor keeps
    those first.
    """

    needs_attention = True  # the hub check and the importance nudge read them

    def importance(self, signals: TokenSignals, config: PruningConfig):
        p_entity = 1.0 - signals.p_outside  # (B, T)
        confident = p_entity <= config.exit_margin * config.aggressiveness
        not_hub = signals.attention_received <= config.hub_attention_ratio
        guarded = neighbourhood_max(p_entity, config.guard_window_tokens) >= config.guard_entity_prob
        prunable = confident & not_hub & ~guarded
        importance = p_entity + 1e-3 * (1.0 - signals.attention_entropy) + 1e-3 * signals.attention_received
        return prunable, importance


def attention_feature_columns(n_classes: int) -> tuple[int, ...]:
    """Where :func:`controller_features` puts the two attention signals (after the exit
    probabilities and entropy)."""
    return n_classes + 1, n_classes + 2


def controller_features(signals: TokenSignals) -> torch.Tensor:
    """(B, T, F) features the learned controller sees for each token at a pruning point.

    Exit-head probabilities and entropy, attention entropy and (log) attention received, a
    hidden-state summary, the token's relative position, how deep the pruning point is, and the
    neighbourhood's entity probability (max over 1 and 2 tokens on each side).
    """
    p_entity = 1.0 - signals.p_outside  # (B, T)
    layer = torch.full_like(p_entity, signals.layer_fraction)
    return torch.stack([
        *signals.exit_probs.unbind(dim=-1), signals.exit_entropy, signals.attention_entropy,
        signals.attention_received.clamp(min=0).log1p(), signals.hidden_norm, signals.relative_position, layer,
        neighbourhood_max(p_entity, 1), neighbourhood_max(p_entity, 2),
    ], dim=-1)


class LearnedController(nn.Module):
    """A small MLP scoring how unsafe it is to prune each token (``training/train_controller.py``).

    It reads :func:`controller_features` (standardised with training statistics) and outputs
    p(unsafe): the token's exit label disagrees with the dense model's final label, or the token
    is in or next to a dense entity. A token may leave when p(unsafe) <= threshold * λ, the
    threshold calibrated on held-out MEDLINE text against the dense model's predictions.

    ``columns`` picks which of :func:`controller_features` it reads (default: all). Without the
    attention signals (``uses_attention`` False) the layer before each pruning point runs fused
    attention instead of the eager per-sequence version the signals need: on 2 CPU threads that was
    the largest overhead of pruning at two points.
    """

    def __init__(self, n_features: int, hidden: int = 32, columns: list[int] | None = None,
                 uses_attention: bool = True):
        super().__init__()
        self.register_buffer("columns", torch.tensor(list(range(n_features)) if columns is None else columns))
        self.register_buffer("uses_attention", torch.tensor(bool(uses_attention)))
        self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("threshold", torch.tensor(0.01))

    def unsafe_logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std).squeeze(-1)  # (..., F) -> (...)

    @property
    def needs_attention(self) -> bool:
        return bool(self.uses_attention)

    @torch.no_grad()
    def importance(self, signals: TokenSignals, config: PruningConfig):
        features = controller_features(signals).index_select(-1, self.columns)  # (B, T, F)
        p_unsafe = torch.sigmoid(self.unsafe_logit(features))  # (B, T)
        threshold = config.mlp_threshold if config.mlp_threshold is not None else float(self.threshold)
        return p_unsafe <= threshold * config.aggressiveness, p_unsafe

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONTROLLER_FILE
        return save_tensors({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, path)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "LearnedController | None":
        path = Path(directory) / CONTROLLER_FILE
        if not path.is_file():
            return None
        state = load_file(str(path))
        n_features, hidden = state["mlp.0.weight"].shape[1], state["mlp.0.weight"].shape[0]
        controller = cls(n_features, hidden)
        state.setdefault("columns", controller.columns)  # files from before feature selection: every feature
        state.setdefault("uses_attention", controller.uses_attention)
        controller.load_state_dict(state)
        return controller.to(device).eval()


CONTROLLER_FILE = "controller.safetensors"


def load_controllers(directory: str | Path | None, device: str = "cpu") -> dict[str, Controller]:
    """The rule controller, plus the learned one when ``directory`` holds it."""
    learned = LearnedController.load(directory, device) if directory is not None and Path(directory).is_dir() else None
    return {"rule": RuleController(), **({"mlp": learned} if learned is not None else {})}


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
