"""Compiled CPU kernels for the reduced-precision forward: fused bf16 attention, per-row int8 Linear layers.

    out = fused_attention(q, k, v, lengths, n_heads, scaling, frozen)   # (N, H) bf16, when
    attention_fits(q, n_heads) and library() is not None
    out = int8_linear(x, packed, comp, weight_scale, bias, n, gelu)    # when int8_linear_fits(x) too
    out = add_layer_norm(h, residual, norm)                            # when add_norm_fits(h, residual, norm) too

Each replaces a chain of torch ops that each pass over memory:

- **Attention.** In a bf16 forward, attention took a quarter of the time for ~6% of the FLOPs
  (results/benchmark_roof.json): per sequence, a matmul writes its (heads, n, m) scores out, the
  softmax reads and writes them, a second matmul reads them again, and ~10 small torch ops around
  them copy and pad. The kernel keeps four query rows' scores in L1 and runs both products on the
  CPU's bf16 dot-product instruction (as FlashAttention, Dao et al., NeurIPS 2022, keeps scores on
  chip; rows here are short enough for one pass without its online softmax). It rounds where the
  torch ops round (:func:`bioprune.layer.attention_by_sequence`), so it matches them on nearly
  every element (tests/test_cpu_kernels.py states the tolerance).
- **A per-row int8 Linear layer** (:class:`bioprune.int8.Int8Linear`) in one call: its bf16 input
  quantized, each row on its own scale (one pass, a row staying in L1 between its two reads,
  instead of about ten passes over an fp32 copy), the int8 matmul on the CPU's VNNI dot-product
  instruction (VPDPBUSD), and row scale, bias and exact GELU applied to the products while they
  are still in registers. The torch path it replaces (quantize, oneDNN's u8 x s8 matmul, which
  takes one activation scale per call and so cannot apply the rows' own, then a pass over its fp32
  products) ran the layers of one abstract at ~40% of the machine's int8 roof; the same bits here.
- **The residual add and LayerNorm** that end each sub-layer (``LayerNorm(dense(x) + x)``): torch
  runs them as two passes over memory, its bf16 norm about 50 us for a 300-token window on 2 cores
  (two per layer: 0.7 ms of a 27 ms batch-1 annotate); one pass here, each row in L1.

``cpu_kernels.c`` (beside this file) is compiled once per process, on first use, with the system
C compiler (``cc``, about half a second) into a temporary folder that is removed once the library
is loaded: nothing is written outside it. Without a compiler, on a CPU without AVX-512 BF16 and VNNI, off
Linux, or with ``BIOPRUNE_CPU_KERNELS=0`` in the environment, there is no library and the torch ops
run (logged once at INFO).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.c")
COMPILE_FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mavx512vnni", "-mfma", "-ffp-contract=off",
                 "-fopenmp", "-shared", "-fPIC")
OFF_VARIABLE = "BIOPRUNE_CPU_KERNELS"  # set to 0 (or off): never build them, the torch ops run
HEAD_SIZES = (32, 64)  # the head sizes the attention kernel is built for (MiniLM: 32, BERT-base/BioBERT: 64)

_P, _LONG, _INT = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
_SIGNATURES = {  # C function: (argument types, result type)
    "bioprune_attention_bf16": ([_P, _LONG, _P, _LONG, _P, _LONG, _P, _LONG, _P, _LONG, _P, _P, _INT, _INT, _INT,
                                 ctypes.c_float, _P, _LONG, _INT], _INT),
    "bioprune_int8_linear": ([_P, _LONG, _LONG, _LONG, _P, _P, _P, _P, _P, _LONG, _INT, _P, _LONG, _INT], _INT),
    "bioprune_add_layer_norm": ([_P, _LONG, _P, _LONG, _P, _P, ctypes.c_float, _LONG, _LONG, _P, _LONG, _INT], None),
}


KERNEL_FLAGS = ("avx512_bf16", "avx512_vnni")  # /proc/cpuinfo flags of the instructions the kernels use


def cpu_runs_kernels(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists the AVX-512 BF16 and VNNI instructions (:data:`KERNEL_FLAGS`)."""
    return any(line.startswith("flags") and set(KERNEL_FLAGS) <= set(line.split()) for line in cpuinfo.splitlines())


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


