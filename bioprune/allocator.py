"""glibc's malloc kept from handing the forward's temporaries back to the kernel between layers.

The reduced-precision forward allocates and frees tensors of megabytes in every layer: the
per-sequence attention scores where the torch ops run attention (heads x n x n, 3 MB in bf16 for
a 350-token window, :func:`bioprune.layer.attention_by_sequence`), the feed-forward activations. glibc serves a request
above its mmap threshold (dynamic, from 128 KiB) with pages of its own and returns the heap's top
to the kernel once more than its trim threshold lies free there, so those temporaries kept coming
back as fresh pages that the kernel zeroes and faults in 4 KiB at a time, thousands per abstract
annotated one at a time with the default (dense bf16); with both thresholds fixed (mallopt(3)) they
are reused (page faults and time of both: results/benchmark_allocator.json, docs/pruning.md,
"Engineering notes"). It is what PyTorch's CPU performance guide gets by preloading jemalloc or
tcmalloc, done here without a new library.

Process-wide, so it is done once, on glibc only, and never over the user's own ``MALLOC_*``
settings. The price: up to :data:`TRIM_THRESHOLD_BYTES` of freed memory stays with the process for
its next use instead of going back to the kernel.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform

logger = logging.getLogger(__name__)

# requests above this still get pages of their own, returned when freed (glibc's own ceiling for
# its dynamic threshold, DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
MMAP_THRESHOLD_BYTES = 32 << 20
# free memory at the heap's top kept for reuse before any goes back to the kernel: above the forward's
# temporaries for a batch of 16 long windows
TRIM_THRESHOLD_BYTES = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
# the user's own malloc settings, which win (glibc reads them at start-up)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def user_tuned(environ: dict[str, str]) -> bool:
    """Whether ``environ`` sets glibc's malloc itself (``MALLOC_*_`` variables or ``glibc.malloc`` tunables)."""
    return any(k in environ for k in USER_SETTINGS) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


_set_up_for_a_run = False  # set by mark_set_up(): a batch run's memory mode owns malloc's settings


def mark_set_up() -> None:
    """Record that this process's malloc was set up on purpose for a long run (the memory modes of
    :func:`bioprune.batch_run.limit_malloc_growth`): :func:`keep_freed_memory` leaves it alone."""
    global _set_up_for_a_run
    _set_up_for_a_run = True


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD_BYTES`, :data:`TRIM_THRESHOLD_BYTES`)
    for this process, once; True if they are set now. False, doing nothing, off glibc (musl, macOS,
    Windows), where the user set malloc up (:func:`user_tuned`) and where a batch run's memory mode
    did (:func:`mark_set_up`: its "flat" mode would lose its low peak to these thresholds)."""
    if platform.libc_ver()[0] != "glibc" or user_tuned(dict(os.environ)) or _set_up_for_a_run:
        return False
    mallopt = ctypes.CDLL(None).mallopt
    done = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    logger.info("glibc malloc: mmap threshold %d MiB, trim threshold %d MiB (%s)", MMAP_THRESHOLD_BYTES >> 20,
                TRIM_THRESHOLD_BYTES >> 20, "set" if done else "refused")
    return done
