"""Per-group scores: does pruning hurt some kinds of mentions or documents more than others?

Pure functions, torch-free. A *grouping* maps a mention (gold or predicted) to a group name:

* ``entity_type``: the mention's type;
* ``mention_length_words``: whitespace-separated words of the mention text: 1, 2, 3, 4+;
* ``seen_in_training``: whether the lower-cased mention text (whitespace collapsed) is among the
  gold mention strings of the training data (``seen`` / ``unseen``);
* ``abbreviation``: :func:`is_abbreviation` (``abbreviation`` / ``full_form``);
* ``abstract_length_words``: the whitespace word count of the mention's *document*, in buckets
  whose edges are the quartiles of the evaluated documents (:func:`quantile_edges`).

**How a group is scored.** Recall counts the gold mentions of the group that were predicted
exactly. Precision counts the predicted mentions of the group that are gold, the group of a
prediction being computed on the *prediction itself* (its own type, text, length; its document for
abstract length). F1 combines the two. An exact match has the same span, text and document as its
gold mention, so it falls in the same group on both sides; a boundary error, though, moves a
prediction into the group of its own (wrong) text — the honest choice, since a prediction's gold
group is undefined when it matches nothing. For ``entity_type`` this is the usual per-type score,
and for document groups the usual score over those documents. Recall is the measure to read for
groups defined on gold mention text (length, seen, abbreviation); precision there answers "how
often are predictions *of that form* right".
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class MentionRecord:
    """A gold or predicted mention with its text, enough to place it in any group."""

    doc_id: str
    start: int
    end: int
    type: str
    text: str

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.doc_id, self.start, self.end, self.type)


Grouping = Callable[[MentionRecord], str]

_MAX_ABBREVIATION_CHARS = 12


def is_abbreviation(text: str) -> bool:
    """Short-form heuristic: one token (no whitespace) of at most 12 characters with at least two
    capital letters and no more lower-case letters than capitals.

    Catches acronyms (``HCC``, ``MPTP``, ``AIDS``) and mixed-case or digit short forms (``mCPP``,
    ``5-FU``, ``COX-2``, ``IgA``, ``HIV-1``); misses one-capital short forms (``Ca``, ``Dox``) and
    counts chemical formulas (``NaCl``, ``H2O2``) as abbreviations. Everything else is a full form.
    """
    text = text.strip()
    if not text or len(text) > _MAX_ABBREVIATION_CHARS or any(c.isspace() for c in text):
        return False
    upper = sum(c.isupper() for c in text)
    lower = sum(c.islower() for c in text)
    return upper >= 2 and lower <= upper


def normalise_mention(text: str) -> str:
    """Lower-cased, whitespace runs collapsed: the form compared for seen / unseen."""
    return " ".join(text.lower().split())


def mention_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The normalised strings of training mentions (:func:`normalise_mention`)."""
    return frozenset(normalise_mention(t) for t in texts)


def word_count(text: str) -> int:
    return len(text.split())


def length_bucket(n_words: int, top: int = 4) -> str:
    """``"1"``, ``"2"``, ..., ``"{top}+"``."""
    return f"{top}+" if n_words >= top else str(max(n_words, 1))


