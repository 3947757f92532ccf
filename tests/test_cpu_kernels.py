"""The compiled CPU kernels (bioprune.cpu_kernels) against the torch ops they replace."""
from __future__ import annotations

import logging
import tempfile

import pytest
import torch

from bioprune import cpu_kernels
from bioprune.int8 import dequantize_rows_in_torch, quantize_rows, quantize_rows_in_torch
from bioprune.layer import attention_by_sequence, packed_attention

needs_kernel = pytest.mark.skipif(cpu_kernels.library() is None,
                                  reason="no AVX-512 BF16 CPU or no C compiler here: no kernels to test")


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
    out = cpu_kernels.fused_attention(q, k, v, lengths, n_heads, scaling, frozen)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    n = sum(lengths)
    assert not out[n:].any()
    diff = (out[:n].float() - ref[:n].float()).abs()
    assert (diff <= ref[:n].float().abs() * 2 ** -7 + 2 ** -14).all()  # at most one bf16 step
    assert (diff == 0).float().mean() > 0.999
    start = c_start = 0  # one sequence alone gives its rows of the batch's result
    for b, length in enumerate(lengths):
        c = counts[b] if counts else 0
        alone = cpu_kernels.fused_attention(
            q[start:start + length], k[start:start + length], v[start:start + length], [length],
            n_heads, scaling, None if not c else (frozen[0][c_start:c_start + c], frozen[1][c_start:c_start + c], [c]))
        assert torch.equal(alone, out[start:start + length])
        start, c_start = start + length, c_start + c


@needs_kernel
def test_packed_attention_runs_the_kernel_in_bf16_only(monkeypatch):
    """bf16 with a head size of 32 goes to the kernel; fp32, or a head size it is not built for
    (16), stays on the torch ops."""
    calls = []
    monkeypatch.setattr(cpu_kernels, "fused_attention", lambda *a, **kw: calls.append(a) or "kernel")
    q, k, v, _ = _case(64, [5, 9], None, seed=1)
    assert packed_attention(q, k, v, [5, 9], 2, 0.1) == "kernel"  # bf16, head size 32
    assert torch.is_tensor(packed_attention(q.float(), k.float(), v.float(), [5, 9], 2, 0.1))
    assert torch.is_tensor(packed_attention(q, k, v, [5, 9], 4, 0.1))  # head size 16
    assert len(calls) == 1


def test_cpu_flag_is_read_from_the_flags_line():
    flags = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\nbugs\t\t: sysret_ss_attrs\n"
    assert cpu_kernels.cpu_has_avx512_bf16(flags)
    assert not cpu_kernels.cpu_has_avx512_bf16(flags.replace(" avx512_bf16", ""))
    assert not cpu_kernels.cpu_has_avx512_bf16("bugs\t: avx512_bf16\n")  # only the flags line counts
    assert not cpu_kernels.cpu_has_avx512_bf16("")


@pytest.mark.parametrize("flags,environment,said", [
    ("avx512f avx512_vnni", {}, "this CPU has no AVX-512 BF16"),
    ("avx512f avx512_bf16", {"BIOPRUNE_CPU_KERNELS": "0", "CC": "true"}, "off (BIOPRUNE_CPU_KERNELS=0)"),
    ("avx512f avx512_bf16", {"CC": "{tmp}/no-such-cc"}, "no-such-cc could not build them"),
    ("avx512f avx512_bf16", {"CC": "false"}, "false could not build them"),
    ("avx512f avx512_bf16", {"CC": "true"}, "true could not build them")])  # "built", nothing to load
