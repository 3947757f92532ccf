"""One encoder layer on the tokens that remain: the kernels under :mod:`bioprune.forward`.

The pruned forward pass runs the embeddings and each ``BertLayer`` (or ``RobertaLayer``: same
module names) itself, through :func:`run_layer`: the same submodules and weights as the Hugging
Face model, no fork, no monkeypatching. Attention runs fused (fp32: the dense model bit for bit),
on packed rows (:func:`packed_attention`: one compiled call per layer, or per sequence in torch
ops) or eagerly with its probabilities
(:func:`_attention_with_signals`, only at a layer that feeds a pruning decision).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from bioprune import cpu_kernels
from bioprune.importance import row_attention_signals
from bioprune.shapes import bucketed_tokens, padded_rows

if TYPE_CHECKING:
    from bioprune.forward import Sequences


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, H = x.shape
    return x.view(B, T, n_heads, H // n_heads).transpose(1, 2)  # (B, nh, T, dh)


# Below this share of padding slots a layer runs on the padded batch as it is: packing costs two
# copies of the states per layer, more than the few padded rows it would spare.
MIN_PADDING_TO_PACK = 0.05


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a (B, T) key padding mask sit, read once per set of sequences.

    The forward changes its sequences only at a pruning point, so it computes this there (and at
    the start) and every layer until the next point reuses it: the layers themselves read nothing
    back from the device (on a GPU each read is a host synchronisation).
    lengths: real tokens per row; index: (N,) flat indices into B*T of the real tokens, None when
    there is no padding; mostly_real: padding below :data:`MIN_PADDING_TO_PACK`, not worth packing
    where packing is optional (fp32, GPU).
    """

    lengths: list[int]
    index: torch.Tensor | None
    mostly_real: bool


def packing(valid: torch.Tensor) -> Packing:
    """The :class:`Packing` of ``valid`` (B, T): one read of its row lengths, and of its nonzeros
    where there is padding."""
    lengths = valid.sum(dim=1).tolist()
    n_real, n_slots = sum(lengths), valid.numel()
    index = None if n_real == n_slots else valid.flatten().nonzero().squeeze(1)  # (N,)
    return Packing(lengths=lengths, index=index, mostly_real=n_real >= (1.0 - MIN_PADDING_TO_PACK) * n_slots)


def run_layer(layer, hidden: torch.Tensor, valid: torch.Tensor, need_signals: bool = False,
              context: "Sequences | None" = None, packed: Packing | None = None,
              context_packed: Packing | None = None):
    """One BERT layer over (B, T, H) states with key padding ``valid`` (B, T).

    After pruning, rows keep different numbers of tokens and the batch pads to the longest; on CPU
    a padding slot costs a linear layer as much as a real token. So the linear layers (Q, K, V,
    attention output, feed-forward: ~90% of a layer's FLOPs at 250 tokens, 8H² + 4HI per token
    against 4nH for attention) run on the real tokens packed into one (N, H) matrix (as in the
    "remove padding" kernels of Zeng et al., ByteTransformer, IPDPS 2023).
    In fp32 only the attention itself sees the padded (B, T) layout: the fused kernel, so fp32 stays
    bit for bit the dense model. In reduced precision on a CPU attention too runs on the packed rows
    (:func:`packed_attention`: the compiled kernel, or one sequence at a time), except at a layer that feeds a pruning
    decision (its signals need the probabilities). Padding slots come out as zeros.

    ``context``: frozen states of pruned tokens (B, Tc, H): the tokens attend to them as extra keys
    and values, but they are not updated (no query, no feed-forward): kept tokens keep the context
    pruning took away, at ~1/6 of a token's cost per layer. Returns the new states and, if
    ``need_signals``, the attention entropy and received attention of each token ((B, T) each,
    :func:`bioprune.importance.row_attention_signals`); else None. ``packed`` / ``context_packed``:
    :func:`packing` of ``valid`` / ``context.valid``, when the caller has it (the forward computes it
    once per pruning stage); else computed here.
    """
    B, T, H = hidden.shape
    attn = layer.attention.self
    n_heads = attn.num_attention_heads
    # reduced precision on a CPU: packed attention; on a GPU, one fused kernel beats a loop of small ones
    by_sequence = hidden.dtype != torch.float32 and hidden.device.type == "cpu" and not need_signals
    packed = packed or packing(valid)
    index = packed.index if by_sequence or not packed.mostly_real else None  # None: run the (B, T) layout
    if index is None:
        x = hidden.reshape(B * T, H) if by_sequence else hidden  # (B*T, H) or (B, T, H)
    else:
        x = hidden.reshape(B * T, H).index_select(0, index)  # (N, H)

    def padded(t: torch.Tensor) -> torch.Tensor:  # packed (N, D) -> (B, T, D); (B, T, D) as it is
        if index is None:
            return t.view(B, T, -1)
        return t.new_zeros(B * T, t.size(-1)).index_copy_(0, index, t).view(B, T, -1)

    signals = None
    n_rows = x.size(0)  # N (or B*T)
    if by_sequence:
        lengths = packed.lengths
        # Zero rows up to the Linear layers' shape grid, once for the whole layer, instead of a copy
        # of each Linear's input (bioprune.shapes.padded_rows); packed_attention reads only the first
        # N. Every op after it works row by row (the int8 copy too: bioprune.int8.quantize_rows), so
        # what the padding rows come to hold touches no real row; they are dropped at the end.
        x = padded_rows(x)  # (N', H)
        frozen = None
        if context is not None:  # the frozen tokens' keys and values, packed the same way
            context_packed = context_packed or packing(context.valid)
            c_x = context.hidden.reshape(-1, H)  # (B*Tc, H)
            c_x = padded_rows(c_x if context_packed.index is None else c_x.index_select(0, context_packed.index))
            frozen = (*context_keys_values(attn, c_x), context_packed.lengths)  # keys, values (Nc', H)
        out = packed_attention(*project_qkv(attn, x), lengths, n_heads, attn.scaling, frozen)  # (N', H)
    else:
        q, k, v = (padded(t) for t in project_qkv(attn, x))  # (B, T, H) each
        q = _heads(q, n_heads)  # (B, nh, T, dh)
        kv_valid = valid
        if context is not None:
            c_k, c_v = context_keys_values(attn, context.hidden)  # (B, Tc, H) each
            k, v = torch.cat([k, c_k], dim=1), torch.cat([v, c_v], dim=1)  # (B, T + Tc, H)
            kv_valid = torch.cat([valid, context.valid], dim=1)  # (B, T + Tc)
        k, v = _heads(k, n_heads), _heads(v, n_heads)  # (B, nh, T + Tc, dh)
        if need_signals:
            out, signals = _attention_with_signals(q * attn.scaling, k, v, valid,
                                                   None if context is None else kv_valid)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=kv_valid[:, None, None, :])  # (B, nh, T, dh)
        out = out.transpose(1, 2).reshape(B, T, H)  # (B, T, H)
        if index is not None:
            out = out.reshape(B * T, H).index_select(0, index)  # (N, H)
    attended = sublayer_output(layer.attention.output, out, x)  # (N', H), (N, H) or (B, T, H)
    out = sublayer_output(layer.output, layer.intermediate(attended), attended)  # (N', H), (N, H) or (B, T, H)
    return padded(out[:n_rows] if by_sequence else out), signals


