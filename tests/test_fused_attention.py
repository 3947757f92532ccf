"""The compiled bf16 attention kernel (bioprune.fused_attention) against the torch ops it replaces."""
from __future__ import annotations

import logging
import tempfile

import pytest
import torch

from bioprune import fused_attention
from bioprune.layer import attention_by_sequence, packed_attention

KERNEL = fused_attention.attention_kernel()
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="no AVX-512 BF16 CPU or no C compiler here: no kernel to test")


def _case(H: int, lengths: list[int], counts: list[int] | None, seed: int):
    """Packed bf16 q, k, v as strided views of one fused projection (the int8 copy's layout), and
    frozen context rows, with 5 padding rows past the real ones."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(sum(lengths) + 5, 3 * H, generator=g).mul(2).bfloat16()  # (N', 3H)
    frozen = None
    if counts is not None:
        c_kv = torch.randn(sum(counts) + 3, 2 * H, generator=g).mul(2).bfloat16()  # (Nc', 2H)
        frozen = (c_kv[:, :H], c_kv[:, H:], counts)
    return (*qkv.chunk(3, dim=1), frozen)


@needs_kernel
@pytest.mark.parametrize("H,n_heads", [(384, 12), (128, 2)])  # head sizes 32 (MiniLM) and 64 (BERT-base)
@pytest.mark.parametrize("lengths,counts", [([352], None), ([7, 1, 40, 17, 0, 33], None),
                                             ([7, 1, 40, 17, 0, 33], [2, 0, 19, 1, 4, 0]), ([3], [60])])
def test_kernel_rounds_where_torch_rounds(H, n_heads, lengths, counts):
    """Same roundings as the torch ops: nearly every element bit for bit, the rest one bf16 step
    apart (summation order); padding rows zero; nothing leaks between sequences (each is checked
    against the torch ops run on that sequence alone)."""
    q, k, v, frozen = _case(H, lengths, counts, seed=len(lengths) + H)
    scaling = (H // n_heads) ** -0.5
    ref = attention_by_sequence(q, k, v, lengths, n_heads, scaling, frozen)
    out = fused_attention.fused_attention(KERNEL, q, k, v, lengths, n_heads, scaling, frozen)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    n = sum(lengths)
    assert not out[n:].any()
    diff = (out[:n].float() - ref[:n].float()).abs()
    assert (diff <= ref[:n].float().abs() * 2 ** -7 + 2 ** -14).all()  # at most one bf16 step
    assert (diff == 0).float().mean() > 0.999
    start = c_start = 0  # one sequence alone gives its rows of the batch's result
    for b, length in enumerate(lengths):
        c = counts[b] if counts else 0
        alone = fused_attention.fused_attention(
            KERNEL, q[start:start + length], k[start:start + length], v[start:start + length], [length],
            n_heads, scaling, None if not c else (frozen[0][c_start:c_start + c], frozen[1][c_start:c_start + c], [c]))
        assert torch.equal(alone, out[start:start + length])
        start, c_start = start + length, c_start + c


@needs_kernel
def test_packed_attention_runs_the_kernel_in_bf16_only(monkeypatch):
    """bf16 with a head size of 32 goes to the kernel; fp32, or a head size it is not built for
    (16), stays on the torch ops."""
    calls = []
    monkeypatch.setattr("bioprune.layer.fused_attention", lambda *a, **kw: calls.append(a) or "kernel")
    q, k, v, _ = _case(64, [5, 9], None, seed=1)
    assert packed_attention(q, k, v, [5, 9], 2, 0.1) == "kernel"  # bf16, head size 32
    assert torch.is_tensor(packed_attention(q.float(), k.float(), v.float(), [5, 9], 2, 0.1))
    assert torch.is_tensor(packed_attention(q, k, v, [5, 9], 4, 0.1))  # head size 16
    assert len(calls) == 1


def test_cpu_flag_is_read_from_the_flags_line():
    flags = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\nbugs\t\t: sysret_ss_attrs\n"
    assert fused_attention.cpu_has_avx512_bf16(flags)
    assert not fused_attention.cpu_has_avx512_bf16(flags.replace(" avx512_bf16", ""))
    assert not fused_attention.cpu_has_avx512_bf16("bugs\t: avx512_bf16\n")  # only the flags line counts
    assert not fused_attention.cpu_has_avx512_bf16("")


def test_without_cpu_support_or_compiler_there_is_no_kernel_and_torch_runs(monkeypatch, caplog, tmp_path):
    """No kernel, said at INFO, and bf16 attention still runs, on the torch ops; the failed build
    leaves nothing behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        with caplog.at_level(logging.INFO, logger="bioprune.fused_attention"):
            monkeypatch.setattr(fused_attention, "_cpuinfo", lambda: "flags\t: avx512f avx512_vnni\n")
            fused_attention.attention_kernel.cache_clear()
            assert fused_attention.attention_kernel() is None
            assert "no AVX-512 BF16" in caplog.text
            monkeypatch.setattr(fused_attention, "_cpuinfo", lambda: "flags\t: avx512f avx512_bf16\n")
            monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
            fused_attention.attention_kernel.cache_clear()
            assert fused_attention.attention_kernel() is None
            assert "no-such-cc could not build it" in caplog.text
        q, k, v, frozen = _case(64, [5, 9], [1, 2], seed=2)
        assert torch.equal(packed_attention(q, k, v, [5, 9], 2, 0.1, frozen),
                           attention_by_sequence(q, k, v, [5, 9], 2, 0.1, frozen))
    finally:
        fused_attention.attention_kernel.cache_clear()
    assert not any(tmp_path.iterdir())


@needs_kernel
def test_build_writes_nothing_that_outlives_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fused_attention.attention_kernel.cache_clear()
    try:
        assert fused_attention.attention_kernel() is not None
    finally:
        fused_attention.attention_kernel.cache_clear()
    assert not any(tmp_path.iterdir())
