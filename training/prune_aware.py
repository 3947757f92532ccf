"""Pruning-aware fine-tuning: train the encoder with token removal in the loop.

Pruning after layer k takes context away from the tokens that stay, and that is what costs F1:
the error analysis (results/error_analysis.json) traces 565 of the 599 errors pruning adds to
"context lost" — every token of the mention ran every layer, yet its label changed. A model that
only ever saw full sequences has no reason to make its kept tokens independent of the tokens the
controller removes. Training steps that remove them teach exactly that (the idea of Learned Token
Pruning, Kim et al., KDD 2022, with real removal instead of LTP's masking).

Which tokens leave during training mimics inference without needing exit heads or a controller:
tokens the current model itself labels O with p(O) >= ``confident_o`` (a no-grad dense pass in eval
mode: self-distilled, like the exit heads), of which a random share leaves, so the model sees light
and heavy pruning. Special tokens and padding never leave. The trainer (training/multicorpus.py,
``--prune-layers``) scores the kept tokens only: pruned tokens get their labels from the exit heads,
trained afterwards on the new backbone (training/train_exits.py). Layers run through :func:`bioprune.layer.run_layer`,
the same code inference runs (it applies hidden dropout in train mode, not attention dropout).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from bioprune.forward import Sequences, prune
from bioprune.layer import classify, embed, run_layer
from bioprune.labels import IGNORE_INDEX, LABEL_TO_ID


@dataclass(frozen=True)
class PruneAwareConfig:
    """How training steps prune (all probabilities in [0, 1])."""

    layers: tuple[int, ...] = (2,)  # pruning points to train for: one is drawn per pruned step
    step_probability: float = 0.5  # share of steps that prune; the others train the dense path
    confident_o: float = 0.9  # candidates: tokens the model itself labels O with at least this p(O)
    min_leave_share: float = 0.3  # each pruned step removes a share drawn uniformly in [min, max]
    max_leave_share: float = 1.0  # of the candidates


@torch.no_grad()
def leaving_candidates(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                       confident_o: float) -> torch.Tensor:
    """(B, T) bool: real, non-special tokens the model's own dense pass labels O with p(O) >= confident_o."""
    was_training = model.training
    model.eval()
    probs = model(input_ids=input_ids, attention_mask=attention_mask).logits.softmax(dim=-1)  # (B, T, C)
    model.train(was_training)
    special = labels == IGNORE_INDEX  # [CLS], [SEP] and padding carry no tag
    return attention_mask.bool() & ~special & (probs[..., LABEL_TO_ID["O"]] >= confident_o)


Kept = tuple[torch.Tensor, torch.Tensor]  # positions (B, T') of the tokens still in the sequence, valid (B, T')


def pruned_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, leave: torch.Tensor,
                   layer: int) -> tuple[torch.Tensor, Kept]:
    """Logits (B, T', C) of the tokens kept when those in ``leave`` (B, T) are removed after ``layer``
    layers, and where they were (:func:`at_kept` gathers labels for them)."""
    B, T = input_ids.shape
    seqs = Sequences(hidden=embed(model, input_ids), positions=torch.arange(T, device=input_ids.device).expand(B, T),
                     valid=attention_mask.bool())
    for i, block in enumerate(model.base_model.encoder.layer):
        if i == layer:
            seqs = prune(seqs, seqs.valid & ~leave.gather(1, seqs.positions))
        seqs = replace(seqs, hidden=run_layer(block, seqs.hidden, seqs.valid)[0])
    return classify(model, seqs.hidden), (seqs.positions, seqs.valid)


def at_kept(x: torch.Tensor, kept: Kept | None, fill) -> torch.Tensor:
    """``x`` (B, T, ...) at the kept tokens (B, T', ...), ``fill`` where a row has fewer; ``x`` itself
    when nothing was pruned (``kept`` None)."""
    if kept is None:
        return x
    positions, valid = kept
    index = positions.reshape(*positions.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    mask = valid.reshape(*valid.shape, *([1] * (x.dim() - 2)))
    return x.gather(1, index).masked_fill(~mask, fill)


def step_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                 config: PruneAwareConfig | None, generator: torch.Generator) -> tuple[torch.Tensor, Kept | None]:
    """A training step's logits: the dense forward (B, T, C) and None, or (with
    ``config.step_probability``) a pruned one (B, T', C) and its kept tokens. ``labels`` (B, T) mark
    the special tokens and padding (IGNORE_INDEX), which never leave."""
    if config is None or torch.rand((), generator=generator) >= config.step_probability:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits, None
    candidates = leaving_candidates(model, input_ids, attention_mask, labels, config.confident_o)
    low, high = config.min_leave_share, config.max_leave_share
    share = low + (high - low) * float(torch.rand((), generator=generator))
    leave = candidates & (torch.rand(input_ids.shape, generator=generator).to(input_ids.device) < share)  # (B, T)
    layer = config.layers[int(torch.randint(len(config.layers), (), generator=generator))]
    return pruned_forward(model, input_ids, attention_mask, leave, layer)