def sublayer_output(module, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """A BERT sub-layer's output module (``BertSelfOutput`` / ``BertOutput``: dense, dropout,
    ``LayerNorm(h + residual)``): (..., K), (..., H) -> (..., H). In inference, where dropout is the
    identity, the add and the norm go to :func:`add_norm` (one compiled pass where it runs; else the
    same ops as the module); in training, the module itself."""
    if module.training:
        return module(hidden, residual)
    return add_norm(module.dense(hidden), residual, module.LayerNorm)


def add_norm(h: torch.Tensor, residual: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """``norm(h + residual)``, (M, H) each: one compiled pass where the CPU kernel takes it
    (:func:`bioprune.cpu_kernels.add_norm_fits`), else torch's add and norm."""
    if cpu_kernels.add_norm_fits(h, residual, norm) and cpu_kernels.library() is not None:
        return cpu_kernels.add_layer_norm(h, residual, norm)
    return norm(h + residual)


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], n_heads: int,
                     scaling: float, frozen: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
                     ) -> torch.Tensor:
    """Self-attention over packed rows, one sequence at a time, no mask: (N, H) -> (N, H).

    In bf16 on a CPU with AVX-512 BF16, one compiled call (:func:`bioprune.cpu_kernels.fused_attention`,
    the same roundings); else :func:`attention_by_sequence`'s torch ops. Arguments: as there.
    """
    if cpu_kernels.attention_fits(q, n_heads) and cpu_kernels.library() is not None:
        return cpu_kernels.fused_attention(q, k, v, lengths, n_heads, scaling, frozen)
    return attention_by_sequence(q, k, v, lengths, n_heads, scaling, frozen)


