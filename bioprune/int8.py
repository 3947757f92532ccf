"""int8 linear layers for the CPU: dynamic activation quantization over oneDNN's int8 matmul.

    model8 = int8_copy(model)   # encoder Linear layers int8, everything else bf16

The recipe is ONNX Runtime's dynamic quantization, which kept BC5CDR F1 where ``torch.ao``'s
per-tensor weights lost 1.4 points: weights int8 symmetric **per output channel**, quantized once;
activations int8 symmetric **per row** (per token), each row's scale computed on each call from
its own largest magnitude (:func:`quantize_rows_in_torch`), so that a token's result depends on its own
values only, never on the batch it shares — after per-channel smoothing (:func:`smoothing`,
SmoothQuant) by input ranges calibrated once on diverse unlabelled text and kept beside the model
(:data:`CALIBRATION_FILE`, training/calibrate_int8.py), which moves the few outlier channels of
BERT's layer-norm outputs into the weights. The product runs as u8×s8 on AVX-512 VNNI (four
multiply-adds per lane where bf16 does two; the int8 levels stored as uint8 + 128), in one
compiled call per layer (:func:`bioprune.cpu_kernels.int8_linear`): it quantizes the rows,
multiplies on VPDPBUSD and applies each row's scale, the bias and (for the feed-forward's first
layer) GELU in registers, writing bf16. Where the kernels cannot run, the same numbers come from
torch ops around ``torch.ops.onednn.qlinear_pointwise`` — the op PyTorch's own x86 int8 path
(inductor) lowers to, so it is maintained in core, unlike the deprecated ``torch.ao`` quantized
tensors. That op takes one activation scale per call, so there it writes the products with the
weight scales applied in fp32, :data:`CHUNK_ROWS` rows at a time, and a pass over them applies each
row's scale, the bias and GELU (:func:`dequantize_rows_in_torch`).

Only the encoder's Linear layers go int8 (~90% of a layer's FLOPs); embeddings, layer norms,
attention itself (scores, softmax, context: :func:`bioprune.layer.packed_attention` in bf16),
the classifier and the exit heads stay as they were, in bf16, and so does the feed-forward's
second layer (:data:`KEEP_BF16`: per-layer precision, for the one input that quantizes badly), on
:mod:`bioprune.bf16`'s pre-packed bf16 matmul.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from bioprune import cpu_kernels
from bioprune.bf16 import fused_kv, fused_qkv, gelu_fusable, pack_linears
from bioprune.model_files import save_tensors
from bioprune.precision import native_int8
from bioprune.shapes import padded_rows

logger = logging.getLogger(__name__)

_SQRT_HALF = 0.7071067811865476
ROW_ZERO_POINT = 128  # per-row activations: symmetric int8 levels -127..127 stored as uint8 + 128
# A per-row layer runs its matmul this many rows at a time, so that the fp32 products are read back
# for their row scales while they are still in cache
CHUNK_ROWS = 512

# Linear layers kept in bf16 by default, named within a layer. The feed-forward's second layer reads
# the GELU output, 4x wider than any other input and with outlier features: with it int8, entity
# agreement with dense fp32 on the first MEDLINE half fell from 0.990 to 0.978 (smoothed, alpha
# 0.85; results/int8_calibration.json), and quantizing its wide input on every call cost more time
# than its int8 matmul saved.
KEEP_BF16: frozenset[str] = frozenset({"output.dense"})

CALIBRATION_FILE = "int8_calibration.safetensors"  # beside the model: the input ranges smoothing needs
BF16_LAYERS_KEY = "mixed.bf16_layers"  # in CALIBRATION_FILE: (k,) int64, the encoder layers precision "mixed" keeps bf16
# training/calibrate_int8.py keeps layers bf16 until "mixed" agrees with dense fp32 within this many
# points of bf16's agreement (first MEDLINE half, the default config)
MIXED_TOLERANCE_POINTS = 0.1
# How much of the activations' range moves into the weights (:func:`smoothing`): the best of 0.75,
# 0.85 and 0.95 on the first MEDLINE half (results/int8_calibration.json).
SMOOTHING_ALPHA = 0.85


def quantize_rows_in_torch(x: torch.Tensor, inv_smooth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) float -> (M, K) uint8 with zero point 128, (M,) fp32 scales: each row on its own range.

    Symmetric per row (per token): ``x * inv_smooth`` divided by its row's largest magnitude / 127,
    rounded, + 128. A row's levels depend on that row alone, so a token's int8 result does not
    depend on the other tokens in its batch (a per-tensor range did: an abstract's entities moved
    with the batch it shared). In torch ops, any float dtype; :func:`bioprune.cpu_kernels.int8_linear`
    quantizes a bf16 input inside its call, bit for bit the same.
    """
    xs = x.to(torch.float32, copy=True)  # (M, K)
    xs = xs if inv_smooth is None else xs.mul_(inv_smooth)
    scales = (xs.abs().amax(dim=1) / 127).clamp(min=1e-8)  # (M,)
    q = xs.mul_((1.0 / scales)[:, None]).round_().clamp_(-127, 127).add_(ROW_ZERO_POINT).to(torch.uint8)
    return q, scales


