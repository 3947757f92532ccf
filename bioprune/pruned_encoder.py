"""PrunedEncoder: the forward pass with pruning points, exit labels and recovery.

    layers 0..k-1 on all tokens
    prune point k: attention probs of layer k-1 + exit head k -> signals -> controller -> keep mask
        pruned tokens keep exit-head probabilities; the MemoryBuffer keeps the states at point k
    layers k..L-1 on the kept tokens only (gathered into shorter sequences)
    recovery: triggers pick pruned tokens to re-insert; only the rows that need it re-run
        layers k1..L-1 (k1: the first pruning point) with those tokens back in place; the others
        leave at the point they left in the first pass

Everything is batched tensor work under ``torch.no_grad()``; the only Python loop is over layers.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from bioprune.bf16 import bf16_copy
from bioprune.config import PruningConfig
from bioprune.controllers import Controller, RuleController, keep_mask
from bioprune.encoder import ForwardResult, Sequences, base_of, classify, embed, prune, restore, run_layer
from bioprune.exits import ExitHeads
from bioprune.flops import head_flops, layer_flops
from bioprune.importance import token_signals
from bioprune.int8 import int8_copy
from bioprune.memory import TRIGGERS, MemoryBuffer, recovery_triggers
from bioprune.precision import resolve_precision


def merge(a: Sequences | None, b: Sequences) -> Sequences:
    """Two packed batches of the same rows as one packed (right-padded) batch."""
    if a is None:
        return b
    both = Sequences(hidden=torch.cat([a.hidden, b.hidden], dim=1), positions=torch.cat([a.positions, b.positions], dim=1),
                     valid=torch.cat([a.valid, b.valid], dim=1))  # (B, Ta + Tb, ...)
    return prune(both, both.valid)[0]


class PrunedEncoder:
    """Runs a ``*ForTokenClassification`` model layer by layer, pruning as ``config`` says."""

    def __init__(self, model, exit_heads: ExitHeads | None = None, controllers: dict[str, Controller] | None = None,
                 int8_ranges: dict[str, torch.Tensor] | None = None):
        self.model = model
        self.int8_ranges = int8_ranges  # calibration of the int8 copy (bioprune.int8.load_calibration)
        self.exit_heads = exit_heads
        self.controllers = {"rule": RuleController()} if controllers is None else controllers
        self.layers = list(base_of(model).encoder.layer)
        self._copies = {}  # precision -> the model's copy at it, made on its first forward (:meth:`weights_at`)
        cfg = model.config
        self.hidden, self.intermediate, self.n_classes = cfg.hidden_size, cfg.intermediate_size, cfg.num_labels

    def check(self, config: PruningConfig) -> None:
        """Raise a clear error if ``config`` cannot run on this model."""
        if not config.enabled:
            return
        if max(config.prune_layers) >= len(self.layers):
            raise ValueError(f"prune_layers {config.prune_layers} must be < the model's {len(self.layers)} layers")
        missing = [k for k in config.prune_layers if self.exit_heads is None or k not in self.exit_heads.layers]
        if missing:
            have = self.exit_heads.layers if self.exit_heads is not None else ()
            raise ValueError(f"no exit head after layer(s) {missing}; this model has exit heads at {have} "
                             "(train them with training/train_exits.py)")
        if config.controller not in self.controllers:
            raise ValueError(f"controller {config.controller!r} is not available for this model (have "
                             f"{sorted(self.controllers)}; the learned one comes from training/train_controller.py)")

    def _layer_flops(self, n: torch.Tensor, context: Sequences | None = None) -> torch.Tensor:
        n_context = context.lengths.double() if context is not None else 0
        return layer_flops(n, self.hidden, self.intermediate, n_context)

    def weights_at(self, precision: str):
        """The model a forward at a resolved ``precision`` runs: the model itself for fp32; for bf16 a
        bf16 copy of it, made once. Every op of the copy runs in bf16 with no per-call casts (autocast
        over the fp32 weights re-cast each weight and each layer-norm output on every call: ~16% of a
        batch-1 forward); the CPU kernels accumulate norms, softmax and matmuls in fp32. Costs 2 bytes
        per parameter beside the fp32 model, which stays for fp32 and as the source of truth: a copy
        made before the weights change (training) is stale, so training decides in fp32. For int8 the
        copy is :func:`bioprune.int8.int8_copy` with the model's calibration (``int8_ranges``): bf16
        with the encoder's Linear layers int8 (1 byte per weight)."""
        if precision == "fp32":
            return self.model
        if precision not in ("bf16", "int8"):
            raise ValueError(f"not a resolved precision: {precision!r} (resolve_precision gives fp32, bf16 or int8)")
        if precision not in self._copies:
            self._copies[precision] = (int8_copy(self.model, self.int8_ranges) if precision == "int8"
                                       else bf16_copy(self.model))
        return self._copies[precision]

    def use_copy(self, precision: str, model) -> None:
        """Run ``precision`` on ``model`` from now on (a copy made elsewhere, e.g. by
        training/calibrate_int8.py comparing int8 variants), instead of making one."""
        self._copies[precision] = model

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                config: PruningConfig) -> ForwardResult:
        """input_ids, attention_mask, special: (B, T); special marks tokens that never leave.

        Runs at ``config.precision`` (:mod:`bioprune.precision`) on :meth:`weights_at` that precision;
        probabilities and FLOPs come out in fp32/fp64 either way.
        """
        model = self.weights_at(resolve_precision(config.precision, input_ids.device))
        return self._forward(model, input_ids, attention_mask, special, config)

    def _forward(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                 config: PruningConfig) -> ForwardResult:
        B, T = input_ids.shape
        layers = list(base_of(model).encoder.layer)
        L = len(layers)
        valid = attention_mask.bool()
        n_full = valid.sum(dim=1).double()  # (B,)
        dense = L * self._layer_flops(n_full) + head_flops(n_full, self.hidden, self.n_classes)
        seqs = Sequences(hidden=embed(model, input_ids),
                         positions=torch.arange(T, device=input_ids.device).expand(B, T), valid=valid)
        probs = torch.zeros(B, T, self.n_classes, device=input_ids.device)  # (B, T, C)
        pruned_layer = torch.zeros(B, T, dtype=torch.long, device=input_ids.device)
        pruned_score = torch.zeros(B, T, device=input_ids.device)
        tokens = torch.zeros(B, L, dtype=torch.long, device=input_ids.device)
        flops = torch.zeros(B, dtype=torch.float64, device=input_ids.device)
        points = set(config.prune_layers) if config.enabled else set()
        needs_attention = bool(points) and self.controllers[config.controller].needs_attention
        buffer = None
        attention = None  # (entropy, received) from the layer before a pruning point
        frozen = None  # pruned tokens' states, kept as keys and values when config.frozen_context
        for i, layer in enumerate(layers):
            if i in points:
                if buffer is None:
                    buffer = MemoryBuffer(first_layer=i, first_state=seqs, pruned_layer=pruned_layer,
                                          pruned_score=pruned_score)
                flops += head_flops(seqs.lengths.double(), self.hidden, self.n_classes)  # exit head
                before = seqs
                seqs, leaving = self._prune_point(i, seqs, attention, special, config, probs, pruned_layer,
                                                  pruned_score, n_real=valid.sum(dim=1))
                if config.frozen_context:  # gather the leavers' states only when they serve as context
                    frozen = merge(frozen, prune(before, leaving)[0])
            n = seqs.lengths
            tokens[:, i] = n
            flops += self._layer_flops(n.double(), frozen)
            hidden, attention = run_layer(layer, seqs.hidden, seqs.valid, context=frozen,
                                          need_signals=(i + 1) in points and needs_attention)
            seqs = replace(seqs, hidden=hidden)  # a new record: the buffer's state stays as it was
        flops += head_flops(seqs.lengths.double(), self.hidden, self.n_classes)
        final = classify(model, seqs.hidden).float().softmax(dim=-1)  # (B, T', C)
        probs = restore(probs, final, seqs.positions, seqs.valid)
        labels_before = probs.argmax(dim=-1)
        recovered = torch.zeros_like(valid)
        events: dict[str, torch.Tensor] = {t: torch.zeros_like(valid) for t in TRIGGERS}
        if buffer is not None and config.recovery:
            events = recovery_triggers(probs, buffer.pruned, valid, config)
            for mask in events.values():
                recovered |= mask
            rows = recovered.any(dim=1).nonzero().flatten()  # (R,)
            if rows.numel():
                final, kept, extra = self._recover(model, buffer, rows, recovered[rows], config)
                probs[rows] = restore(probs[rows], final, kept.positions, kept.valid)
                flops[rows] += extra
        return ForwardResult(probs=probs, pruned_layer=pruned_layer, pruned_score=pruned_score,
                             recovered=recovered, recovery=events, labels_before=labels_before,
                             tokens_per_layer=tokens, flops=flops, dense_flops=dense)

    def _prune_point(self, layer: int, seqs: Sequences, attention, special: torch.Tensor,
                     config: PruningConfig, probs, pruned_layer, pruned_score,
                     n_real: torch.Tensor) -> tuple[Sequences, torch.Tensor]:
        """Decide and remove; record the leavers' exit probabilities into the (B, T) buffers.

        Returns the kept sequences and ``leaving`` (B, T'), the tokens that left (a mask over ``seqs``).
        """
        exit_logits = self.exit_heads(layer, seqs.hidden.float())  # (B, T', C); the heads stay fp32
        signals = token_signals(attention, exit_logits, seqs.valid, seqs.hidden, seqs.positions, n_real,
                                layer / len(self.layers))
        special_here = special.gather(1, seqs.positions)  # (B, T')
        prunable, importance = self.controllers[config.controller].importance(signals, config)
        keep = keep_mask(prunable, importance, seqs.valid, special_here, config.min_keep_ratio, n_real)
        leaving = seqs.valid & ~keep  # (B, T')
        if leaving.any():
            probs.copy_(restore(probs, signals.exit_probs, seqs.positions, leaving))
            layer_map = torch.full(leaving.shape, layer, dtype=torch.long, device=leaving.device)
            pruned_layer.copy_(restore(pruned_layer.unsqueeze(-1), layer_map.unsqueeze(-1), seqs.positions,
                                       leaving).squeeze(-1))
            pruned_score.copy_(restore(pruned_score.unsqueeze(-1), importance.unsqueeze(-1).float(),
                                       seqs.positions, leaving).squeeze(-1))
        return prune(seqs, keep)[0], leaving

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
        extra = torch.zeros(rows.numel(), dtype=torch.float64, device=rows.device)
        layers = list(base_of(model).encoder.layer)
        for i in range(buffer.first_layer, len(layers)):
            if i in config.prune_layers:
                leaving = seqs.valid & (stays_out.gather(1, seqs.positions) == i)  # (R, T')
                if config.frozen_context:
                    frozen = merge(frozen, prune(seqs, leaving)[0])
                seqs = prune(seqs, seqs.valid & ~leaving)[0]
            extra += self._layer_flops(seqs.lengths.double(), frozen)
            seqs = replace(seqs, hidden=run_layer(layers[i], seqs.hidden, seqs.valid, context=frozen)[0])
        extra += head_flops(seqs.lengths.double(), self.hidden, self.n_classes)
        final = classify(model, seqs.hidden).float().softmax(dim=-1)  # (R, T', C)
        return final, seqs, extra