_off = threading.local()  # .depth > 0 inside disabled()


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot run here (or inside :func:`disabled`)."""
    return None if getattr(_off, "depth", 0) else _built()


@contextlib.contextmanager
def disabled():
    """Within the block (this thread only), the torch ops run instead of the kernels: to compare
    the two (training/benchmark_kernels.py)."""
    _off.depth = getattr(_off, "depth", 0) + 1
    try:
        yield
    finally:
        _off.depth -= 1


@functools.lru_cache(maxsize=None)
def _built() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot run here; built once per process."""
    if os.environ.get(OFF_VARIABLE, "").strip() not in ("", "1", "on"):
        logger.info("CPU kernels: off (%s=%s); torch ops run attention and quantization",
                    OFF_VARIABLE, os.environ[OFF_VARIABLE])
        return None
    if not sys.platform.startswith("linux") or not cpu_runs_kernels(_cpuinfo()):
        logger.info("CPU kernels: this CPU lacks AVX-512 BF16 or VNNI; torch ops run attention and quantization")
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.info("CPU kernels: no C compiler (cc) found; torch ops run attention and quantization")
        return None
    with tempfile.TemporaryDirectory(prefix="bioprune-kernels-") as folder:
        path = Path(folder) / "cpu_kernels.so"
        try:
            done = subprocess.run([compiler, *COMPILE_FLAGS, str(SOURCE), "-o", str(path)],
                                  capture_output=True, text=True)
            if done.returncode:
                raise OSError(done.stderr.strip().splitlines()[-1:] or f"exit status {done.returncode}")
            # After torch: the library's libgomp.so.1 resolves to the one torch loaded, so one thread pool
            lib = ctypes.CDLL(str(path))
            for name, (arguments, result) in _SIGNATURES.items():
                getattr(lib, name).argtypes, getattr(lib, name).restype = arguments, result
        except (OSError, AttributeError) as error:  # no compiler there, a failed build, a library that will not load
            logger.info("CPU kernels: %s could not build them (%s); torch ops run attention and quantization",
                        compiler, error)
            return None
    logger.info("CPU kernels: built with %s", compiler)
    return lib


def _named(name: str):
    """A profiler range called ``name`` while a torch profiler records (benchmark_roof reads them by
    name), else nothing: a record_function costs microseconds even with no profiler, and the
    kernels run about 50 times per abstract."""
    return torch.profiler.record_function(name) if torch._C._autograd._profiler_enabled() else contextlib.nullcontext()


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()  # (rows, H), row stride free, columns contiguous


