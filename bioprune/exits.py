"""Exit heads: a linear token classifier on the states after k layers, one per pruning point.

Pruned tokens take their label from the exit head where they left (token-level early exit, TOKEE,
Li et al., ACL 2021); the head's p(O) is also the controller's main signal. Heads are trained on a
frozen backbone by ``training/train_exits.py`` and stored beside the model as
``exit_heads.safetensors`` (tensors ``{k}.weight`` (C, H) and ``{k}.bias`` (C,)).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from bioprune.model_files import save_tensors

EXIT_HEADS_FILE = "exit_heads.safetensors"


class ExitHeads(nn.Module):
    """Linear heads keyed by the number of layers run before them."""

    def __init__(self, layers: list[int], hidden: int, n_classes: int):
        super().__init__()
        self.heads = nn.ModuleDict({str(k): nn.Linear(hidden, n_classes) for k in sorted(layers)})

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(int(k) for k in self.heads))

    def forward(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.heads[str(layer)](hidden)  # (B, T, H) -> (B, T, C)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / EXIT_HEADS_FILE
        tensors = {f"{k}.{name}": p.detach().contiguous().cpu()
                   for k, head in self.heads.items() for name, p in head.named_parameters()}
        return save_tensors(tensors, path)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "ExitHeads | None":
        """The heads saved in ``directory``, or None if it has none."""
        path = Path(directory) / EXIT_HEADS_FILE
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        layers = sorted({int(name.split(".")[0]) for name in tensors})
        n_classes, hidden = tensors[f"{layers[0]}.weight"].shape
        heads = cls(layers, hidden, n_classes)
        heads.load_state_dict({f"heads.{k}": v.float() for k, v in tensors.items()})
        return heads.to(device).eval()