def dequantize_rows_in_torch(acc: torch.Tensor, row_scales: torch.Tensor, bias: torch.Tensor | None, gelu: bool,
                             out: torch.Tensor) -> torch.Tensor:
    """``out`` (M, N) = ``acc * row_scales[:, None] + bias``, then exact GELU if ``gelu``, in
    ``out``'s dtype: the end of a per-row int8 Linear layer in torch ops. GELU as ``0.5 y erfc(-y/√2)``,
    not ``F.gelu``'s ``0.5 y (1 + erf(y/√2))``, whose sum cancels the digits of a negative input's
    small result (8% of bf16 GELU outputs of N(0, 9) inputs off the correctly rounded value, against
    under 0.01% this way and in the compiled kernel)."""
    y = acc * row_scales[:, None]  # (M, N) fp32
    y = y if bias is None else y.add_(bias)
    return out.copy_(y.mul(0.5).mul_(torch.special.erfc(y * -_SQRT_HALF)) if gelu else y)


# the one activation scale and zero point oneDNN sees: the rows' own scales are applied after it
_UNIT_SCALE, _ROW_ZERO = torch.tensor(1.0), torch.tensor(ROW_ZERO_POINT)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> (N, K) int8 and (N,) fp32 scales, symmetric per output channel."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (N,)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


VNNI_COLUMNS, VNNI_DEPTH = 64, 4  # the compiled kernel's weight blocks: 64 columns, 4 input channels per lane


