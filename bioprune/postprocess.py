"""Document-level consistency of predicted mentions: one abstract names a thing the same way.

A token classifier labels each occurrence of a name on its own local context, so the same string
can be tagged in one sentence and missed in the next, and an abbreviation defined as
"long form (SF)" can be missed where it is used later. Two pure functions repair that after
decoding, over character spans only:

* :func:`propagate_mentions`: every other whole-word occurrence of a predicted mention's exact
  text gets the same type, unless it overlaps a prediction already there (the classic
  document-level consistency pass of BC5CDR systems, e.g. TaggerOne, Leaman & Lu 2016);
* :func:`abbreviations`: "long form (SF)" pairs by the Schwartz & Hearst (2003) rule (the short
  form's characters appear in order in the long form, the first one starting a word), so that a
  short form whose long form is a predicted mention is tagged with its type.

Whether to apply them is decided on the development set (``training/choose_postprocess.py``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

from bioprune.labels import ARGMAX, Decoding
from bioprune.types import Entity

_SHORT_FORM = re.compile(r"\(([^()\s]{2,10})\)")  # "(SF)": 2-10 characters, no spaces


def _is_word_boundary(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not before.isalnum() and not after.isalnum()


def _overlaps(span: tuple[int, int], taken: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def propagate_mentions(text: str, entities: Sequence[Entity], min_chars: int = 3) -> list[Entity]:
    """``entities`` plus every other whole-word occurrence of their texts (at least ``min_chars``).

    A string predicted with two types is left alone (ambiguous). Added mentions carry the score of
    the mention they copy. Sorted by start.
    """
    types: dict[str, set[str]] = {}
    score: dict[str, float] = {}
    for e in entities:
        types.setdefault(e.text, set()).add(e.label)
        score[e.text] = max(score.get(e.text, 0.0), e.score)
    out = list(entities)
    taken = [(e.start, e.end) for e in entities]
    for name, labels in types.items():
        if len(labels) != 1 or len(name) < min_chars:
            continue
        [label] = labels
        for m in re.finditer(re.escape(name), text):
            span = (m.start(), m.end())
            if _is_word_boundary(text, *span) and not _overlaps(span, taken):
                out.append(Entity(start=span[0], end=span[1], label=label, text=name, score=score[name]))
                taken.append(span)
    return sorted(out, key=lambda e: (e.start, e.end))


def _long_form_start(text: str, open_paren: int, short: str) -> int | None:
    """Start of the long form ending just before ``open_paren`` (Schwartz & Hearst), or None."""
    window_start = max(0, open_paren - 8 * len(short) - 20)
    candidate = text[window_start:open_paren].rstrip()
    s, c = len(short) - 1, len(candidate) - 1
    while s >= 0:
        ch = short[s].lower()
        if not ch.isalnum():
            s -= 1
            continue
        while c >= 0 and (candidate[c].lower() != ch or (s == 0 and c > 0 and candidate[c - 1].isalnum())):
            c -= 1
        if c < 0:
            return None
        s -= 1
        c -= 1
    return window_start + c + 1


def abbreviations(text: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((long_start, long_end), (short_start, short_end))`` for each "long form (SF)" in ``text``."""
    pairs = []
    for m in _SHORT_FORM.finditer(text):
        short = m.group(1)
        if not any(ch.isalpha() for ch in short) or not short[0].isalnum():
            continue
        start = _long_form_start(text, m.start(), short)
        if start is None:
            continue
        end = len(text[:m.start()].rstrip())
        if end - start > len(short):
            pairs.append(((start, end), (m.start(1), m.end(1))))
    return pairs


def expand_abbreviations(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """Short forms whose long form is exactly a predicted mention get its type, everywhere in ``text``."""
    by_span = {(e.start, e.end): e for e in entities}
    out = list(entities)
    taken = [(e.start, e.end) for e in entities]
    for long_span, (s, e) in abbreviations(text):
        source = by_span.get(long_span)
        if source is None:
            continue
        short = text[s:e]
        for m in re.finditer(re.escape(short), text):
            span = (m.start(), m.end())
            if _is_word_boundary(text, *span) and not _overlaps(span, taken):
                out.append(Entity(start=span[0], end=span[1], label=source.label, text=short, score=source.score))
                taken.append(span)
    return sorted(out, key=lambda x: (x.start, x.end))


PASSES = {"propagate": propagate_mentions, "abbreviations": expand_abbreviations}


def apply_passes(text: str, entities: Sequence[Entity], passes: Sequence[str]) -> list[Entity]:
    """``entities`` after each named pass of :data:`PASSES`, in order."""
    entities = list(entities)
    for name in passes:
        entities = PASSES[name](text, entities)
    return entities
# beside a model, its dev-chosen output settings: {"passes": [...], "decoding": {"viterbi": ..., ...}}
POSTPROCESS_FILE = "postprocess.json"


def _settings(directory: str | Path) -> dict:
    path = Path(directory) / POSTPROCESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_postprocess(directory: str | Path) -> tuple[str, ...]:
    """The passes a model directory asks for (none if it has no ``postprocess.json``)."""
    return tuple(_settings(directory).get("passes", ()))


def load_decoding(directory: str | Path) -> Decoding:
    """The tag decoding a model directory asks for (:data:`~bioprune.labels.ARGMAX` if none);
    ValueError naming the file and the expected keys for a malformed one."""
    given = _settings(directory).get("decoding", {})
    keys = [f.name for f in fields(Decoding)]
    if not isinstance(given, dict) or not set(given) <= set(keys):
        raise ValueError(f"{Path(directory) / POSTPROCESS_FILE}: \"decoding\" must be an object with keys "
                         f"{', '.join(keys)}; got {json.dumps(given)}")
    return Decoding(viterbi=bool(given.get("viterbi", False)),
                    outside_log_bias=float(given.get("outside_log_bias", 0.0)))


def postprocess_settings(passes: Sequence[str], decoding: Decoding) -> dict:
    """``postprocess.json``'s content for ``passes`` and ``decoding`` (the inverse of the loaders)."""
    return {"passes": list(passes), **({"decoding": asdict(decoding)} if decoding != ARGMAX else {})}
