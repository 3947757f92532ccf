"""The compiled CPU kernels (bioprune.cpu_kernels) against the torch ops they replace."""
from __future__ import annotations

import logging
import tempfile

import pytest
import torch

from bioprune import cpu_kernels
from bioprune.int8 import Int8Linear, quantize_rows_in_torch, vnni_pack, vnni_unpack
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


def test_cpu_flags_are_read_from_the_flags_line():
    flags = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\nbugs\t\t: sysret_ss_attrs\n"
    assert cpu_kernels.cpu_runs_kernels(flags)
    assert not cpu_kernels.cpu_runs_kernels(flags.replace(" avx512_bf16", ""))
    assert not cpu_kernels.cpu_runs_kernels(flags.replace(" avx512_vnni", ""))  # the int8 kernel's VPDPBUSD
    assert not cpu_kernels.cpu_runs_kernels("bugs\t: avx512_bf16 avx512_vnni\n")  # only the flags line counts
    assert not cpu_kernels.cpu_runs_kernels("")


@pytest.mark.parametrize("flags,environment,said", [
    ("avx512f avx512_vnni", {}, "this CPU lacks AVX-512 BF16 or VNNI"),
    ("avx512f avx512_bf16", {}, "this CPU lacks AVX-512 BF16 or VNNI"),
    ("avx512f avx512_bf16 avx512_vnni", {"BIOPRUNE_CPU_KERNELS": "0", "CC": "true"}, "off (BIOPRUNE_CPU_KERNELS=0)"),
    ("avx512f avx512_bf16 avx512_vnni", {"CC": "{tmp}/no-such-cc"}, "no-such-cc could not build them"),
    ("avx512f avx512_bf16 avx512_vnni", {"CC": "false"}, "false could not build them"),
    ("avx512f avx512_bf16 avx512_vnni", {"CC": "true"}, "true could not build them")])  # "built", nothing to load
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
        layer = Int8Linear(torch.nn.Linear(64, 40), activation="gelu")
        assert torch.equal(layer(q), layer.forward_in_torch(q))
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


def test_vnni_layout_round_trips_and_pads_with_zero_weights():
    w = torch.randint(-127, 128, (70, 38), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    packed, comp = vnni_pack(w)
    assert packed.shape == (2, 10, 4, 16, 4)  # 70 columns -> 2 blocks of 64, 38 channels -> 10 steps of 4
    assert torch.equal(vnni_unpack(packed, 70, 38), w)
    assert int(packed.abs().sum()) == int(w.abs().sum())  # the padding is zero weights
    assert packed[0, 3, 1, 2].tolist() == w[16 + 2, 12:16].tolist()  # block 0, step 3, vector 1, column 2
    assert torch.equal(comp[:70], 128 * w.sum(dim=1, dtype=torch.int32)) and not comp[70:].any()


def _int8_case(M: int, K: int, N: int, seed: int):
    """A Linear layer (smoothed) and bf16 rows with an outlier channel, all-positive and
    all-negative rows and a zero row, read through a strided view."""
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(K, N)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(N, K, generator=g) * 0.1)
        linear.bias.copy_(torch.randn(N, generator=g))
    x = torch.randn(M, K, generator=g) * torch.rand(K, generator=g) * 4
    x[:, 3] *= 40  # an outlier channel, as BERT's layer-norm outputs have
    if M > 3:
        x[1] = 0  # the smallest scale, every level 128
        x[2], x[3] = x[2].abs() + 1, -x[3].abs() - 1
    wide = torch.zeros(M, K + 9, dtype=torch.bfloat16)
    wide[:, 4:4 + K] = x.bfloat16()
    return linear, torch.rand(K, generator=g) + 0.5, wide[:, 4:4 + K]  # (M, K) view, row stride K + 9


@needs_kernel
@pytest.mark.parametrize("shape", [(300, 384, 1152), (13, 1536, 384), (7, 38, 100), (1, 64, 64)])
@pytest.mark.parametrize("smoothed", [False, True])
def test_int8_linear_kernel_is_the_torch_ops_bit_for_bit(shape, smoothed):
    """Quantization, u8 x s8 products, zero-point compensation, weight and row scales and bias:
    the same bf16 as the torch ops around oneDNN's matmul, on shapes off the kernel's blocks (rows
    past a tile of 6, columns past a block of 64, channels past a step of 4) included."""
    M, K, N = shape
    linear, smooth, x = _int8_case(M, K, N, seed=M)
    layer = Int8Linear(linear, smooth=smooth if smoothed else None)
    assert cpu_kernels.int8_linear_fits(x) and layer.vnni is not None
    got = layer(x)
    assert got.dtype == torch.bfloat16 and got.shape == (M, N)
    assert torch.equal(got, layer.forward_in_torch(x))
    assert torch.equal(layer(x.view(M, 1, K)), got.view(M, 1, N))  # leading dims kept
    if smoothed:  # a smoothing vector in another dtype is read as fp32
        assert torch.equal(cpu_kernels.int8_linear(x, layer.vnni, layer.comp, layer.scale, layer.bias, N, False,
                                                   layer.inv_smooth.double()), got)
    q, scales = quantize_rows_in_torch(x, layer.inv_smooth)  # the torch ops' numbers, from their parts
    w = vnni_unpack(layer.vnni, N, K).float()
    y = ((q.float() - 128) @ w.T * layer.scale[:N]) * scales[:, None] + layer.bias[:N]
    assert (got.float() - y).abs().max() <= y.abs().max() * 2 ** -7  # products exact in int32, one bf16 rounding
    assert not cpu_kernels.int8_linear_fits(x.float())  # fp32 stays on the torch ops


@needs_kernel
def test_int8_linear_kernel_gelu_is_exact_gelu_to_a_bf16_step():
    """With exact GELU, the kernel rounds to the same bf16 as GELU computed in fp64 from the same
    pre-activations on all but a few elements, one bf16 step off there, negative inputs down to
    -12 included (where 1 + erf(x) in fp32 would have lost its digits); so do the torch ops."""
    linear, smooth, _ = _int8_case(70, 64, 40, seed=3)
    x = (torch.randn(70, 64, generator=torch.Generator().manual_seed(3)) * 0.5).bfloat16()  # products within +-2
    with torch.no_grad():
        linear.bias.copy_(torch.linspace(-10.5, 10.5, 40))  # with the products: GELU inputs -12 .. 12
    fused = Int8Linear(linear, activation="gelu", smooth=smooth)
    q, scales = quantize_rows_in_torch(x, fused.inv_smooth)
    w = vnni_unpack(fused.vnni, 40, 64).double()
    acc = ((q.double() - 128) @ w.T).float()  # (70, 40) int32 products, exact in fp32 here
    y = (acc * fused.scale[:40] * scales[:, None] + fused.bias[:40]).double()  # fp32, in the kernel's order
    assert -12.5 < y.min() < -10 and y.max() > 10  # GELU's tails are in the case
    exact = (0.5 * y * torch.special.erfc(-y / 2 ** 0.5)).to(torch.bfloat16)  # (70, 40)
    for result in (fused(x), fused.forward_in_torch(x)):
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
