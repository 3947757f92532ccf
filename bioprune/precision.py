"""Numeric precision of the forward pass: which one runs on this machine.

    resolve_precision("auto", "cpu")        # "bf16" on a CPU with native bf16 (AVX-512 BF16, AMX), else "fp32"
    resolve_precision("auto", "cpu", calibrated_int8=True)   # "mixed" there: the default operating point

Pruning removes tokens; precision makes each remaining token cheaper, so the two multiply. bf16
runs on a bf16 copy of the weights (:meth:`bioprune.forward.PrunedEncoder.weights_at`); on the
shipped model it changed 0.3% of the dense model's entities on held-out MEDLINE and nothing
measurable on BC5CDR (docs/pruning.md, "Precision"). ``"fp32"`` is bit for bit the dense fp32 model.

``"int8"`` (:mod:`bioprune.int8`, CPU only) runs the encoder's Linear layers as per-token int8 ×
per-channel int8 matmuls in oneDNN on an int8 copy, the rest in bf16. ``"mixed"`` (CPU only) is
per-layer precision: int8 in every encoder layer but those the model's int8 calibration keeps in
bf16 (:func:`bioprune.int8.mixed_int8_layers`), chosen so that the default operating point keeps
its bf16 agreement with dense fp32 (training/calibrate_int8.py). So ``"auto"`` runs mixed at the
default operating point where the CPU has native bf16 and oneDNN's int8 matmul and the model
carries that calibration (the caller says so: ``calibrated_int8``,
:meth:`bioprune.forward.PrunedEncoder.precision_at`), and bf16 elsewhere: the dense model and
other pruning settings, whose int8 cost was not what the calibration bounded (the dense model's
int8 changes about 1% more of its entities than bf16; docs/pruning.md, "int8").

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


@functools.lru_cache(maxsize=None)
def native_int8(device_type: str) -> bool:
    """Whether ``device_type`` runs :mod:`bioprune.int8`'s matmul: a CPU whose torch has oneDNN's int8
    linear (x86 CPU builds do)."""
    import torch

    return (device_type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qlinear_pointwise"))


def resolve_precision(requested: str, device: str | torch.device, has_native_bf16=None,
                      calibrated_int8: bool = False, has_native_int8=None) -> str:
    """The precision that will run (``"fp32"``, ``"bf16"``, ``"int8"`` or ``"mixed"``) for ``requested`` on ``device``.

    ``"auto"`` is bf16 where the device has native bf16 (``has_native_bf16(device_type)``, default
    :func:`native_bf16`; a test passes its own probe), else fp32; and mixed instead of bf16 when
    ``calibrated_int8`` (the default operating point on a model whose int8 calibration chose the
    layers mixed keeps bf16) and the device runs the int8 matmul (``has_native_int8``, default
    :func:`native_int8`). ``"bf16"`` without native support runs fp32 and warns
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
        if native and calibrated_int8 and device_type == "cpu" and (has_native_int8 or native_int8)(device_type):
            return "mixed"
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        warnings.warn(PrecisionFallbackWarning(
            f"precision bf16: this {device_type} has no native bf16 (emulated bf16 is slower than fp32); "
            "running fp32 instead"), stacklevel=2)
        return "fp32"
    return requested