def _plain_fp32(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32 and x.is_contiguous()


def _ints(values: list[int]):
    return (ctypes.c_int * len(values))(*values)


def attention_fits(q: torch.Tensor, n_heads: int) -> bool:
    """Whether the attention kernel takes these queries: bf16 on the CPU, a head size it is built for."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.size(-1) // n_heads in HEAD_SIZES


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], n_heads: int,
                    scaling: float, frozen: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
                    ) -> torch.Tensor:
    """:func:`bioprune.layer.packed_attention` in one compiled call (same arguments, (N, H) -> (N, H)
    bf16, rows past ``sum(lengths)`` zero). Requires :func:`attention_fits` and :func:`library`."""
    N, H = q.shape
    q, k, v = _rows(q), _rows(k), _rows(v)
    out = torch.empty(N, H, dtype=torch.bfloat16)  # (N, H)
    if (n_real := sum(lengths)) < N:
        out[n_real:] = 0
    c_keys, c_values = (None, None) if frozen is None else (_rows(frozen[0]), _rows(frozen[1]))
    with _named("bioprune::fused_attention"):  # named in a profile (benchmark_roof)
        status = library().bioprune_attention_bf16(
            q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), v.data_ptr(), v.stride(0),
            None if c_keys is None else c_keys.data_ptr(), 0 if c_keys is None else c_keys.stride(0),
            None if c_values is None else c_values.data_ptr(), 0 if c_values is None else c_values.stride(0),
            _ints(lengths), None if frozen is None else _ints(frozen[2]), len(lengths), n_heads, H // n_heads,
            scaling, out.data_ptr(), out.stride(0), torch.get_num_threads())
    if status != 0:
        raise ValueError(f"fused attention: head size {H // n_heads} is not one of {HEAD_SIZES}")
    return out


def int8_linear_fits(x: torch.Tensor) -> bool:
    """Whether :func:`int8_linear` takes the input ``x`` (M, K): bf16 rows on the CPU."""
    return x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.dim() == 2


def int8_linear(x: torch.Tensor, packed: torch.Tensor, comp: torch.Tensor, weight_scale: torch.Tensor,
                bias: torch.Tensor | None, n: int, gelu: bool, inv_smooth: torch.Tensor | None = None
                ) -> torch.Tensor:
    """A per-row int8 Linear layer (:class:`bioprune.int8.Int8Linear`) in one compiled call: (M, K)
    bf16 -> (M, n) bf16, bit for bit :func:`bioprune.int8.quantize_rows_in_torch`, oneDNN's u8 x s8
    matmul and :func:`bioprune.int8.dequantize_rows_in_torch` without GELU (with it, erf to 1.5e-7:
    the same bf16 on nearly every element; the tests state how near). ``packed``, ``comp``,
    ``weight_scale`` and ``bias`` (fp32, or None) are :func:`bioprune.int8.vnni_pack`'s, padded to
    64 columns. Requires :func:`int8_linear_fits` and :func:`library`."""
    x = _rows(x)
    M, K = x.shape
    out = torch.empty(M, n, dtype=torch.bfloat16)  # (M, n)
    inv = inv_smooth if inv_smooth is None or _plain_fp32(inv_smooth) else inv_smooth.float().contiguous()  # (K,)
    with _named("bioprune::int8_linear"):  # named in a profile (benchmark_roof)
        status = library().bioprune_int8_linear(
            x.data_ptr(), M, K, x.stride(0), None if inv is None else inv.data_ptr(), packed.data_ptr(),
            comp.data_ptr(), weight_scale.data_ptr(), None if bias is None else bias.data_ptr(), n, int(gelu),
            out.data_ptr(), out.stride(0), torch.get_num_threads())
    if status != 0:
        raise MemoryError(f"int8 linear: no memory for {M} x {K} quantized rows")
    return out


def add_norm_fits(h: torch.Tensor, residual: torch.Tensor, norm: torch.nn.LayerNorm) -> bool:
    """Whether :func:`add_layer_norm` takes these: bf16 (M, H) rows on the CPU and a bf16 LayerNorm
    over the last dimension with both affine parameters."""
    return (h.dtype == residual.dtype == torch.bfloat16 and h.device.type == "cpu" and h.dim() == residual.dim() == 2
            and h.shape == residual.shape and norm.weight is not None and norm.bias is not None
            and norm.weight.dtype == norm.bias.dtype == torch.bfloat16 and tuple(norm.normalized_shape) == h.shape[1:])


def add_layer_norm(h: torch.Tensor, residual: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """``norm(h + residual)`` in one compiled call: (M, H) bf16 each -> (M, H) bf16. The sum rounds
    to bf16 as torch's add does; mean and variance sum in another order than torch's, so an element
    can sit one bf16 step from ``norm(h + residual)`` (tests/test_cpu_kernels.py states how often).
    Requires :func:`add_norm_fits` and :func:`library`."""
    h, residual = _rows(h), _rows(residual)
    M, H = h.shape
    out = torch.empty(M, H, dtype=torch.bfloat16)  # (M, H)
    weight, bias = norm.weight.contiguous(), norm.bias.contiguous()  # (H,) each
    with _named("bioprune::add_layer_norm"):
        library().bioprune_add_layer_norm(h.data_ptr(), h.stride(0), residual.data_ptr(), residual.stride(0),
                                          weight.data_ptr(), bias.data_ptr(), norm.eps, M, H, out.data_ptr(),
                                          out.stride(0), torch.get_num_threads())
    return out
