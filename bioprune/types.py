"""Plain result records: entities, documents and annotations.

They hold character offsets and strings only (no tensors, no spaCy objects), so they pickle,
serialise to JSON and cross process boundaries (Ray actors, Gradio workers, spaCy n_process).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

ENTITY_TYPES = ("Chemical", "Disease")  # the BC5CDR mention types


@dataclass(frozen=True)
class Entity:
    """A predicted or gold mention: ``text == document_text[start:end]`` (0-based, end-exclusive)."""

    start: int
    end: int
    label: str  # "Chemical" | "Disease"
    text: str
    score: float = 1.0  # mean over its subword tokens of p(B-label) + p(I-label): the model's confidence in the type
    # MeSH IDs (bare, "D003924"; several for a composite mention, as in the BC5CDR gold), from the
    # linker (bioprune.linking). Empty when nothing matched or linking is off: writers that need a
    # value write "-" (PubTator3's convention), never BC5CDR's "-1".
    ids: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Document:
    """One input text with an identifier; ``text`` is what offsets refer to."""

    id: str
    text: str
    title_end: int | None = None  # where the title ends in ``text`` (PubTator/PubMed input), else None


@dataclass(frozen=True)
class Annotation:
    """The engine's answer for one document."""

    id: str
    text: str
    entities: tuple[Entity, ...] = field(default_factory=tuple)
    trace: "Trace | None" = None  # None for the dense model

    def to_dict(self) -> dict:
        out = {"id": self.id, "text": self.text, "entities": [e.to_dict() for e in self.entities]}
        return out if self.trace is None else {**out, "trace": self.trace.to_dict()}


@dataclass(frozen=True)
class PrunedToken:
    """A subword token that left the sequence: where it is, when it left, what label it kept."""

    position: int  # index of the token among the document's subword tokens (no special tokens)
    start: int  # its character offsets in the document text
    end: int
    layer: int  # how many encoder layers it ran before leaving
    score: float  # the controller's importance when it left (higher = more needed)
    label: str  # the BIO tag its exit head gave it (after recovery: the final tag)


@dataclass(frozen=True)
class RecoveryEvent:
    """One recovery: a trigger re-inserted pruned tokens and the later layers ran again."""

    trigger: str  # "entity_loss" | "entropy_spike"
    positions: tuple[int, ...]  # document token positions re-inserted
    layer: int  # the layer count the second pass started from
    labels_before: tuple[str, ...]  # their exit-head tags
    labels_after: tuple[str, ...]  # their tags after the second pass


def flops_saved_ratio(flops: float, dense_flops: float) -> float:
    """1 - flops / dense_flops: the fraction of the dense model's FLOPs that pruning saved, net of its cost.

    Negative when pruning spent more than it saved: its exit heads run on every token present at a
    pruning point (a document where nothing leaves costs the dense FLOPs plus theirs, e.g. -0.00018
    for a 6-layer H=384 model with one pruning point), and recovery re-runs later layers. Not
    clamped at 0, which would hide a configuration whose recovery costs more than its pruning saves.
    0.0 when there is nothing to compare with (dense_flops 0). Every FLOPs-saved figure (traces, run
    and corpus summaries, so the CLI's line, the app and the spaCy extension) is this one function.
    """
    return 1.0 - flops / dense_flops if dense_flops else 0.0


def format_flops_saved(ratio: float) -> str:
    """A FLOPs-saved ratio as a percentage for every report line (CLI, app), never "-0.0%": a small net
    cost (pruning removed less than its exit heads cost, :func:`flops_saved_ratio`) keeps its digits."""
    if -0.0005 < ratio < 0:
        return f"{ratio:.3%} (the exit heads cost more than pruning saved)"
    return f"{ratio:.1%}"


@dataclass(frozen=True)
class Trace:
    """What pruning did to one document (summed over its windows)."""

    pruned_tokens: tuple[PrunedToken, ...] = ()
    recovery_events: tuple[RecoveryEvent, ...] = ()
    tokens_per_layer: tuple[int, ...] = ()  # real tokens each layer ran on, special tokens included
    flops: float = 0.0  # FLOPs spent, recovery included
    dense_flops: float = 0.0  # FLOPs the dense model spends on the same windows

    @property
    def flops_saved_ratio(self) -> float:
        return flops_saved_ratio(self.flops, self.dense_flops)

    @property
    def keep_ratio(self) -> float:
        """Fraction of tokens that ran the last layer."""
        return self.tokens_per_layer[-1] / self.tokens_per_layer[0] if self.tokens_per_layer and self.tokens_per_layer[0] else 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_saved_ratio": self.flops_saved_ratio, "keep_ratio": self.keep_ratio}
