"""Mention-level error analysis: what kind of error, and which errors pruning adds and why.

Pure functions over character spans ``(start, end, type)`` (end-exclusive), torch-free.

**Error kinds** (one document at a time; exact matches are correct and never errors):

* ``type``: a prediction with exactly the span of an unmatched gold mention but another type;
* ``boundary``: a prediction overlapping an unmatched gold mention of the same type;
* ``boundary_type``: a prediction overlapping an unmatched gold mention of another type only
  (both wrong; kept apart so that the four kinds the literature uses stay clean);
* ``spurious``: a prediction overlapping no unmatched gold mention (a prediction nested in a
  mention that *was* found exactly is spurious too);
* ``missed``: an unmatched gold mention that no wrong prediction overlaps.

Each wrong prediction is one error, paired with the gold mention that explains it best (exact span
first, then same type, then the largest overlap, then the leftmost); several wrong predictions may
pair with one gold mention (``renal`` and ``failure`` for ``renal failure``: two boundary errors).
An error is identified by ``(kind, gold, pred)``, so the errors of two systems on the same text
compare as sets: those of the pruned model that the dense model does not make are the errors
**pruning adds**.

**Attribution** of an added error, from the pruned run's trace: the tokens that left early and
were not re-inserted by recovery (:func:`still_pruned`), with the label their exit head gave
them. The error's *region* is its gold span and its predicted span; a pruned token belongs to it
when their character ranges overlap. Three flags, not exclusive:

* ``entity_tokens_pruned``: a token of the gold mention was pruned;
* ``wrong_early_exit``: a pruned token in the region kept a label whose entity type (``O``,
  Chemical, Disease; B/I ignored) differs from the gold type at that token;
* ``context_lost``: no token of the region was pruned — all the mention's tokens ran every layer,
  yet the prediction changed (the tokens that left elsewhere took context with them).

and one primary ``cause`` for the counts, in that order of precedence (``other``: tokens of the
region were pruned, but none of the gold mention and all with right labels).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bioprune.types import PrunedToken, Trace

Span = tuple[int, int, str]  # (start, end, type), characters, end-exclusive

ERROR_KINDS: tuple[str, ...] = ("boundary", "type", "boundary_type", "missed", "spurious")
CAUSES: tuple[str, ...] = ("entity_tokens_pruned", "wrong_early_exit", "context_lost", "other")


@dataclass(frozen=True, order=True)
class MentionError:
    """One error in one document: ``gold`` is None for spurious, ``pred`` None for missed."""

    doc_id: str
    kind: str
    gold: Span | None
    pred: Span | None

    @property
    def region(self) -> tuple[int, int]:
        """The characters the error is about: its gold and predicted spans together."""
        spans = [s for s in (self.gold, self.pred) if s is not None]
        return min(s[0] for s in spans), max(s[1] for s in spans)


@dataclass(frozen=True)
class Attribution:
    """Why pruning added one error (see the module docstring)."""

    error: MentionError
    cause: str
    entity_tokens_pruned: bool
    wrong_early_exit: bool
    context_lost: bool
    pruned_in_region: tuple[PrunedToken, ...]


def still_pruned(trace: Trace | None) -> tuple[PrunedToken, ...]:
    """The trace's pruned tokens that recovery did not re-insert (a re-inserted token ran the later
    layers again, so its label is no longer an early exit's); none for a dense run."""
    if trace is None:
        return ()
    recovered = {p for event in trace.recovery_events for p in event.positions}
    return tuple(t for t in trace.pruned_tokens if t.position not in recovered)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Half-open character ranges share at least one character."""
    return a[0] < b[1] and b[0] < a[1]


def classify_errors(doc_id: str, gold: Iterable[Span], pred: Iterable[Span]) -> list[MentionError]:
    """Every error of ``pred`` against ``gold`` in one document, sorted (see the module docstring)."""
    gold, pred = set(gold), set(pred)
    unmatched_gold = sorted(gold - pred)
    errors: list[MentionError] = []
    explained: set[Span] = set()
    for p in sorted(pred - gold):
        candidates = [g for g in unmatched_gold if overlaps(g[:2], p[:2])]
        if not candidates:
            errors.append(MentionError(doc_id, "spurious", None, p))
            continue
        # exact span first, then same type, then the largest overlap (max start - min end: minus it), then the leftmost
        g = min(candidates, key=lambda g: (g[:2] != p[:2], g[2] != p[2], max(g[0], p[0]) - min(g[1], p[1]), g))
        kind = "type" if g[:2] == p[:2] else ("boundary" if g[2] == p[2] else "boundary_type")
        errors.append(MentionError(doc_id, kind, g, p))
        explained.add(g)
    errors += [MentionError(doc_id, "missed", g, None) for g in unmatched_gold if g not in explained]
    return sorted(errors)


def corpus_errors(gold: Mapping[str, Sequence[Span]], pred: Mapping[str, Sequence[Span]]) -> list[MentionError]:
    """:func:`classify_errors` over every document of ``gold`` (a document missing from ``pred``
    has no predictions)."""
    return [e for doc_id in gold for e in classify_errors(doc_id, gold[doc_id], pred.get(doc_id, ()))]


def count_kinds(errors: Iterable[MentionError]) -> dict[str, int]:
    """Errors per kind, every kind present (0 when none)."""
    counts = Counter(e.kind for e in errors)
    return {k: counts.get(k, 0) for k in ERROR_KINDS}


def added_errors(dense: Iterable[MentionError], pruned: Iterable[MentionError]) -> list[MentionError]:
    """Errors the pruned model makes and the dense model does not (same kind, gold and prediction)."""
    seen = set(dense)
    return sorted(e for e in pruned if e not in seen)


def gold_type_at(start: int, end: int, gold: Iterable[Span]) -> str:
    """The gold entity type at characters ``start:end`` (``O`` outside every gold mention; the
    longest mention wins where gold mentions nest)."""
    hits = [g for g in gold if overlaps((start, end), g[:2])]
    return max(hits, key=lambda g: (g[1] - g[0], -g[0]))[2] if hits else "O"


def attribute(error: MentionError, pruned_tokens: Sequence[PrunedToken], gold: Sequence[Span]) -> Attribution:
    """Why pruning added ``error``, from the pruned tokens of its document and the document's gold."""
    region = error.region
    in_region = tuple(t for t in pruned_tokens if overlaps((t.start, t.end), region))
    in_gold = error.gold is not None and any(overlaps((t.start, t.end), error.gold[:2]) for t in in_region)
    wrong = any(t.label.split("-", 1)[-1] != gold_type_at(t.start, t.end, gold) for t in in_region)
    lost = not in_region
    cause = ("entity_tokens_pruned" if in_gold else "wrong_early_exit" if wrong
             else "context_lost" if lost else "other")
    return Attribution(error, cause, in_gold, wrong, lost, in_region)


