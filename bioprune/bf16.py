"""The bf16 copy of a model, with its encoder Linear layers on oneDNN's pre-packed bf16 matmul.

    model16 = bf16_copy(model)   # every op bf16; on a CPU, encoder Linear layers pre-packed

A plain bf16 ``nn.Linear`` on the CPU hands oneDNN a row-major weight on every call, which it
re-lays out for its kernel each time; ``torch.ops.mkldnn._linear_pointwise`` with a weight
re-ordered once (``torch.ops.mkldnn._reorder_linear_weight``) skips that — the path PyTorch's own
CPU compiler (inductor, with freezing) lowers bf16 Linear layers to — and fuses the
feed-forward's GELU into the matmul, sparing a pass over its 4H-wide output. Same kernel, same
numbers as ``F.linear``; in a micro-benchmark on a 2-thread AVX-512 BF16 CPU a (5600 x 384) by
(384 x 1536) matmul took 8.5 ms instead of 12.5 (the end-to-end effect: docs/pruning.md, "Precision").
"""
from __future__ import annotations

import copy
import functools
import logging

import torch
from torch import nn

from bioprune.shapes import padded_rows

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def packed_bf16_available() -> bool:
    """Whether this torch has oneDNN's pre-packed linear and this CPU runs bf16 natively."""
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
                and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    except (AttributeError, RuntimeError):
        return False


def gelu_fusable(intermediate: nn.Module) -> bool:
    """Whether a BERT intermediate block applies the exact (erf) GELU, the one oneDNN fuses."""
    act = getattr(intermediate, "intermediate_act_fn", None)
    return type(act).__name__ == "GELUActivation" and not getattr(act, "use_gelu_python", False)


class PackedLinear(nn.Module):
    """A bf16 Linear layer on a oneDNN-packed weight; ``activation`` "gelu" fuses exact GELU.

    Input (..., K) bf16, output (..., N) bf16. The packed weight is an opaque oneDNN tensor: the
    module cannot be deep-copied or saved, so it lives only in :func:`bf16_copy`'s copies.
    """

    def __init__(self, linear: nn.Linear, activation: str = "none"):
        super().__init__()
        weight = linear.weight.detach().to(torch.bfloat16)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, None), persistent=False)
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        post = ("gelu", [], "none") if self.activation == "gelu" else ("none", [], "")
        rows = x.reshape(-1, self.in_features)  # (M, K)
        out = torch.ops.mkldnn._linear_pointwise(padded_rows(rows), self.packed, self.bias, *post)  # (M', N)
        return out[:rows.size(0)].view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def fused_qkv(attn: nn.Module) -> nn.Linear:
    """Q, K and V of a self-attention block as one nn.Linear (outputs side by side): one matmul
    where there were three."""
    return _side_by_side((attn.query, attn.key, attn.value))


def fused_kv(attn: nn.Module) -> nn.Linear:
    """K and V of a self-attention block as one nn.Linear: the keys and values of frozen context
    (pruned tokens, which ask no query) in one matmul (read by :func:`bioprune.layer.context_keys_values`)."""
    return _side_by_side((attn.key, attn.value))


def _side_by_side(parts: tuple[nn.Linear, ...]) -> nn.Linear:
    """One nn.Linear whose outputs are those of ``parts`` (same input), side by side."""
    linear = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), dtype=parts[0].weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([p.weight for p in parts]))
        linear.bias.copy_(torch.cat([p.bias for p in parts]))
    return linear


def pack_linears(model: nn.Module) -> int:
    """Replace, in place, every plain ``nn.Linear`` inside the encoder layers of a bf16 CPU model by
    a :class:`PackedLinear`, fusing GELU where the intermediate block's activation allows.
    Returns how many were packed (0 where :func:`packed_bf16_available` is False)."""
    if not packed_bf16_available():
        return 0
    count = 0
    for layer in model.base_model.encoder.layer:
        if isinstance(getattr(layer.intermediate, "dense", None), nn.Linear) and gelu_fusable(layer.intermediate):
            layer.intermediate = PackedLinear(layer.intermediate.dense, "gelu")
            count += 1
        for name, module in list(layer.named_modules()):
            if type(module) is nn.Linear:
                parent, _, child = name.rpartition(".")
                setattr(layer.get_submodule(parent) if parent else layer, child, PackedLinear(module))
                count += 1
    return count


def bf16_copy(model: nn.Module) -> nn.Module:
    """A bf16 copy of a ``*ForTokenClassification`` BERT; on a CPU with native bf16, Q/K/V fused
    into one projection (``attention.self.qkv``, read by :func:`bioprune.layer.project_qkv`), K/V
    into another for frozen context (``attention.self.kv``) and the encoder's Linear layers packed
    (:func:`pack_linears`). The source model is untouched."""
    out = copy.deepcopy(model).to(torch.bfloat16).eval()
    if next(out.parameters()).device.type == "cpu" and packed_bf16_available():
        for layer in out.base_model.encoder.layer:
            layer.attention.self.qkv = fused_qkv(layer.attention.self)
            layer.attention.self.kv = fused_kv(layer.attention.self)
        logger.info("bf16 copy: %d encoder Linear layers on packed oneDNN weights", pack_linears(out))
    return out
