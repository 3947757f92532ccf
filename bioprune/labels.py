"""BIO tags on the model's own subword tokens, from and back to character spans.

Gold mentions become tags through the fast tokenizer's offset mapping: a subword token is inside a
mention when their character ranges overlap, so a mention that ends inside a token takes the whole
token (the decoded span then covers the token: a boundary error, never a crash). BIO cannot hold
overlapping or nested mentions: the longest mention wins and the others are reported as dropped.

Predicted tags go back to spans at word level: the tokenizer's pre-tokenizer splits on whitespace
and punctuation, so every BC5CDR mention boundary falls on a word boundary (checked on the training
set: 0 of 9,385 mentions start or end inside a word). Subword probabilities are averaged per word,
which keeps an entity from starting or ending in the middle of a word.

Per word, the tags are the argmax read leniently (an ``I-`` after ``O`` opens an entity, as
seqeval does), or, with :class:`Decoding` ``viterbi``, the most probable *valid* BIO sequence: an
``I-X`` only after ``B-X`` or ``I-X``, found by Viterbi over the word log-probabilities (the
constrained decoding of CRF taggers, here without learned transitions). ``outside_log_bias`` adds
to log p(O) first, trading recall for precision. A model's choice is made on dev and kept in its
``postprocess.json`` (:class:`bioprune.postprocess.Postprocess`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bioprune.types import ENTITY_TYPES, Entity

LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}
IGNORE_INDEX = -100  # label id for special tokens: ignored by the loss

Span = tuple[int, int, str]  # (start, end, type) over characters, end-exclusive


def spans_to_tags(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> tuple[list[str], list[Span]]:
    """BIO tags for tokens with character ``offsets`` (``(0, 0)`` marks a special token).

    Returns the tags and the spans that could not be tagged because they overlap a longer one
    (or cover no token). Longest first, then leftmost: deterministic.
    """
    tags = ["O"] * len(offsets)
    dropped: list[Span] = []
    for start, end, label in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0], s[2])):
        idx = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start] if end > start else []
        if not idx or any(tags[i] != "O" for i in idx):
            dropped.append((start, end, label))
            continue
        tags[idx[0]] = f"B-{label}"
        for i in idx[1:]:
            tags[i] = f"I-{label}"
    return tags, dropped


def tags_to_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Token-index spans ``(first, last_exclusive, type)`` from BIO tags.

    Lenient like seqeval's default: an ``I-`` after ``O`` or after another type starts an entity.
    """
    spans: list[tuple[int, int, str]] = []
    current: list | None = None
    for i, tag in enumerate(tags):
        if tag == "O":  # most words: close what is open
            if current is not None:
                spans.append(tuple(current))
                current = None
            continue
        prefix, _, label = tag.partition("-")
        if prefix == "O" or (prefix == "B") or current is None or current[2] != label:
            if current is not None:
                spans.append(tuple(current))
            current = [i, i + 1, label] if prefix in ("B", "I") else None
        else:
            current[1] = i + 1
    if current is not None:
        spans.append(tuple(current))
    return spans


def word_probs(probs: np.ndarray, word_ids: Sequence[int]) -> tuple[np.ndarray, list[list[int]]]:
    """Average token probabilities per word.

    probs: (T, C) over the document's content tokens; word_ids: (T,) word index of each token.
    Returns (W, C) word probabilities and, per word, the indices of its tokens.
    """
    ids = np.asarray(word_ids)  # (T,)
    if not ids.size:
        return np.zeros((0, probs.shape[1]), dtype=probs.dtype), []
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # (W,) each word's first token
    bounds = starts.tolist() + [ids.size]
    sums = np.add.reduceat(probs, starts, axis=0)  # (W, C)
    counts = np.diff(bounds).astype(probs.dtype)[:, None]  # (W, 1)
    return sums / counts, [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class Decoding:
    """How word label probabilities become BIO tags (module docstring); chosen on dev per model."""

    viterbi: bool = False  # the most probable valid BIO sequence instead of the per-word argmax
    outside_log_bias: float = 0.0  # nats added to log p(O) before choosing: > 0 favours precision


ARGMAX = Decoding()  # the per-word argmax, read leniently


def bio_viterbi(log_probs: np.ndarray) -> list[int]:
    """The label index per word of the highest-scoring BIO sequence in which ``I-X`` follows only
    ``B-X`` or ``I-X`` (and never starts it). log_probs: (W, C) over :data:`LABELS`, W >= 1.

    Plain Python over lists: five labels and one constraint make each step a few comparisons,
    cheaper than numpy calls on 5x5 arrays (under half a millisecond for an abstract's 250 words).
    """
    rows = log_probs.tolist()
    n = len(LABELS)
    continues = [(i, LABEL_TO_ID["B-" + label[2:]]) for i, label in enumerate(LABELS) if label.startswith("I-")]
    score = rows[0][:]
    for i, _ in continues:  # no I-X first
        score[i] = float("-inf")
    back: list[list[int]] = []
    for row in rows[1:]:
        best = max(score)
        best_prev = score.index(best)  # the first best, as max(range(n), key=...) would give
        pointers = [best_prev] * n
        new = [best + x for x in row]
        for i, b in continues:  # I-X continues B-X or I-X only
            prev = b if score[b] >= score[i] else i
            pointers[i], new[i] = prev, score[prev] + row[i]
        back.append(pointers)
        score = new
    path = [score.index(max(score))]
    for pointers in reversed(back):
        path.append(pointers[path[-1]])
    return path[::-1]


def decode_entities(text: str, offsets: Sequence[tuple[int, int]], word_ids: Sequence[int],
                    probs: np.ndarray, decoding: Decoding = ARGMAX) -> list[Entity]:
    """Entities from per-token label probabilities (T, C) over a document's content tokens."""
    wprobs, words = word_probs(probs, word_ids)  # (W, C)
    if not words:
        return []
    if decoding == ARGMAX:
        best = wprobs.argmax(axis=1)  # (W,)
    else:
        log_probs = np.log(np.clip(wprobs, 1e-12, None))  # (W, C)
        log_probs[:, LABEL_TO_ID["O"]] += decoding.outside_log_bias
        best = np.asarray(bio_viterbi(log_probs) if decoding.viterbi else log_probs.argmax(axis=1))  # (W,)
    tags = [LABELS[i] for i in best]
    entities = []
    for first, last, label in tags_to_spans(tags):
        start = offsets[words[first][0]][0]
        end = offsets[words[last - 1][-1]][1]
        tokens = probs[words[first][0]:words[last - 1][-1] + 1]  # (n, C); score: sure of the type, B or I (a
        # word's later subword tokens say I-X, so its B-X alone averages ~1/its tokens on a sure entity)
        score = float((tokens[:, LABEL_TO_ID["B-" + label]] + tokens[:, LABEL_TO_ID["I-" + label]]).mean())
        entities.append(Entity(start=start, end=end, label=label, text=text[start:end], score=score))
    return entities
