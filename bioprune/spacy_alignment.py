"""From the engine's character spans to spaCy entity spans, and merging them with existing ents.

Pure functions over a ``Doc``: the engine decodes entities on its own subword tokens, so a span
need not fall on spaCy token boundaries (e.g. "U.S." is one spaCy token but several words to a
BERT tokenizer). ``Doc.char_span(alignment_mode=...)`` snaps each span; what cannot be snapped, or
collides with the previous entity after snapping, is returned as skipped rather than raising.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from spacy.tokens import Doc, Span

from bioprune.identifiers import format_ids


def align_entities(doc: Doc, entities: Sequence, labels: Mapping[str, str],
                   alignment_mode: str) -> tuple[list[tuple[Span, object]], list]:
    """Pair each entity (sorted, non-overlapping ``Entity`` records) with its span, or skip it.

    Returns ``(aligned, skipped)``: ``aligned`` holds ``(span, entity)`` pairs in document order,
    labelled through ``labels`` and with the entity's MeSH IDs as ``kb_id_`` (``MESH:D1|MESH:D2``,
    empty when none); ``skipped`` the entities with no span of their own.
    """
    aligned: list[tuple[Span, object]] = []
    skipped = []
    for entity in entities:
        span = doc.char_span(entity.start, entity.end, label=labels[entity.label],
                             kb_id=format_ids(entity.ids) if entity.ids else "", alignment_mode=alignment_mode)
        if span is None or len(span) == 0 or (aligned and span.start < aligned[-1][0].end):
            skipped.append(entity)
            continue
        aligned.append((span, entity))
    return aligned, skipped


def merge_entities(existing: Sequence[Span], new: Sequence[Span], overwrite: bool) -> tuple[list[Span], list[Span]]:
    """``doc.ents`` after adding ``new``: on overlap the existing span wins unless ``overwrite``.

    Non-overlapping existing entities are always kept (as spaCy's EntityRuler does). Returns the
    merged spans, sorted, and those of ``new`` among them.
    """
    winners, others = (new, existing) if overwrite or not existing else (existing, new)
    taken = {i for span in winners for i in range(span.start, span.end)}
    kept = [span for span in others if not taken.intersection(range(span.start, span.end))]
    return sorted([*winners, *kept], key=lambda s: s.start), list(new) if winners is new else kept
