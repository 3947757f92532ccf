"""Layers trained for the pruned forward: the encoder after the pruning point, taught to give the
dense model's outputs on the tokens that stay when the others have left.

Pruning's disagreement with the dense model on real text comes from the tokens that stay: they lose
the context of the ones that left (docs/pruning.md, "Where the disagreement sits"); the leavers'
own exit labels are rarely wrong. So a model folder may carry a second copy of the layers after the
pruning point, ``pruned_layers.safetensors``: encoder layers ``first_layer``..L-1 and the
classifier, trained by ``training/distill_pruned.py`` against the dense model with everything
before that point frozen (embeddings, lower layers, exit heads, controller). Pruning decisions are
therefore the shipped model's own, and the dense model (``controller="none"``) never reads these
weights: it stays bit for bit what it was. The teacher is the model's own dense forward, so the
distillation is anchored to it (as in Learned Token Pruning's pruning-aware fine-tuning, Kim et al.,
KDD 2022, but on a separate copy of the upper layers rather than the model itself).

The engine runs them in a pruned forward whose first pruning point is ``first_layer`` with the
frozen-context setting they were trained with (:meth:`PrunedLayers.applies`); any other pruning,
or ``PruningConfig(trained_layers=False)``, runs the model's own layers.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from bioprune.config import PruningConfig
from bioprune.model_files import save_tensors

PRUNED_LAYERS_FILE = "pruned_layers.safetensors"


def upper_names(model: nn.Module, first_layer: int) -> list[str]:
    """State-dict names of ``model``'s encoder layers ``first_layer``.. and its classifier."""
    layer = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")
    return [name for name in model.state_dict()
            if name.startswith("classifier.") or ((m := layer.search(name)) and int(m.group(1)) >= first_layer)]


@dataclass(frozen=True, eq=False)
class PrunedLayers:
    """The upper layers' weights, where they start, and the frozen-context setting they learned with.

    state: tensors under the model's own state-dict names (``bert.encoder.layer.2.attention...``,
    ``classifier.weight``); saved at their own dtype (fp16 as shipped, like the model's weights),
    loaded into an fp32 model.
    """

    first_layer: int
    frozen_context: bool
    state: dict[str, torch.Tensor]

    def applies(self, config: PruningConfig) -> bool:
        """Whether a forward at ``config`` runs these layers: pruning on with ``trained_layers``,
        its first point at ``first_layer``, frozen context as in training."""
        return (config.enabled and config.trained_layers and min(config.prune_layers) == self.first_layer
                and config.frozen_context == self.frozen_context)

    @classmethod
    def from_model(cls, model: nn.Module, first_layer: int, frozen_context: bool) -> "PrunedLayers":
        """``model``'s own upper layers (the starting point of training)."""
        state = model.state_dict()
        return cls(first_layer, frozen_context, {n: state[n].detach().float().clone() for n in upper_names(model, first_layer)})

    def model(self, base: nn.Module) -> nn.Module:
        """A model that runs ``base``'s embeddings and first layers (shared, not copied) and these
        upper layers and classifier. Raises ValueError if the names do not match ``base``'s."""
        expected = set(upper_names(base, self.first_layer))
        if set(self.state) != expected:
            missing, extra = sorted(expected - set(self.state)), sorted(set(self.state) - expected)
            raise ValueError(f"{PRUNED_LAYERS_FILE} does not fit this model (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}); retrain it with training/distill_pruned.py")
        lower = (base.base_model.embeddings, *list(base.base_model.encoder.layer)[: self.first_layer])
        # deep-copy everything but the shared lower modules (the memo maps each to itself)
        out = copy.deepcopy(base, memo={id(m): m for module in lower for m in (module, *module.modules())}
                            | {id(p): p for module in lower for p in module.parameters()})
        device = next(base.parameters()).device
        out.load_state_dict({n: t.to(device) for n, t in self.state.items()}, strict=False)
        return out.eval()

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PRUNED_LAYERS_FILE
        return save_tensors({n: t.detach().contiguous().cpu() for n, t in self.state.items()}, path,
                            metadata={"first_layer": str(self.first_layer),
                                      "frozen_context": str(self.frozen_context).lower()})

    @classmethod
    def load(cls, directory: str | Path) -> "PrunedLayers | None":
        """The layers saved in ``directory``, or None if it has none."""
        path = Path(directory) / PRUNED_LAYERS_FILE
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "first_layer" not in meta or meta.get("frozen_context") not in ("true", "false"):
                raise ValueError(f"{path}: no first_layer/frozen_context metadata; write it with "
                                 "training/distill_pruned.py")
            state = {n: f.get_tensor(n) for n in f.keys()}
        return cls(int(meta["first_layer"]), meta["frozen_context"] == "true", state)