def attribute_added(added: Iterable[MentionError], pruned_tokens: Mapping[str, Sequence[PrunedToken]],
                    gold: Mapping[str, Sequence[Span]]) -> list[Attribution]:
    """:func:`attribute` for each added error, with its document's pruned tokens and gold."""
    return [attribute(e, pruned_tokens.get(e.doc_id, ()), gold.get(e.doc_id, ())) for e in added]


def attribution_counts(attributions: Iterable[Attribution]) -> dict:
    """Added errors per primary cause, per flag, and per (kind, cause)."""
    attributions = list(attributions)
    by_cause = Counter(a.cause for a in attributions)
    by_kind: dict[str, dict[str, int]] = {}
    for a in attributions:
        by_kind.setdefault(a.error.kind, {c: 0 for c in CAUSES})[a.cause] += 1
    return {"total": len(attributions),
            "by_cause": {c: by_cause.get(c, 0) for c in CAUSES},
            "by_flag": {f: sum(getattr(a, f) for a in attributions)
                        for f in ("entity_tokens_pruned", "wrong_early_exit", "context_lost")},
            "by_kind_and_cause": {k: by_kind[k] for k in ERROR_KINDS if k in by_kind}}


def _mention(text: str, span: Span | None) -> dict | None:
    return None if span is None else {"text": text[span[0]:span[1]], "type": span[2], "start": span[0], "end": span[1]}


def example(attribution: Attribution, text: str, dense_pred: Sequence[Span]) -> dict:
    """A short, readable record of one added error: the mention, what dense and pruned predicted
    there, and the tokens that left early inside it (with the label they kept)."""
    e = attribution.error
    region = e.region
    dense_here = sorted(s for s in dense_pred if overlaps(s[:2], region))
    return {"doc_id": e.doc_id, "kind": e.kind, "cause": attribution.cause,
            "gold": _mention(text, e.gold), "pruned": _mention(text, e.pred),
            "dense": [_mention(text, s) for s in dense_here],
            "pruned_tokens": [{"text": text[t.start:t.end], "label": t.label, "layer": t.layer}
                              for t in attribution.pruned_in_region]}


def pick_examples(attributions: Sequence[Attribution], per_cause: int = 3) -> list[Attribution]:
    """Up to ``per_cause`` attributions per cause, spread over error kinds, in a stable order."""
    picked: list[Attribution] = []
    for cause in CAUSES:
        pool = sorted((a for a in attributions if a.cause == cause), key=lambda a: a.error)
        by_kind: dict[str, list[Attribution]] = {}
        for a in pool:
            by_kind.setdefault(a.error.kind, []).append(a)
        chosen: list[Attribution] = []
        while len(chosen) < per_cause and any(by_kind.values()):  # round-robin over kinds
            for kind in ERROR_KINDS:
                if by_kind.get(kind) and len(chosen) < per_cause:
                    chosen.append(by_kind[kind].pop(0))
        picked += chosen
    return picked