def test_no_kernels_without_cpu_support_compiler_or_consent(flags, environment, said, monkeypatch, caplog, tmp_path):
    """No kernels, said at INFO, and the torch ops still run attention and quantization; a failed
    build leaves nothing behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_cpuinfo", lambda: f"flags\t: {flags}\n")
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    cpu_kernels._built.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="bioprune.cpu_kernels"):
            assert cpu_kernels.library() is None
        assert said in caplog.text
        q, k, v, frozen = _case(64, [5, 9], [1, 2], seed=2)
        assert torch.equal(packed_attention(q, k, v, [5, 9], 2, 0.1, frozen),
                           attention_by_sequence(q, k, v, [5, 9], 2, 0.1, frozen))
        assert all(torch.equal(a, b) for a, b in zip(quantize_rows(q), quantize_rows_in_torch(q)))
    finally:
        cpu_kernels._built.cache_clear()
    assert not any(tmp_path.iterdir())


@needs_kernel
def test_disabled_runs_the_torch_ops_within_its_block_only():
    with cpu_kernels.disabled():
        with cpu_kernels.disabled():
            assert cpu_kernels.library() is None
        assert cpu_kernels.library() is None
    assert cpu_kernels.library() is not None


@needs_kernel
def test_build_writes_nothing_that_outlives_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cpu_kernels._built.cache_clear()
    try:
        assert cpu_kernels.library() is not None
    finally:
        cpu_kernels._built.cache_clear()
    assert not any(tmp_path.iterdir())


@needs_kernel
@pytest.mark.parametrize("shape", [(640, 384), (33, 1536), (7, 20)])  # 20: columns past the last 16
@pytest.mark.parametrize("smoothed", [False, True])
def test_row_quantization_kernel_is_the_torch_ops_bit_for_bit(shape, smoothed):
    """Same uint8 values and row scales as the torch ops, on rows with an outlier column,
    all-positive and all-negative rows, an all-zero row and a strided view."""
    g = torch.Generator().manual_seed(shape[0])
    x = torch.randn(*shape, generator=g) * torch.rand(shape[1], generator=g) * 4
    x[:, 3] *= 40  # an outlier channel, as BERT's layer-norm outputs have
    x[1] = 0  # a zero row: the smallest scale, every level 128
    inv = torch.rand(shape[1], generator=g) + 0.1 if smoothed else None
    wide = torch.randn(shape[0], shape[1] + 9, generator=g).bfloat16()
    for case in (x.bfloat16(), x.abs().bfloat16() + 1, -x.abs().bfloat16() - 1, wide[:, 4:4 + shape[1]]):
        assert cpu_kernels.quantize_fits(case)
        q, scales = quantize_rows(case, inv)
        q_ref, scales_ref = quantize_rows_in_torch(case, inv)
        assert torch.equal(q, q_ref) and q.dtype == torch.uint8 and q.shape == case.shape
        assert torch.equal(scales, scales_ref) and scales.shape == (shape[0],) and scales.dtype == torch.float32
        assert int(q.min()) >= 1  # symmetric levels -127..127 around 128
    assert torch.all(quantize_rows(x.bfloat16(), inv)[0][1] == 128)
    assert not cpu_kernels.quantize_fits(x)  # fp32 stays on the torch ops


@needs_kernel
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dequantization_kernel_is_the_torch_ops(gelu, with_bias):
    """Row scale and bias: bit for bit the torch ops, written through a strided output view (a
    chunk of the layer's output). With exact GELU, both round to the same bf16 as GELU computed in
    fp64 on all but a few elements, one bf16 step off there, negative inputs down to -12 included
    (where 1 + erf(x) in fp32 would have lost its digits)."""
    g = torch.Generator().manual_seed(3)
    acc = torch.randn(70, 40, generator=g) * 3  # 40: columns past the last 16
    acc[0] = torch.linspace(-12, 12, 40)
    scales = torch.rand(70, generator=g) + 0.5
    bias = torch.randn(40, generator=g) if with_bias else None
    out = torch.zeros(80, 52, dtype=torch.bfloat16)[5:75, 4:44]  # (70, 40), row stride 52
    ref = dequantize_rows_in_torch(acc, scales, bias, gelu, torch.empty(70, 40, dtype=torch.bfloat16))
    got = cpu_kernels.dequantize_rows(acc, scales, bias, gelu, out)
    assert got.data_ptr() == out.data_ptr()
    if not gelu:
        assert torch.equal(out, ref)
        return
    y = acc.double() * scales.double()[:, None] + (0 if bias is None else bias.double())
    exact = (0.5 * y * torch.special.erfc(-y / 2 ** 0.5)).to(torch.bfloat16)  # (70, 40)
    for result in (out, ref):
        assert (result != exact).float().mean() < 0.005
        assert torch.all((result.double() - exact.double()).abs() <= exact.double().abs() * 2 ** -7 + 1e-30)


@needs_kernel
@pytest.mark.parametrize("shape", [(300, 384), (33, 1024), (7, 40)])  # 40: columns past the last 16
def test_add_layer_norm_kernel_is_torch_add_then_norm(shape):
    """``LayerNorm(h + residual)`` in bf16: the same bf16 as torch's add and norm on all but a few
    elements (the mean and variance sum in another order), one bf16 step off there; inputs read
    through strided views."""
    M, H = shape
    g = torch.Generator().manual_seed(M)
    norm = torch.nn.LayerNorm(H, eps=1e-12)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(H, generator=g) * 0.3 + 1)
        norm.bias.copy_(torch.randn(H, generator=g) * 0.1)
    norm = norm.to(torch.bfloat16)
    wide = (torch.randn(M, 2 * H + 8, generator=g) * 3).bfloat16()  # (M, 2H + 8)
    h, residual = wide[:, :H], wide[:, H + 8:]  # strided views, as the fused projections give
    residual[0] += 50  # a row far from zero mean
    assert cpu_kernels.add_norm_fits(h, residual, norm)
    with torch.no_grad():
        ref = norm(h + residual)
        got = cpu_kernels.add_layer_norm(h, residual, norm)
    assert got.dtype == torch.bfloat16 and got.shape == (M, H)
    assert (got != ref).float().mean() < 1e-3
    assert torch.all((got.float() - ref.float()).abs() <= ref.float().abs() * 2 ** -7 + 2 ** -14)
    assert not cpu_kernels.add_norm_fits(h.float(), residual.float(), norm.float())  # fp32 stays on torch's


def test_kernel_source_is_installed_with_the_package():
    """The C source ships in the package (pyproject's package-data): without it every install
    would fall back to the slower torch ops, silently."""
    assert cpu_kernels.SOURCE.is_file() and "bioprune_attention_bf16" in cpu_kernels.SOURCE.read_text()
