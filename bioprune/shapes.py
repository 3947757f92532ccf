"""Shapes rounded so that oneDNN's compiled kernels are reused.

torch runs bf16 and int8 matmuls on the CPU through oneDNN, which JIT-compiles a primitive for
every new shape (about 1.5 ms each on the 2-core EPYC we measure on) and keeps up to 1024 of them
in a cache, ~0.7 MB apiece. Packed batches bring a new row count almost every call (the batch's
real tokens), and per-sequence attention one per sequence length, so a long ``bioprune annotate``
run compiled again and again and its peak memory grew with the input (1381 MB for the MEDLINE
slice, 1943 MB for 16x it, results/benchmark_batch.json before this module). Rounded row counts repeat:
compiled once, cached, memory bounded. fp32 runs through MKL's sgemm, which compiles nothing, and
keeps its exact shapes (``--precision fp32`` stays bit for bit).
"""
from __future__ import annotations

import torch

SEQUENCE_BUCKET_TOKENS = 32  # per-sequence attention: lengths rounded up to a multiple of this
ROW_BUCKETS_PER_OCTAVE = 16  # Linear layers: row counts rounded up on a grid of 16 steps per power of 2
# ... never a finer step than this many rows: one window alone (batch 1, ~350 tokens) pads at most 31
# rows (a step of 64 padded ~10% of them on average)
MIN_ROW_STEP = 32


def bucketed_tokens(n: int) -> int:
    """A sequence length ``n`` rounded up to a multiple of :data:`SEQUENCE_BUCKET_TOKENS` (at most
    31 padded tokens; 16 shapes up to 512)."""
    return -(-n // SEQUENCE_BUCKET_TOKENS) * SEQUENCE_BUCKET_TOKENS


def bucketed_rows(m: int) -> int:
    """A Linear layer's row count ``m`` rounded up on a geometric grid: a step of 1/16 of the power
    of two below ``m`` (at least :data:`MIN_ROW_STEP`), so at most ~6% padded rows on a batch,
    at most 31 on one window, and about 16 shapes per doubling of the batch's tokens."""
    step = max(MIN_ROW_STEP, (1 << max(m.bit_length() - 1, 0)) // ROW_BUCKETS_PER_OCTAVE)
    return -(-m // step) * step


def padded_rows(x: torch.Tensor) -> torch.Tensor:
    """(M, K) -> (bucketed_rows(M), K): ``x`` with zero rows appended (``x`` itself when M is on the grid)."""
    pad = bucketed_rows(x.size(0)) - x.size(0)
    return torch.cat([x, x.new_zeros(pad, x.size(1))]) if pad else x
