"""The pruned forward pass, in one place: the layer loop, prune/restore, the memory buffer, recovery, FLOPs.

    layers 0..k-1 on all tokens
    pruning point k: exit head k (+ the attention of layer k-1 for controllers that read it)
        -> token signals -> controller -> keep mask; the leavers keep their exit-head
        probabilities, and the memory buffer keeps the states at the first point
    layers k..L-1 on the kept tokens only, gathered into shorter sequences (:func:`prune`)
    recovery: triggers pick pruned tokens to re-insert; only the rows that need it re-run
        layers k1..L-1 (k1: the first pruning point) with those tokens back in place

Tokens are really *removed*: kept tokens are gathered into shorter, re-padded sequences that carry
their original positions, so every later matmul runs on fewer tokens (masking with -10000 would
keep them at full length: the flaw of public LTP code, Kim et al., KDD 2022). :func:`prune` and
:func:`restore` are one matched pair over the same index, the :class:`Sequences`' original
positions (as ToMe's merge/unmerge, Bolya et al., ICLR 2023); both return new values. With no
pruning point the loop is the dense model, exactly: each layer runs through :func:`bioprune.layer.run_layer`
on every token. Token-level early exit follows TOKEE (Li et al., ACL 2021); recovery is the
Drop-and-Restore of the Length-Adaptive Transformer (Kim & Cho, ACL 2021), applied only to the rows
that need it. Everything is batched tensor work under ``torch.no_grad()``; the Python loops are over
layers (and, inside :mod:`bioprune.layer`, over sequences where attention runs per sequence).

FLOPs are analytic, from actual sequence lengths (multiply-add = 2 FLOPs; Kaplan et al. 2020 and
nanoGPT's ``estimate_mfu``, without the causal halving). Per layer and sequence of n tokens, hidden
size H, feed-forward size I:

    linear:    2 n (4 H^2 + 2 H I)    Q, K, V, output projection and the two feed-forward matmuls
    attention: 2 * 2 n^2 H            QK^T and attention-times-V, quadratic in n

With m frozen context tokens (pruned tokens kept as keys and values): + 2 m (2 H^2) for their K and
V projections, and the attention term becomes 2 * 2 n (n + m) H. Token heads (classifier, exit
heads): 2 n H C. Embeddings, softmax, LayerNorm and GELU are left out (linear in n and small).
Padding is never counted. FLOPs saved are net of pruning's own cost, so they can be negative
(:func:`bioprune.types.flops_saved_ratio`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from bioprune.bf16 import bf16_copy
from bioprune.config import PruningConfig, is_default
from bioprune.controllers import Controller, RuleController, keep_mask
from bioprune.exits import ExitHeads
from bioprune.importance import neighbourhood_max, token_signals
from bioprune.int8 import int8_copy, mixed_int8_layers
from bioprune.layer import classify, embed, packing, run_layer
from bioprune.precision import resolve_precision
from bioprune.pruned_layers import PrunedLayers

# --- FLOPs -----------------------------------------------------------------------------------------


def layer_flop_parts(n_tokens: int, hidden: int, intermediate: int, n_context: int = 0) -> dict[str, int]:
    """:func:`layer_flops` by the part that spends it, keyed by the module within a BERT layer that
    runs it (``"attention"``: the scores and the weighted sum, no module): what a benchmark needs
    to weigh each part by the roof of the precision it runs at (training/benchmark_roof.py)."""
    return {"attention.self.qkv": 2 * n_tokens * 3 * hidden * hidden,
            "attention.output.dense": 2 * n_tokens * hidden * hidden,
            "intermediate.dense": 2 * n_tokens * hidden * intermediate,
            "output.dense": 2 * n_tokens * hidden * intermediate,
            "attention.self.kv": 4 * n_context * hidden * hidden,  # the frozen context's keys and values
            "attention": 4 * n_tokens * (n_tokens + n_context) * hidden}


def layer_flops(n_tokens: int, hidden: int, intermediate: int, n_context: int = 0) -> int:
    """One layer over ``n_tokens``; ``n_context`` frozen tokens add only their key and value
    projections and their attention columns. Works elementwise on tensors of counts too. The same
    sum as :func:`layer_flop_parts`, written out: the forward counts it per layer."""
    return (2 * n_tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * n_context * hidden * hidden
            + 4 * n_tokens * (n_tokens + n_context) * hidden)


def head_flops(n_tokens: int, hidden: int, n_classes: int) -> int:
    """A token head (the classifier or an exit head) over ``n_tokens``."""
    return 2 * n_tokens * hidden * n_classes


# --- prune and restore: one index, two directions ----------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """A batch of (possibly pruned) sequences and where their tokens came from.

    hidden: (B, T', H) states; positions: (B, T') original token positions (index into the window's
    input ids: the index :func:`restore` writes back through); valid: (B, T') True for real tokens,
    False for padding.
    """

    hidden: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.valid.sum(dim=1)  # (B,)


def prune(seqs: Sequences, keep: torch.Tensor) -> Sequences:
    """The kept tokens of each sequence, gathered into a shorter, re-padded batch.

    keep: (B, T') bool, True for tokens that stay (padding is never kept). Kept tokens come first,
    in their original order, then padding; their original positions travel with them.
    """
    keep = keep & seqs.valid
    B, T = keep.shape
    width = max(int(keep.sum(dim=1).max()), 1)
    arange = torch.arange(T, device=keep.device).expand(B, T)  # (B, T)
    order = torch.argsort((~keep).long() * T + arange, dim=1)[:, :width]  # (B, T'') kept first, then the rest
    hidden = seqs.hidden.gather(1, order.unsqueeze(-1).expand(-1, -1, seqs.hidden.size(-1)))  # (B, T'', H)
    return Sequences(hidden=hidden, positions=seqs.positions.gather(1, order), valid=keep.gather(1, order))


def restore(full: torch.Tensor, part: torch.Tensor, at: Sequences) -> torch.Tensor:
    """The inverse of :func:`prune`: a copy of ``full`` (B, T[, D]) with ``part`` (B, T'[, D]) written
    at ``at``'s original positions; slots ``at`` marks invalid (padding) write nothing."""
    if full.dim() == 2:
        return restore(full.unsqueeze(-1), part.unsqueeze(-1), at).squeeze(-1)
    B, T, D = full.shape
    out = torch.cat([full, full.new_zeros(B, 1, D)], dim=1)  # (B, T + 1, D): slot T is a bin
    index = torch.where(at.valid, at.positions, torch.full_like(at.positions, T))  # (B, T')
    out.scatter_(1, index.unsqueeze(-1).expand(-1, -1, D), part)
    return out[:, :T]


def merge(a: Sequences | None, b: Sequences) -> Sequences:
    """Two packed batches of the same rows as one packed (right-padded) batch."""
    if a is None:
        return b
    both = Sequences(**{f: torch.cat([getattr(a, f), getattr(b, f)], dim=1)
                        for f in ("hidden", "positions", "valid")})  # (B, Ta + Tb, ...)
    return prune(both, both.valid)


# --- what pruned tokens keep, and when to put them back ----------------------------------------------


@dataclass(frozen=True)
class Exits:
    """What the tokens that left took with them, in original positions, each (B, T[, C]).

    probs: exit-head label probabilities (zeros for tokens still in); layer: layers run before
    leaving (0: never left); score: the controller's importance when they left.
    """

    probs: torch.Tensor
    layer: torch.Tensor
    score: torch.Tensor

    @classmethod
    def none(cls, B: int, T: int, n_classes: int, device) -> "Exits":
        return cls(probs=torch.zeros(B, T, n_classes, device=device),
                   layer=torch.zeros(B, T, dtype=torch.long, device=device), score=torch.zeros(B, T, device=device))

    def add(self, leavers: Sequences, layer: int, probs: torch.Tensor, score: torch.Tensor) -> "Exits":
        """These exits plus ``leavers`` (valid marks the tokens that left) after ``layer`` layers."""
        return Exits(probs=restore(self.probs, probs, leavers),
                     layer=restore(self.layer, torch.full_like(leavers.positions, layer), leavers),
                     score=restore(self.score, score.float(), leavers))


@dataclass(frozen=True)
class MemoryBuffer:
    """State to re-insert pruned tokens: the states at the first pruning point and who left when.

    first_layer: the first pruning point (layers run before it); first_state: the sequences at that
    point (all tokens); pruned_layer: (B, T) how many layers each token ran (0: never pruned).
    """

    first_layer: int
    first_state: Sequences
    pruned_layer: torch.Tensor

    @property
    def pruned(self) -> torch.Tensor:
        return self.pruned_layer > 0  # (B, T)


TRIGGERS = ("entity_loss", "entropy_spike")
MIXED_NEEDS = ("precision mixed needs the layers it keeps bf16, chosen by "
               "python -m training.calibrate_int8 --data DATA --model MODEL --write-ranges (none beside this model)")


def recovery_triggers(probs: torch.Tensor, pruned: torch.Tensor, valid: torch.Tensor,
                      config: PruningConfig, outside_index: int = 0) -> dict[str, torch.Tensor]:
    """Per trigger, (B, T) the pruned tokens to re-insert.

    probs: (B, T, C) assembled label probabilities (exit-head ones for pruned tokens).

    * entity_loss: a pruned token whose exit head still gave an entity ``loss_entity_prob`` or more,
      or a pruned token right next to a kept token predicted as an entity (its boundary could move);
    * entropy_spike: a kept token next to pruned ones whose final-layer label entropy is at least
      ``spike_entropy_nats`` (the context it lost may matter), in a sequence with at least
      ``spike_min_tokens`` of them: one uncertain token is common, many mark the sequences where
      pruning changed the most.
    """
    kept = valid & ~pruned
    p_entity = 1.0 - probs[..., outside_index]  # (B, T)
    is_entity = probs.argmax(dim=-1) != outside_index  # (B, T)
    entity_kept = (kept & is_entity).float()
    next_to_entity = (neighbourhood_max(entity_kept, 1) > 0) & config.loss_next_to_entity
    loss_points = pruned & ((p_entity >= config.loss_entity_prob) | next_to_entity)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1)  # (B, T)
    near_pruned = neighbourhood_max(pruned.float(), config.recovery_window_tokens) > 0
    spike_points = kept & near_pruned & (entropy >= config.spike_entropy_nats)  # (B, T)
    spike_points &= spike_points.sum(dim=1, keepdim=True) >= config.spike_min_tokens
    w = config.recovery_window_tokens
    return {
        "entity_loss": pruned & (loss_points | (neighbourhood_max(loss_points.float(), w) > 0)),
        "entropy_spike": pruned & (neighbourhood_max(spike_points.float(), w) > 0),
    }


# --- the forward pass ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardResult:
    """What one batched forward produced, still as tensors (the engine turns it into a trace).

    probs: (B, T, C) label probabilities for every position (exit-head ones for pruned tokens);
    pruned_layer: (B, T) layers a pruned token ran before leaving (0: ran them all);
    pruned_score: (B, T) importance when it left; recovery: per trigger name, (B, T) the tokens it
    re-inserted; labels_before: (B, T) argmax before recovery; tokens_per_layer: (B, L) real tokens
    each layer ran on (recovery excluded); flops: (B,) FLOPs spent (recovery included);
    dense_flops: (B,) what the dense model spends. The engine reads it as numpy, one window at a
    time (:meth:`numpy`, :meth:`window`): the same record, one row.
    """

    probs: torch.Tensor
    pruned_layer: torch.Tensor
    pruned_score: torch.Tensor
    recovery: dict[str, torch.Tensor]
    labels_before: torch.Tensor
    tokens_per_layer: torch.Tensor
    flops: torch.Tensor
    dense_flops: torch.Tensor

    def numpy(self) -> "ForwardResult":
        """The same result as numpy arrays: one device-to-host copy per tensor for the whole batch."""
        return ForwardResult(**{f.name: ({t: m.cpu().numpy() for t, m in self.recovery.items()} if f.name == "recovery"
                                         else getattr(self, f.name).cpu().numpy()) for f in fields(self)})

    def window(self, row: int, seq_len: int) -> "ForwardResult":
        """Row ``row`` of a :meth:`numpy` batch, content tokens only ([CLS]/[SEP] and padding dropped):
        per-token fields (n[, C]), tokens_per_layer (L,), flops and dense_flops as floats."""
        inner = slice(1, seq_len - 1)
        return ForwardResult(probs=self.probs[row, inner], pruned_layer=self.pruned_layer[row, inner],
                             pruned_score=self.pruned_score[row, inner],
                             recovery={t: m[row, inner] for t, m in self.recovery.items()},
                             labels_before=self.labels_before[row, inner], tokens_per_layer=self.tokens_per_layer[row],
                             flops=float(self.flops[row]), dense_flops=float(self.dense_flops[row]))


class PrunedEncoder:
    """Runs a ``*ForTokenClassification`` model layer by layer, pruning as ``config`` says.

    Config-free: the config comes with each :meth:`forward`, so one encoder (and its reduced
    precision copies, made once) serves every configuration of an engine. ``pruned_layers``: the
    upper layers trained for pruning (:mod:`bioprune.pruned_layers`), run instead of the model's own
    by the pruned forwards they apply to.
    """

    def __init__(self, model, exit_heads: ExitHeads | None = None, controllers: dict[str, Controller] | None = None,
                 int8_ranges: dict[str, torch.Tensor] | None = None, pruned_layers: PrunedLayers | None = None):
        self.model = model
        self.int8_ranges = int8_ranges  # calibration of the int8 copy (bioprune.int8.load_calibration)
        self.pruned_layers = pruned_layers
        # the model with the trained upper layers (lower ones shared with ``model``)
        self.pruned_model = pruned_layers.model(model) if pruned_layers is not None else None
        self.exit_heads = exit_heads
        self.controllers = {"rule": RuleController()} if controllers is None else controllers
        self.layers = list(model.base_model.encoder.layer)
        self._copies = {}  # (precision, pruned) -> a model's copy at it, made on its first forward (:meth:`weights_at`)
        cfg = model.config
        self.hidden, self.intermediate, self.n_classes = cfg.hidden_size, cfg.intermediate_size, cfg.num_labels

    def check(self, config: PruningConfig) -> None:
        """Raise a clear error if ``config`` cannot run on this model."""
        if problem := self.cannot_run(config):
            raise ValueError(problem)

    def precision_at(self, config: PruningConfig, device) -> str:
        """The precision a forward at ``config`` runs on ``device``: :func:`resolve_precision`, where
        "auto" at the default operating point (:func:`bioprune.config.is_default`) takes this model's
        per-layer int8 ("mixed") if its calibration chose one."""
        calibrated = config.precision == "auto" and is_default(config) and self.mixed_layers() is not None
        return resolve_precision(config.precision, device, calibrated_int8=calibrated)

    def mixed_layers(self) -> tuple[int, ...] | None:
        """The layers precision "mixed" runs int8 on this model, None without a calibration naming them."""
        return mixed_int8_layers(len(self.layers), self.int8_ranges)

    def cannot_run(self, config: PruningConfig) -> str | None:
        """Why ``config`` cannot run on this model (one line), or None when it can."""
        if config.precision == "mixed" and self.mixed_layers() is None:
            return MIXED_NEEDS
        if not config.enabled:
            return None
        if max(config.prune_layers) >= len(self.layers):
            return f"prune_layers {config.prune_layers} must be < the model's {len(self.layers)} layers"
        if missing := [k for k in config.prune_layers if self.exit_heads is None or k not in self.exit_heads.layers]:
            have = self.exit_heads.layers if self.exit_heads is not None else ()
            return (f"no exit head after layer(s) {missing}; this model has exit heads at {have} "
                    "(train them with training/train_exits.py)")
        if config.controller not in self.controllers:
            return (f"controller {config.controller!r} is not available for this model (have "
                    f"{sorted(self.controllers)}; the learned one comes from training/train_controller.py)")
        return None

    def runs_pruned_layers(self, config: PruningConfig) -> bool:
        """Whether a forward at ``config`` runs the trained upper layers (:mod:`bioprune.pruned_layers`)."""
        return self.pruned_layers is not None and self.pruned_layers.applies(config)

    def weights_at(self, precision: str, pruned: bool = False):
        """The model a forward at a resolved ``precision`` runs (``pruned``: the one with the upper
        layers trained for pruning, :attr:`pruned_model`): the model itself for fp32; for bf16 a
        bf16 copy of it, made once. Every op of the copy runs in bf16 with no per-call casts (autocast
        over the fp32 weights re-cast each weight and each layer-norm output on every call: ~16% of a
        batch-1 forward); the CPU kernels accumulate norms, softmax and matmuls in fp32. Costs 2 bytes
        per parameter beside the fp32 model, which stays for fp32 and as the source of truth: a copy
        made before the weights change (training) is stale, so training decides in fp32. For int8 the
        copy is :func:`bioprune.int8.int8_copy` with the model's calibration (``int8_ranges``): bf16
        with the encoder's Linear layers int8 (1 byte per weight); for mixed the same with the
        layers the calibration keeps bf16 in bf16 (:func:`bioprune.int8.mixed_int8_layers`)."""
        source = self.pruned_model if pruned else self.model
        if source is None:
            raise ValueError("this model has no layers trained for pruning (pruned_layers.safetensors)")
        if precision == "fp32":
            return source
        if precision not in ("bf16", "int8", "mixed"):
            raise ValueError(f"not a resolved precision: {precision!r} (resolve_precision gives fp32, bf16, int8 "
                             "or mixed)")
        if (precision, pruned) not in self._copies:
            layers = self.mixed_layers() if precision == "mixed" else None  # None for int8: every layer
            if precision == "mixed" and layers is None:
                raise ValueError(MIXED_NEEDS)
            self._copies[precision, pruned] = (bf16_copy(source) if precision == "bf16"
                                               else int8_copy(source, self.int8_ranges, layers=layers))
        return self._copies[precision, pruned]

    def __getstate__(self) -> dict:
        """Picklable (``copy.deepcopy``, spaCy's ``nlp.pipe(n_process=N)`` under the "spawn" start
        method) without the reduced-precision copies: oneDNN's pre-packed weights have no storage to
        pickle, and :meth:`weights_at` remakes a copy from the fp32 model on its first forward."""
        return {**self.__dict__, "_copies": {}}

    def use_copy(self, precision: str, model, pruned: bool = False) -> None:
        """Run ``precision`` on ``model`` from now on (a copy made elsewhere, e.g. by
        training/calibrate_int8.py comparing int8 variants), instead of making one; ``pruned``: in
        place of the copy of the layers trained for pruning."""
        self._copies[precision, pruned] = model

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                config: PruningConfig) -> ForwardResult:
        """input_ids, attention_mask, special: (B, T); special marks tokens that never leave.

        Runs at ``config.precision`` (:mod:`bioprune.precision`) on :meth:`weights_at` that precision;
        probabilities and FLOPs come out in fp32/fp64 either way.
        """
        model = self.weights_at(self.precision_at(config, input_ids.device), self.runs_pruned_layers(config))
        B, T = input_ids.shape
        device = input_ids.device
        layers = list(model.base_model.encoder.layer)
        valid = attention_mask.bool()
        n_real = valid.sum(dim=1)  # (B,)
        dense = (len(layers) * layer_flops(n_real.double(), self.hidden, self.intermediate)
                 + head_flops(n_real.double(), self.hidden, self.n_classes))  # (B,)
        seqs = Sequences(hidden=embed(model, input_ids), positions=torch.arange(T, device=device).expand(B, T),
                         valid=valid)
        exits = Exits.none(B, T, self.n_classes, device)
        tokens = torch.zeros(B, len(layers), dtype=torch.long, device=device)  # (B, L) tokens each layer ran on
        context = torch.zeros_like(tokens)  # (B, L) frozen context tokens each layer attended to
        head_tokens = torch.zeros(B, dtype=torch.long, device=device)  # tokens the exit heads ran on
        points = set(config.prune_layers) if config.enabled else set()
        needs_attention = bool(points) and self.controllers[config.controller].needs_attention
        first = None  # (layer, sequences) at the first pruning point: the memory buffer's state
        attention = None  # (entropy, received) from the layer before a pruning point
        frozen = None  # pruned tokens' states, kept as keys and values when config.frozen_context
        packed, frozen_packed = packing(valid), None  # read once per stage, not once per layer
        lengths, frozen_lengths = n_real, None  # (B,) each, changed only at a pruning point
        for i, layer in enumerate(layers):
            if i in points:
                first = first or (i, seqs)
                head_tokens += lengths  # the exit head runs on the tokens still in
                kept, leavers, exits = self._prune_point(i, seqs, attention, special, config, exits, n_real)
                if config.frozen_context:  # gather the leavers' states only when they serve as context
                    frozen = merge(frozen, prune(leavers, leavers.valid))
                    frozen_packed, frozen_lengths = packing(frozen.valid), frozen.lengths
                seqs, packed, lengths = kept, packing(kept.valid), kept.lengths
            tokens[:, i] = lengths
            if frozen_lengths is not None:
                context[:, i] = frozen_lengths
            hidden, attention = run_layer(layer, seqs.hidden, seqs.valid, context=frozen,
                                          need_signals=(i + 1) in points and needs_attention,
                                          packed=packed, context_packed=frozen_packed)
            seqs = replace(seqs, hidden=hidden)  # a new record: the buffer's state stays as it was
        flops = (layer_flops(tokens.double(), self.hidden, self.intermediate, context.double()).sum(dim=1)
                 + head_flops((head_tokens + lengths).double(), self.hidden, self.n_classes))  # (B,): + the classifier
        final = classify(model, seqs.hidden).float().softmax(dim=-1)  # (B, T', C)
        probs = restore(exits.probs, final, seqs)  # (B, T, C)
        labels_before = probs.argmax(dim=-1)
        events: dict[str, torch.Tensor] = {t: torch.zeros_like(valid) for t in TRIGGERS}
        if first is not None and config.recovery:
            buffer = MemoryBuffer(first_layer=first[0], first_state=first[1], pruned_layer=exits.layer)
            events = recovery_triggers(probs, buffer.pruned, valid, config)
            recovered = torch.stack(list(events.values())).any(dim=0)  # (B, T)
            rows = recovered.any(dim=1).nonzero().flatten()  # (R,)
            if rows.numel():
                final, kept, extra = self._recover(model, buffer, rows, recovered[rows], config)
                probs[rows] = restore(probs[rows], final, kept)
                flops[rows] += extra
        return ForwardResult(probs=probs, pruned_layer=exits.layer, pruned_score=exits.score, recovery=events,
                             labels_before=labels_before, tokens_per_layer=tokens, flops=flops, dense_flops=dense)

    @torch.no_grad()
    def state_at_point(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                       config: PruningConfig) -> tuple[Sequences, torch.Tensor]:
        """The exact fp32 states after ``config``'s first pruning point's layers, (B, T, H) in
        sequences, and (B, T) True for the tokens that stay there: the same decision a pruned
        :meth:`forward` makes. What training the layers after the point needs
        (training/distill_pruned.py), without a full forward."""
        if not config.enabled:
            raise ValueError("state_at_point needs a pruning config (controller and prune_layers)")
        point = min(config.prune_layers)
        B, T = input_ids.shape
        valid = attention_mask.bool()
        seqs = Sequences(hidden=embed(self.model, input_ids),
                         positions=torch.arange(T, device=input_ids.device).expand(B, T), valid=valid)
        attention = None
        needs_attention = self.controllers[config.controller].needs_attention
        for i in range(point):
            hidden, attention = run_layer(self.layers[i], seqs.hidden, seqs.valid,
                                          need_signals=i + 1 == point and needs_attention)
            seqs = replace(seqs, hidden=hidden)
        kept, _, _ = self._prune_point(point, seqs, attention, special, config,
                                       Exits.none(B, T, self.n_classes, input_ids.device), valid.sum(dim=1))
        keep = torch.zeros_like(valid).scatter(1, kept.positions, kept.valid)  # (B, T)
        return seqs, keep

    def _prune_point(self, layer: int, seqs: Sequences, attention, special: torch.Tensor, config: PruningConfig,
                     exits: Exits, n_real: torch.Tensor) -> tuple[Sequences, Sequences, Exits]:
        """Decide who leaves after ``layer`` layers: the kept sequences (pruned), the leavers (``seqs``
        with only the leaving tokens valid) and ``exits`` with the leavers' exit probabilities added."""
        exit_logits = self.exit_heads(layer, seqs.hidden.float())  # (B, T', C); the heads stay fp32
        signals = token_signals(attention, exit_logits, seqs.valid, seqs.hidden, seqs.positions, n_real,
                                layer / len(self.layers))
        special_here = special.gather(1, seqs.positions)  # (B, T')
        prunable, importance = self.controllers[config.controller].importance(signals, config)
        keep = keep_mask(prunable, importance, seqs.valid, special_here, config.min_keep_ratio, n_real)
        leavers = replace(seqs, valid=seqs.valid & ~keep)  # (B, T') the tokens that leave
        if leavers.valid.any():
            exits = exits.add(leavers, layer, signals.exit_probs, importance)
        return prune(seqs, keep), leavers, exits

    def _recover(self, model, buffer: MemoryBuffer, rows: torch.Tensor, recovered: torch.Tensor,
                 config: PruningConfig):
        """Re-run layers first_layer..L-1 for ``rows`` with the recovered tokens back in.

        Tokens that stay pruned leave at the same point as in the first pass (a token pruned after
        layer 2 still runs layer 2), so the second pass never has less context than the first.
        Returns (R, T', C) probabilities of the tokens the second pass ran on, those sequences
        (their positions say where the probabilities go) and (R,) the FLOPs the pass cost.
        """
        state = buffer.first_state
        seqs = Sequences(hidden=state.hidden[rows], positions=state.positions[rows], valid=state.valid[rows])
        stays_out = buffer.pruned_layer[rows] * ~recovered  # (R, T): the point a still-pruned token leaves at, else 0
        frozen = None  # still-pruned tokens' states, when config.frozen_context
        packed, frozen_packed = packing(seqs.valid), None
        extra = torch.zeros(rows.numel(), dtype=torch.float64, device=rows.device)
        layers = list(model.base_model.encoder.layer)
        for i in range(buffer.first_layer, len(layers)):
            if i in config.prune_layers:
                leaving = seqs.valid & (stays_out.gather(1, seqs.positions) == i)  # (R, T')
                if config.frozen_context:
                    frozen = merge(frozen, prune(seqs, leaving))
                    frozen_packed = packing(frozen.valid)
                seqs = prune(seqs, seqs.valid & ~leaving)
                packed = packing(seqs.valid)
            extra += layer_flops(seqs.lengths.double(), self.hidden, self.intermediate,
                                 frozen.lengths.double() if frozen is not None else 0)
            seqs = replace(seqs, hidden=run_layer(layers[i], seqs.hidden, seqs.valid, context=frozen,
                                                  packed=packed, context_packed=frozen_packed)[0])
        extra += head_flops(seqs.lengths.double(), self.hidden, self.n_classes)
        final = classify(model, seqs.hidden).float().softmax(dim=-1)  # (R, T', C)
        return final, seqs, extra
