"""Fused bf16 attention for AVX-512 BF16 CPUs: one compiled call per layer instead of a torch loop.

    fn = attention_kernel()       # None where it cannot run (then packed_attention's torch ops do)
    out = fused_attention(fn, q, k, v, lengths, n_heads, scaling, frozen)  # (N, H) bf16

In a bf16 forward the attention took a quarter of the time for ~6% of the FLOPs
(results/benchmark_roof.json): per sequence, a matmul writes its (heads, n, m) scores out, the
softmax reads and writes them, a second matmul reads them again, and ~10 small torch ops around
them copy and pad. ``fused_attention.c`` (beside this file) keeps four query rows' scores in L1
and runs both products on the CPU's bf16 dot-product instruction (as FlashAttention, Dao et al.,
NeurIPS 2022, keeps scores on chip; the rows here are short enough for one pass without its online
softmax). It rounds where the torch ops round, so its output equals theirs on nearly every
element (tests/test_fused_attention.py states the tolerance).

The C source is compiled once per process, on first use, with the system C compiler (``cc``,
about half a second) into a temporary folder that is removed once the library is loaded: nothing
is written outside it. Without a compiler, on a CPU without AVX-512 BF16, off Linux, or for a head
size other than 32 or 64, there is no kernel and the torch path runs (logged once at INFO).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_attention.c")
COMPILE_FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma", "-fopenmp",
                 "-shared", "-fPIC")
HEAD_SIZES = (32, 64)  # the head sizes the kernel is built for (MiniLM: 32, BERT-base/BioBERT: 64)


def cpu_has_avx512_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists the AVX-512 BF16 instructions (flag ``avx512_bf16``)."""
    return any(line.startswith("flags") and "avx512_bf16" in line.split() for line in cpuinfo.splitlines())


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.lru_cache(maxsize=None)
def attention_kernel():
    """The compiled kernel (a ctypes function), or None where it cannot run here; built once."""
    if not sys.platform.startswith("linux") or not cpu_has_avx512_bf16(_cpuinfo()):
        logger.info("fused bf16 attention: this CPU has no AVX-512 BF16; torch ops run attention")
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.info("fused bf16 attention: no C compiler (cc) found; torch ops run attention")
        return None
    with tempfile.TemporaryDirectory(prefix="bioprune-kernel-") as folder:
        library = Path(folder) / "fused_attention.so"
        try:
            done = subprocess.run([compiler, *COMPILE_FLAGS, str(SOURCE), "-o", str(library)],
                                  capture_output=True, text=True)
            why = done.stderr.strip().splitlines()[-1:] if done.returncode else None
        except OSError as error:
            why = error
        if why is not None:
            logger.info("fused bf16 attention: %s could not build it (%s); torch ops run attention", compiler, why)
            return None
        # After torch: the library's libgomp.so.1 resolves to the one torch loaded, so one thread pool
        fn = ctypes.CDLL(str(library)).bioprune_attention_bf16
    pointer, stride = ctypes.c_void_p, ctypes.c_long
    fn.argtypes = [pointer, stride, pointer, stride, pointer, stride, pointer, stride, pointer, stride,
                   pointer, pointer, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, pointer, stride,
                   ctypes.c_int]
    fn.restype = ctypes.c_int
    logger.info("fused bf16 attention: built with %s", compiler)
    return fn


def fits(q: torch.Tensor, n_heads: int) -> bool:
    """Whether the kernel takes these queries: bf16 on the CPU, a head size it is built for."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.size(-1) // n_heads in HEAD_SIZES


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()  # (rows, H), row stride free, columns contiguous


def fused_attention(fn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], n_heads: int,
                    scaling: float, frozen: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
                    ) -> torch.Tensor:
    """:func:`bioprune.layer.packed_attention` on the compiled kernel ``fn`` (same arguments,
    (N, H) -> (N, H) bf16, rows past ``sum(lengths)`` zero). Requires :func:`fits`."""
    N, H = q.shape
    q, k, v = _rows(q), _rows(k), _rows(v)
    out = torch.empty(N, H, dtype=torch.bfloat16)  # (N, H)
    out[sum(lengths):] = 0
    c_keys = c_values = None
    counts = None
    if frozen is not None:
        c_keys, c_values = _rows(frozen[0]), _rows(frozen[1])
        counts = (ctypes.c_int * len(lengths))(*frozen[2])
    status = fn(q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), v.data_ptr(), v.stride(0),
                None if c_keys is None else c_keys.data_ptr(), 0 if c_keys is None else c_keys.stride(0),
                None if c_values is None else c_values.data_ptr(), 0 if c_values is None else c_values.stride(0),
                (ctypes.c_int * len(lengths))(*lengths), counts, len(lengths), n_heads, H // n_heads, scaling,
                out.data_ptr(), out.stride(0), torch.get_num_threads())
    if status != 0:
        raise ValueError(f"fused attention: head size {H // n_heads} is not one of {HEAD_SIZES}")
    return out