def attention_by_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], n_heads: int,
                          scaling: float, frozen: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
                          ) -> torch.Tensor:
    """Self-attention over packed rows in torch ops, one sequence at a time, no mask: (N, H) -> (N, H).

    q, k, v: (N, H) (views are fine: the int8 copy's fused projection gives strided ones) holding
    consecutive sequences of ``lengths`` tokens, then padding rows (past ``sum(lengths)``: ignored,
    zero in the output). ``frozen``: keys (Nc, H), values (Nc, H) and per-sequence counts of frozen
    context tokens (pruned tokens' states, :func:`run_layer`), packed the same way; each sequence
    also attends to its own. Why not SDPA in bf16: on CPUs without AMX
    (AVX-512 BF16 only) torch's fused bf16 attention runs 32-dim heads no faster than fp32 and took
    about half of a bf16 forward, while a plain bf16 matmul, softmax and matmul over one sequence's
    (nh, n, n) scores — small enough to stay in cache, and to be reused by the allocator rather than
    faulted in fresh — run faster (its FLOP/s and share of a forward: results/benchmark_roof.json);
    working on the packed rows also spares the padded layout's copies. Scores are rounded to bf16
    before the softmax (which accumulates in fp32), one rounding more than the fused kernel;
    agreement is measured with the precision. Each sequence's queries and keys are zero-padded to
    :func:`bioprune.shapes.bucketed_tokens` (padded keys masked out) so that the matmul shapes
    repeat and oneDNN's compiled kernels are reused.
    """
    N, H = q.shape
    dh = H // n_heads
    out = q.new_zeros(N, H)  # (N, H): rows past sum(lengths) (padding) stay zero
    start = c_start = 0
    for b, n in enumerate(lengths):
        rows = slice(start, start + n)
        nc = frozen[2][b] if frozen is not None else 0  # its frozen context, after its own tokens
        m = n + nc
        n_pad, m_pad = bucketed_tokens(n), bucketed_tokens(m)  # shapes that repeat (bioprune.shapes)
        qb = q.new_zeros(n_heads, n_pad, dh)  # (nh, n_pad, dh): rows past n are padding
        qb[:, :n] = q[rows].view(n, n_heads, dh).transpose(0, 1) * scaling
        kv = k.new_zeros(2, m_pad, H)  # keys and values (m_pad, H), rows past m are padding
        kv[0, :n], kv[1, :n] = k[rows], v[rows]
        if nc:
            c_rows = slice(c_start, c_start + nc)
            kv[0, n:m], kv[1, n:m] = frozen[0][c_rows], frozen[1][c_rows]
            c_start += nc
        kb = kv[0].view(m_pad, n_heads, dh).permute(1, 2, 0)  # (nh, dh, m_pad)
        vb = kv[1].view(m_pad, n_heads, dh).transpose(0, 1)  # (nh, m_pad, dh)
        scores = torch.matmul(qb, kb)  # (nh, n_pad, m_pad)
        if m_pad > m:
            scores[:, :, m:] = float("-inf")  # padded keys get no weight
        context = torch.matmul(scores.softmax(dim=-1), vb)  # (nh, n_pad, dh)
        out[rows].view(n, n_heads, dh).copy_(context[:, :n].transpose(0, 1))
        start += n
    return out


def project_qkv(attn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of ``x`` (..., H): one fused projection where the layer has one
    (``attn.qkv``, set by :func:`bioprune.int8.int8_copy`: the input is quantized once, not three
    times), else the layer's own three."""
    if (fused := getattr(attn, "qkv", None)) is None:
        return attn.query(x), attn.key(x), attn.value(x)
    return fused(x).chunk(3, dim=-1)  # (..., 3H) -> 3 x (..., H)


def context_keys_values(attn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of frozen context states ``x`` (..., H): one fused projection where the
    layer has one (``attn.kv``, set by the reduced-precision copies), else the layer's own two."""
    if (fused := getattr(attn, "kv", None)) is None:
        return attn.key(x), attn.value(x)
    return fused(x).chunk(2, dim=-1)  # (..., 2H) -> 2 x (..., H)


def _attention_with_signals(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
                            kv_valid: torch.Tensor | None = None):
    """Eager attention, one sequence at a time on its real tokens only, with its token signals.

    q (already scaled): (B, nh, T, dh); k, v: (B, nh, Tk, dh) with key mask ``kv_valid`` (B, Tk)
    (None: the keys are the queries' own tokens, masked by ``valid``). Slicing each right-padded
    sequence to its real tokens replaces the mask and keeps each (nh, n, nk) score matrix small
    enough to stay in cache: on 2 CPU threads this costs ~2x fused attention instead of ~10x for a
    batched masked version with ``entr``. Received attention is for the query tokens (the first n keys).
    """
    B, _, T, _ = q.shape
    context = v.new_zeros(B, v.size(1), T, v.size(-1))  # (B, nh, T, dh): padding rows stay zero
    entropy = q.new_zeros(B, T, dtype=torch.float32)
    received = q.new_zeros(B, T, dtype=torch.float32)
    for b, n in enumerate(valid.sum(dim=1).tolist()):
        if kv_valid is None:  # the keys are the queries' own tokens: their first n, a view
            kb, vb = k[b, :, :n], v[b, :, :n]  # (nh, nk, dh)
        else:
            keys = kv_valid[b].nonzero().squeeze(1)  # (nk,): the query tokens' own first, then context
            kb, vb = k[b].index_select(1, keys), v[b].index_select(1, keys)  # (nh, nk, dh)
        scores = torch.matmul(q[b, :, :n], kb.transpose(-1, -2)).float()  # (nh, n, nk); signals in fp32
        probs = scores.softmax(dim=-1)
        context[b, :, :n] = torch.matmul(probs.to(vb.dtype), vb)
        e, r = row_attention_signals(scores, probs)
        entropy[b, :n], received[b, :n] = e, r[:n]
    return context, (entropy, received)


def embed(model, input_ids: torch.Tensor) -> torch.Tensor:
    return model.base_model.embeddings(input_ids=input_ids)  # (B, T, H): model.bert / model.roberta's


def classify(model, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.dropout(hidden))  # (B, T, C)