def quantile_edges(values: Sequence[int], n_buckets: int = 4) -> list[int]:
    """Upper edges (inclusive) of the first ``n_buckets - 1`` buckets: the values at the 1/n, 2/n,
    ... quantiles (nearest rank), duplicates removed."""
    ordered = sorted(values)
    if not ordered:
        return []
    edges = [ordered[min(len(ordered) - 1, max(0, -(-k * len(ordered) // n_buckets) - 1))] for k in range(1, n_buckets)]
    return sorted(set(edges))


def bucket_name(value: int, edges: Sequence[int], unit: str = "words") -> str:
    """The bucket of ``value`` for inclusive upper ``edges``: ``"<=120 words"``, ``"121-180 words"``,
    ..., ``">240 words"``."""
    i = bisect_right(edges, value - 1)  # first edge >= value
    if i == 0:
        return f"<={edges[0]} {unit}" if edges else f"all {unit}"
    if i == len(edges):
        return f">{edges[-1]} {unit}"
    return f"{edges[i - 1] + 1}-{edges[i]} {unit}"


def bucket_order(edges: Sequence[int], unit: str = "words") -> list[str]:
    """Bucket names of :func:`bucket_name` from shortest to longest."""
    if not edges:
        return [f"all {unit}"]
    return ([f"<={edges[0]} {unit}"] + [f"{a + 1}-{b} {unit}" for a, b in zip(edges, edges[1:])]
            + [f">{edges[-1]} {unit}"])


def standard_groupings(training_vocabulary: frozenset[str], doc_words: Mapping[str, int],
                       doc_edges: Sequence[int]) -> dict[str, tuple[Grouping, list[str]]]:
    """The groupings of the module docstring, each with its groups in display order."""
    doc_bucket = {d: bucket_name(n, doc_edges) for d, n in doc_words.items()}
    return {
        "entity_type": (lambda m: m.type, ["Chemical", "Disease"]),
        "mention_length_words": (lambda m: length_bucket(word_count(m.text)), ["1", "2", "3", "4+"]),
        "seen_in_training": (lambda m: "seen" if normalise_mention(m.text) in training_vocabulary else "unseen",
                             ["seen", "unseen"]),
        "abbreviation": (lambda m: "abbreviation" if is_abbreviation(m.text) else "full_form",
                         ["abbreviation", "full_form"]),
        "abstract_length_words": (lambda m: doc_bucket[m.doc_id], bucket_order(doc_edges)),
    }


def group_scores(gold: Iterable[MentionRecord], pred: Iterable[MentionRecord], group_of: Grouping,
                 order: Sequence[str] = ()) -> dict[str, dict]:
    """Per group: recall over its gold mentions, precision over its predictions, F1, and counts.

    Duplicated keys count once. Groups come in ``order``, then any others sorted by name.
    """
    gold = {m.key: m for m in gold}
    pred = {m.key: m for m in pred}
    n_gold, tp_gold, n_pred, tp_pred = Counter(), Counter(), Counter(), Counter()
    for mentions, others, n, tp in ((gold, pred, n_gold, tp_gold), (pred, gold, n_pred, tp_pred)):
        for k, m in mentions.items():
            n[group_of(m)] += 1
            tp[group_of(m)] += k in others
    names = [g for g in order if g in n_gold or g in n_pred]
    names += sorted((set(n_gold) | set(n_pred)) - set(names))
    out = {}
    for g in names:
        r = tp_gold[g] / n_gold[g] if n_gold[g] else 0.0  # recall: from the gold side
        p = tp_pred[g] / n_pred[g] if n_pred[g] else 0.0  # precision: from the predicted side
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[g] = {"precision": p, "recall": r, "f1": f, "n_gold": n_gold[g], "tp_gold": tp_gold[g],
                  "n_pred": n_pred[g], "tp_pred": tp_pred[g]}
    return out


def compare_groups(gold: Sequence[MentionRecord], dense: Sequence[MentionRecord], pruned: Sequence[MentionRecord],
                   group_of: Grouping, order: Sequence[str] = ()) -> dict[str, dict]:
    """Per group: dense and pruned scores and the drop (dense - pruned) in points of each measure."""
    d = group_scores(gold, dense, group_of, order)
    p = group_scores(gold, pruned, group_of, order)
    names = list(d) + [g for g in p if g not in d]
    empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_gold": 0, "tp_gold": 0, "n_pred": 0, "tp_pred": 0}
    out = {}
    for g in names:
        dg, pg = d.get(g, empty), p.get(g, empty)
        out[g] = {"n_gold": dg["n_gold"] or pg["n_gold"], "dense": dg, "pruned": pg,
                  "drop_points": {m: 100 * (dg[m] - pg[m]) for m in ("precision", "recall", "f1")}}
    return out


def records(doc_id: str, text: str, spans: Iterable[tuple[int, int, str]]) -> list[MentionRecord]:
    """MentionRecords for character spans of one document's ``text``."""
    return [MentionRecord(doc_id, s, e, t, text[s:e]) for s, e, t in spans]
