"""The ``._.bioprune_*`` extensions: plain data only, so docs survive DocBin, pickling and n_process.

spaCy serialises extension values with msgpack (``Doc.to_bytes``, ``DocBin``, the worker pipes of
``nlp.pipe(n_process=...)``), so every value here is a str, int, float, bool, list or dict —
never a bioprune dataclass. The component writes lists; ``DocBin`` reads user data back with
msgpack's ``use_list=False``, so after a DocBin round trip the same values are tuples.
"""
from __future__ import annotations

from spacy.tokens import Doc, Span

# name -> (Doc or Span, what it holds); the component docstring lists the same with types.
EXTENSIONS: dict[str, tuple[type, str]] = {
    "bioprune_pruned_tokens": (Doc, "list[dict]: one per pruned subword token"),
    "bioprune_recovery_events": (Doc, "list[dict]: one per recovery"),
    "bioprune_keep_ratio": (Doc, "float: fraction of tokens that ran the last layer"),
    "bioprune_flops_saved_ratio": (Doc, "float: 1 - FLOPs spent / dense FLOPs"),
    "bioprune_skipped_count": (Doc, "int: entities skipped because they could not be aligned"),
    "bioprune_confidence": (Span, "float: the engine's score for the entity"),
    "bioprune_ids": (Span, "list[str]: the entity's bare MeSH IDs (kb_id_ joins them), [] when none"),
}


def register_extensions() -> None:
    """Register every extension that is not registered yet (default None: not annotated)."""
    for name, (cls, _) in EXTENSIONS.items():
        if not cls.has_extension(name):
            cls.set_extension(name, default=None)


def trace_records(trace) -> dict:
    """Doc extension values for a :class:`bioprune.types.Trace` (None: the dense model, nothing pruned)."""
    if trace is None:
        return {"bioprune_pruned_tokens": [], "bioprune_recovery_events": [],
                "bioprune_keep_ratio": 1.0, "bioprune_flops_saved_ratio": 0.0}
    return {
        "bioprune_pruned_tokens": [dict(vars(token)) for token in trace.pruned_tokens],
        "bioprune_recovery_events": [
            {"trigger": e.trigger, "positions": list(e.positions), "layer": e.layer,
             "labels_before": list(e.labels_before), "labels_after": list(e.labels_after)}
            for e in trace.recovery_events],
        "bioprune_keep_ratio": float(trace.keep_ratio),
        "bioprune_flops_saved_ratio": float(trace.flops_saved_ratio),
    }