def vnni_pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) int8 weights -> the layout :func:`bioprune.cpu_kernels.int8_linear` reads and its
    zero-point compensation: (N'/64, K'/4, 4, 16, 4) int8 — per 64-column block, per 4 input
    channels, four vectors of 16 columns × 4 channels (what one VPDPBUSD multiplies) — with N and K
    padded to N' and K' (multiples of 64 and 4) by zero weights; and (N',) int32 ``128 × sum_k w``,
    what the inputs' zero point 128 adds to each column's products."""
    N, K = weight.shape
    n_pad, k_pad = -N % VNNI_COLUMNS, -K % VNNI_DEPTH
    w = torch.nn.functional.pad(weight, (0, k_pad, 0, n_pad))  # (N', K')
    blocks = w.view(w.size(0) // VNNI_COLUMNS, VNNI_COLUMNS // 16, 16, w.size(1) // VNNI_DEPTH, VNNI_DEPTH)
    comp = w.sum(dim=1, dtype=torch.int32) * ROW_ZERO_POINT  # (N',)
    return blocks.permute(0, 3, 1, 2, 4).contiguous(), comp


def vnni_unpack(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """:func:`vnni_pack`'s layout -> the (n, k) int8 weights."""
    return packed.permute(0, 2, 3, 1, 4).reshape(-1, packed.size(1) * VNNI_DEPTH)[:n, :k].contiguous()


class Int8Linear(nn.Module):
    """A Linear layer whose forward is per-row dynamic int8 activations × per-channel s8 weights.

    ``activation`` "gelu" fuses the exact (erf) GELU that BERT's intermediate layer applies.
    Input (..., K) in any float dtype; output (..., N) bf16. One compiled call where the CPU kernels
    run (:func:`bioprune.cpu_kernels.int8_linear`), else torch ops around oneDNN's int8 matmul:
    the same numbers (GELU within its stated tolerance).
    """

    def __init__(self, linear: nn.Linear, activation: str = "none", smooth: torch.Tensor | None = None):
        super().__init__()
        w = linear.weight.detach().float()
        weight, scale = quantize_weight(w if smooth is None else w * smooth[None, :])
        self.register_buffer("inv_smooth", None if smooth is None else 1.0 / smooth.float(), persistent=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        vnni, comp = vnni_pack(weight)
        n_padded = comp.numel()
        # the weights in one layout: the kernel's where it runs, else oneDNN's (built on first need)
        self.register_buffer("vnni", vnni if cpu_kernels.library() is not None else None, persistent=False)
        self.register_buffer("comp", comp, persistent=False)  # (N',) int32
        self._onednn = None if self.vnni is not None else torch.ops.onednn.qlinear_prepack(weight, None)
        self.register_buffer("scale", torch.nn.functional.pad(scale, (0, n_padded - scale.numel())),
                             persistent=False)  # (N',) fp32, 0 past N
        bias = (torch.nn.functional.pad(linear.bias.detach().float(), (0, n_padded - self.out_features))
                if linear.bias is not None else None)
        self.register_buffer("bias", bias, persistent=False)  # (N',) fp32, added with the row scales; 0 past N
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)  # (M, K)
        if self.vnni is not None and cpu_kernels.int8_linear_fits(rows) and cpu_kernels.library() is not None:
            out = cpu_kernels.int8_linear(rows, self.vnni, self.comp, self.scale, self.bias, self.out_features,
                                          self.activation == "gelu", self.inv_smooth)  # (M, N)
        else:
            out = self.forward_in_torch(rows)
        return out.view(*shape[:-1], self.out_features)

    def forward_in_torch(self, rows: torch.Tensor) -> torch.Tensor:
        """(M, K) -> (M, N) bf16 in torch ops around oneDNN's u8 × s8 matmul."""
        M, N = rows.size(0), self.out_features
        if self._onednn is None:
            self._onednn = torch.ops.onednn.qlinear_prepack(vnni_unpack(self.vnni, N, self.in_features), None)
        q, row_scales = quantize_rows_in_torch(rows, self.inv_smooth)  # (M, K) uint8, (M,)
        out = torch.empty(M, N, dtype=torch.bfloat16)  # (M, N)
        scale, bias, zero = self.scale[:N], None if self.bias is None else self.bias[:N], torch.zeros(N, dtype=torch.long)
        for i in range(0, M, CHUNK_ROWS):
            q_part = q[i:i + CHUNK_ROWS]
            m = q_part.size(0)
            # rows on the shape grid (bioprune.shapes): the last chunk's count varies
            acc = torch.ops.onednn.qlinear_pointwise.tensor(
                padded_rows(q_part), _UNIT_SCALE, _ROW_ZERO, self._onednn, scale, zero, None,
                1.0, 0, torch.float32, "none", [], "")  # (m', N): the products times the weight scales
            dequantize_rows_in_torch(acc[:m], row_scales[i:i + m], bias, self.activation == "gelu", out[i:i + m])
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"



def smoothing(act_max: torch.Tensor, weight_max: torch.Tensor, alpha: float) -> torch.Tensor:
    """(K,) per-input-channel divisors ``s = act_max**alpha / weight_max**(1 - alpha)``.

    SmoothQuant (Xiao et al., ICML 2023): a few input channels of BERT's layers (layer-norm outputs
    above all) run 10-20x larger than the median in every token, so a token's int8 scale, set by
    them, leaves the others a handful of levels. Dividing channel k of the input by s_k and
    multiplying column k of the weight by it is exact in real numbers and moves the range from the
    activations, quantized per row, into the weights, quantized per output channel. act_max: the largest
    |input| of each channel seen on calibration text; weight_max: the largest |weight| of each column.
    """
    a = act_max.float().clamp(min=1e-5)
    w = weight_max.float().clamp(min=1e-5)
    return (a ** alpha / w ** (1.0 - alpha)).clamp(min=1e-5)  # (K,)


@contextlib.contextmanager
def recording_input_ranges(model: nn.Module):
    """Within the block, every encoder Linear layer of ``model`` records the largest |input| of each
    input channel into the yielded dict, keyed ``"{layer}.{name}"`` (``"0.intermediate.dense"``):
    run the model (e.g. ``engine.annotate``) on calibration text inside it."""
    ranges: dict[str, torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(model.base_model.encoder.layer):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                def hook(_module, inputs, _output, key=f"{i}.{name}"):
                    x = inputs[0].detach()
                    seen = x.reshape(-1, x.size(-1)).abs().amax(dim=0).float()  # (K,)
                    ranges[key] = seen if key not in ranges else torch.maximum(ranges[key], seen)
                hooks.append(module.register_forward_hook(hook))
    try:
        yield ranges
    finally:
        for h in hooks:
            h.remove()


def save_calibration(ranges: dict[str, torch.Tensor], directory: str | Path) -> Path:
    """Write the input ranges as ``CALIBRATION_FILE`` in ``directory`` (safetensors)."""
    path = Path(directory) / CALIBRATION_FILE
    return save_tensors({k: v.contiguous() for k, v in ranges.items()}, path)


def load_calibration(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The input ranges saved beside a model, or None when it has none."""
    path = Path(directory) / CALIBRATION_FILE
    return load_file(str(path)) if path.is_file() else None


def mixed_int8_layers(n_layers: int, ranges: Mapping[str, torch.Tensor] | None) -> tuple[int, ...] | None:
    """The encoder layers that precision "mixed" runs int8: all but those the model's calibration
    keeps in bf16 (``ranges[BF16_LAYERS_KEY]``); None when the calibration names none (no "mixed").

    int8 costs agreement with dense fp32 unevenly across depth: on the shipped MiniLM-L6, one layer
    costs most of it (layer 1; results/int8_calibration.json, "layers"). training/calibrate_int8.py
    keeps in bf16, one at a time, the layer whose int8 costs the most agreement on its calibration
    text, until the default is within :data:`MIXED_TOLERANCE_POINTS` of its bf16 agreement (the
    layer-wise sensitivity of Q-BERT, Shen et al., AAAI 2020, measured on outputs).
    """
    if ranges is None or BF16_LAYERS_KEY not in ranges:
        return None
    kept = set(ranges[BF16_LAYERS_KEY].tolist())
    return tuple(i for i in range(n_layers) if i not in kept)


def int8_copy(model: nn.Module, ranges: dict[str, torch.Tensor] | None = None,
              skip: frozenset[str] = KEEP_BF16, alpha: float = SMOOTHING_ALPHA,
              layers: Collection[int] | None = None) -> nn.Module:
    """A bf16 copy of a ``*ForTokenClassification`` BERT whose encoder Linear layers run int8.

    Per layer: Q, K and V as one int8 projection (``attention.self.qkv``, read by
    :func:`bioprune.layer.project_qkv`: their shared input is quantized once), K and V as another
    with the same smoothing for the keys and values of frozen context (``attention.self.kv``), the
    attention output, and the feed-forward with its GELU fused; Q, K and V go int8 together or
    not at all. ``ranges`` (:func:`recording_input_ranges`, saved beside the model as
    ``CALIBRATION_FILE``): each input is smoothed (:func:`smoothing`) with strength ``alpha``;
    None: no smoothing (and a warning: agreement with fp32 drops). ``skip``: Linear layers kept in
    bf16, named within a layer (``"output.dense"``, ``"attention.self.query"``, ...). ``layers``:
    the encoder layers that go int8 (None: all; :func:`mixed_int8_layers` for precision "mixed");
    the others are :func:`bioprune.bf16.bf16_copy`'s layers (Q, K, V fused, packed bf16). The
    source model is untouched.
    """
    if not native_int8("cpu"):
        raise RuntimeError("precision int8 needs a torch built with oneDNN (x86 CPU wheels are)")
    if ranges is None:
        logger.warning("int8 without calibration (%s beside the model; training/calibrate_int8.py makes it): "
                       "inputs are not smoothed and more entities differ from fp32", CALIBRATION_FILE)
    out = copy.deepcopy(model).to(torch.bfloat16).eval()

    def int8(i: int, names: tuple[str, ...], linear: nn.Linear, activation: str = "none") -> Int8Linear:
        smooth = None
        if ranges is not None:  # one input for all of ``names``: their columns' largest weights
            weight_max = torch.stack([model.base_model.encoder.layer[i].get_submodule(n).weight.detach().abs()
                                      .amax(dim=0) for n in names]).amax(dim=0)  # (K,)
            smooth = smoothing(ranges[f"{i}.{names[0]}"], weight_max, alpha)
        return Int8Linear(linear, activation=activation, smooth=smooth)

    qkv = ("attention.self.query", "attention.self.key", "attention.self.value")
    for i, layer in enumerate(out.base_model.encoder.layer):
        attn = layer.attention.self
        bf16_layer = layers is not None and i not in layers
        if bf16_layer or skip.intersection(qkv):  # Q, K and V in bf16: fused projections, packed below
            attn.qkv, attn.kv = fused_qkv(attn), fused_kv(attn)
        else:  # one input, one smoothing: Q, K and V's
            attn.qkv, attn.kv = int8(i, qkv, fused_qkv(attn)), int8(i, qkv, fused_kv(attn))
        if bf16_layer:
            continue
        for name in ("attention.output.dense", "output.dense"):
            if name not in skip:
                parent, _, child = name.rpartition(".")
                setattr(layer.get_submodule(parent), child, int8(i, (name,), layer.get_submodule(name)))
        if "intermediate.dense" not in skip:
            if gelu_fusable(layer.intermediate):
                layer.intermediate = int8(i, ("intermediate.dense",), layer.intermediate.dense, "gelu")  # GELU fused
            else:  # another activation: only the dense goes int8
                layer.intermediate.dense = int8(i, ("intermediate.dense",), layer.intermediate.dense)
    packed = pack_linears(out)  # the layers kept bf16 on oneDNN's pre-packed bf16 matmul
    logger.info("int8 copy: %d Linear layers int8, kept bf16: %s (%d packed), smoothing %s",
                sum(isinstance(m, Int8Linear) for m in out.modules()), sorted(skip) or "none", packed,
                f"alpha {alpha}" if ranges is not None else "off")
    return out
