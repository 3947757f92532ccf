"""Numeric precision of the forward pass: which one runs on this machine.

    resolve_precision("auto", "cpu")        # "bf16" on a CPU with native bf16 (AVX-512 BF16, AMX), else "fp32"

Pruning removes tokens; precision makes each remaining token cheaper, so the two multiply. bf16
runs on a bf16 copy of the weights (:meth:`bioprune.forward.PrunedEncoder.weights_at`); on the
shipped model it changed 0.3% of the dense model's entities on held-out MEDLINE and nothing
measurable on BC5CDR (docs/pruning.md, "Precision"). ``"fp32"`` is bit for bit the dense fp32 model.

``"int8"`` (:mod:`bioprune.int8`, CPU only) runs the encoder's Linear layers as dynamic-u8 ×
per-channel-s8 matmuls in oneDNN on an int8 copy, the rest in bf16; it is opt-in, not what
``"auto"`` picks (docs/pruning.md, "Precision", has its speed and agreement). ``"mixed"`` (CPU
only) is per-layer precision: int8 in every encoder layer but those the model's int8 calibration
keeps in bf16 (:func:`bioprune.int8.mixed_int8_layers`: the layers whose int8 changes the most
entities). Both are opt-in: their activation ranges are taken over the whole batch, so a document's
entities can depend on the documents that share its batch, which fp32 and bf16 never do.

Emulated bf16 (a CPU without native bf16 instructions) is several times *slower* than fp32, so
``"bf16"`` there runs fp32 with a warning naming the fallback, and ``"auto"`` picks fp32.
"""
from __future__ import annotations

import functools
import logging
import warnings
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch loads when a precision is resolved, not when the config is imported
    import torch

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8", "mixed"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8", "mixed")
CPU_ONLY: frozenset[str] = frozenset({"int8", "mixed"})  # on oneDNN's int8 matmul


class PrecisionFallbackWarning(UserWarning):
    """The requested precision cannot run natively here; the message names what runs instead."""


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` ("cpu", "cuda", ...) has native bf16 matmuls in this torch.

    CPU: oneDNN's own check (AVX-512 BF16 / AMX). CUDA: ``torch.cuda.is_bf16_supported()``
    (Ampere and newer). Anything else: False.
    """
    import torch

    if device_type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch without oneDNN
            return False
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_precision(requested: str, device: str | torch.device, has_native_bf16=None) -> str:
    """The precision that will run (``"fp32"``, ``"bf16"``, ``"int8"`` or ``"mixed"``) for ``requested`` on ``device``.

    ``"auto"`` is bf16 where the device has native bf16 (``has_native_bf16(device_type)``, default
    :func:`native_bf16`; a test passes its own probe), else fp32. ``"bf16"`` without native support runs fp32 and warns
    (:class:`PrecisionFallbackWarning`). ``"int8"`` and ``"mixed"`` (:mod:`bioprune.int8`) are CPU
    only: ValueError on another device, as for an unknown name.
    """
    import torch

    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    device_type = torch.device(device).type
    if requested in CPU_ONLY:
        if device_type != "cpu":
            raise ValueError(f"precision {requested} runs on the CPU only (oneDNN); on {device_type} use bf16 or auto")
        return requested
    native = (has_native_bf16 or native_bf16)(device_type)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        warnings.warn(PrecisionFallbackWarning(
            f"precision bf16: this {device_type} has no native bf16 (emulated bf16 is slower than fp32); "
            "running fp32 instead"), stacklevel=2)
        return "fp32"
    return requested
