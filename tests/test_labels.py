"""BIO tags from character spans and back: spans_to_tags, tags_to_spans, word_probs, decode_entities."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from bioprune.labels import (IGNORE_INDEX, LABEL_TO_ID, LABELS, Decoding, bio_viterbi, decode_entities, spans_to_tags,
                             tags_to_spans, word_probs)
from bioprune.types import Entity

# "Famotidine-induced delirium." as [CLS] famotid ##ine - induced delirium . [SEP]
TEXT = "Famotidine-induced delirium."
OFFSETS = [(0, 0), (0, 7), (7, 10), (10, 11), (11, 18), (19, 27), (27, 28), (0, 0)]
CONTENT_OFFSETS = OFFSETS[1:-1]
WORD_IDS = [0, 0, 1, 2, 3, 4]  # famotid ##ine | - | induced | delirium | .


def test_label_set_order():
    assert LABELS == ("O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease")
    assert all(LABELS[i] == label for label, i in LABEL_TO_ID.items())
    assert IGNORE_INDEX == -100


# --- spans_to_tags ------------------------------------------------------------------------------

@pytest.mark.parametrize("spans, tags, dropped", [
    ([(0, 10, "Chemical"), (19, 27, "Disease")], ["O", "B-Chemical", "I-Chemical", "O", "O", "B-Disease", "O", "O"],
     []),
    ([(8, 9, "Chemical")], ["O", "O", "B-Chemical", "O", "O", "O", "O", "O"], []),  # inside a single token
    # a boundary inside a token takes the whole token
    *[([span], ["O", "B-Chemical", "I-Chemical", "O", "O", "O", "O", "O"], []) for span in
      [(0, 8, "Chemical"), (3, 10, "Chemical"), (2, 9, "Chemical")]],
    # special tokens ((0, 0)) stay outside even when a span covers offset 0
    ([(0, 28, "Disease")], ["O", "B-Disease"] + ["I-Disease"] * 5 + ["O"], []),
    # covering no token (a space, past the end) or empty: dropped, longest first
    ([(18, 19, "Chemical"), (40, 50, "Disease")], ["O"] * 8, [(40, 50, "Disease"), (18, 19, "Chemical")]),
    ([(5, 5, "Disease")], ["O"] * 8, [(5, 5, "Disease")]),
])
def test_spans_to_tags(spans, tags, dropped):
    assert spans_to_tags(OFFSETS, spans) == (tags, dropped)


def test_nested_mentions_longest_wins():
    outer, inner = (0, 18, "Disease"), (0, 10, "Chemical")
    for spans in ([outer, inner], [inner, outer]):
        tags, dropped = spans_to_tags(OFFSETS, spans)
        assert tags == ["O", "B-Disease", "I-Disease", "I-Disease", "I-Disease", "O", "O", "O"]
        assert dropped == [inner]


def test_overlapping_mentions_longest_wins_and_ties_go_left():
    # "induced delirium" (16 chars) vs "Famotidine-induced" (18 chars): partial overlap on "induced"
    tags, dropped = spans_to_tags(OFFSETS, [(11, 27, "Disease"), (0, 18, "Chemical")])
    assert tags[1:5] == ["B-Chemical", "I-Chemical", "I-Chemical", "I-Chemical"] and tags[5] == "O"
    assert dropped == [(11, 27, "Disease")]
    # equal length (8 chars each), overlapping by one token: the leftmost one is kept, in any order
    a, b = (11, 19, "Chemical"), (19, 28, "Disease")
    tags, dropped = spans_to_tags(OFFSETS, [(4, 12, "Disease"), (11, 19, "Chemical")])
    assert dropped == [(11, 19, "Chemical")]
    assert tags[1:5] == ["B-Disease", "I-Disease", "I-Disease", "I-Disease"]
    tags, dropped = spans_to_tags(OFFSETS, [b, a])  # these two do not overlap: both kept
    assert dropped == []
    assert tags[4:7] == ["B-Chemical", "B-Disease", "I-Disease"]


def test_adjacent_mentions_of_same_type_get_separate_b_tags():
    tags, _ = spans_to_tags(OFFSETS, [(0, 10, "Chemical"), (10, 11, "Chemical")])
    assert tags[1:4] == ["B-Chemical", "I-Chemical", "B-Chemical"]
    assert tags_to_spans(tags) == [(1, 3, "Chemical"), (3, 4, "Chemical")]


def test_spans_to_tags_no_tokens():
    assert spans_to_tags([], [(0, 3, "Chemical")]) == ([], [(0, 3, "Chemical")])


# --- tags_to_spans ------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, spans", [
    ([], []),
    (["O", "O"], []),
    (["B-Chemical", "I-Chemical", "O", "B-Disease"], [(0, 2, "Chemical"), (3, 4, "Disease")]),
    (["O", "I-Chemical", "I-Chemical", "O"], [(1, 3, "Chemical")]),  # lenient: I- after O starts one
    (["I-Disease"], [(0, 1, "Disease")]),
    (["B-Chemical", "I-Disease", "I-Disease"], [(0, 1, "Chemical"), (1, 3, "Disease")]),  # type switch
    (["B-Chemical", "B-Chemical", "I-Chemical"], [(0, 1, "Chemical"), (1, 3, "Chemical")]),
    (["I-Chemical", "B-Disease", "I-Chemical"], [(0, 1, "Chemical"), (1, 2, "Disease"), (2, 3, "Chemical")]),
])
def test_tags_to_spans(tags, spans):
    assert tags_to_spans(tags) == spans


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(LABELS), max_size=30))
def test_tags_to_spans_agrees_with_seqeval(tags):
    expected = sorted((s, e + 1, t) for t, s, e in get_entities(list(tags)))
    assert tags_to_spans(tags) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.sampled_from(["O", "Chemical", "Disease"])), max_size=12))
def test_spans_to_tags_then_tags_to_spans_roundtrip(words):
    """Non-overlapping spans on token boundaries come back unchanged (as token-index spans)."""
    offsets, spans, token_spans, pos = [], [], [], 0
    for n_tokens, label in words:
        first = len(offsets)
        start = pos
        for _ in range(n_tokens):
            offsets.append((pos, pos + 2))
            pos += 3
        if label != "O":
            spans.append((start, pos - 1, label))
            token_spans.append((first, len(offsets), label))
    tags, dropped = spans_to_tags(offsets, spans)
    assert dropped == []
    assert tags_to_spans(tags) == token_spans


# --- word_probs and decode_entities -------------------------------------------------------------

def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
    for i, row in enumerate(rows):
        for label, p in row.items():
            out[i, LABEL_TO_ID[label]] = p
    return out


def test_word_probs_averages_per_word():
    probs = _probs([{"B-Chemical": 0.9, "O": 0.1}, {"O": 0.6, "I-Chemical": 0.4}, {"O": 1.0}])
    wprobs, words = word_probs(probs, [0, 0, 1])
    assert words == [[0, 1], [2]]
    np.testing.assert_allclose(wprobs[0], _probs([{"B-Chemical": 0.45, "O": 0.35, "I-Chemical": 0.2}])[0])
    np.testing.assert_allclose(wprobs[1], probs[2])
    empty, no_words = word_probs(np.zeros((0, 5), dtype=np.float32), [])
    assert empty.shape == (0, 5) and no_words == []


def test_decode_entities_whole_words_and_scores():
    # token level, "famotid" says B-Chemical and "##ine" says O: per-token argmax would give "Famotid";
    # the word average (B 0.45, O 0.35, I 0.2) makes the whole word "Famotidine" the entity.
    probs = _probs([
        {"B-Chemical": 0.9, "O": 0.1},
        {"O": 0.6, "I-Chemical": 0.4},
        {"O": 1.0},
        {"O": 0.7, "B-Disease": 0.3},
        {"B-Disease": 0.8, "O": 0.2},
        {"I-Disease": 0.6, "O": 0.4},
    ])
    entities = decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs)
    assert [(e.start, e.end, e.label, e.text) for e in entities] == [
        (0, 10, "Chemical", "Famotidine"), (19, 28, "Disease", "delirium.")]
    assert entities[0].score == pytest.approx((0.9 + 0.4) / 2)  # the type's B + I per token, not the word's B 0.45
    assert entities[1].score == pytest.approx(0.7)  # mean of 0.8 and 0.6
    for e in entities:
        assert TEXT[e.start:e.end] == e.text


def test_decode_entities_subword_split_never_cuts_a_word():
    rng = np.random.default_rng(0)
    for _ in range(50):
        probs = rng.dirichlet(np.ones(len(LABELS)), size=len(CONTENT_OFFSETS)).astype(np.float32)
        for e in decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs):
            assert e.text == TEXT[e.start:e.end]
            assert e.start in {0, 10, 11, 19, 27} and e.end in {10, 11, 18, 27, 28}
            assert 0 < e.score <= 1


def test_decode_entities_all_outside_and_empty():
    probs = _probs([{"O": 1.0}] * len(CONTENT_OFFSETS))
    assert decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs) == []
    assert decode_entities("", [], [], np.zeros((0, len(LABELS)), dtype=np.float32)) == []


def test_decode_entities_lenient_i_tag_starts_entity():
    probs = _probs([{"O": 1.0}, {"O": 1.0}, {"O": 1.0}, {"O": 1.0}, {"I-Disease": 1.0}, {"O": 1.0}])
    assert decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs) == [
        Entity(19, 27, "Disease", "delirium", 1.0)]


# --- constrained (Viterbi) decoding ------------------------------------------------------------------

def _valid(path) -> bool:
    """No I-X at the start or after anything but B-X / I-X."""
    prev = "O"
    for i in path:
        label = LABELS[i]
        if label.startswith("I-") and prev[2:] != label[2:]:
            return False
        prev = label
    return True


def test_viterbi_finds_the_best_valid_sequence_by_brute_force():
    rng = np.random.default_rng(1)
    for words in (1, 2, 3, 4):
        for _ in range(20):
            log_probs = np.log(rng.dirichlet(np.ones(len(LABELS)) * 0.5, size=words))
            best = max((p for p in itertools.product(range(len(LABELS)), repeat=words) if _valid(p)),
                       key=lambda p: sum(log_probs[t, i] for t, i in enumerate(p)))
            path = bio_viterbi(log_probs)
            assert _valid(path)
            assert sum(log_probs[t, i] for t, i in enumerate(path)) == pytest.approx(
                sum(log_probs[t, i] for t, i in enumerate(best)))


def test_viterbi_decoding_repairs_what_argmax_reads_leniently_and_the_o_bias_trims():
    # "delirium" says I-Disease after an O word: argmax opens an entity there; the valid sequences
    # either tag "of" B-Disease (0.2) or leave "delirium" out, and the latter wins
    probs = _probs([{"O": 1.0}, {"O": 1.0}, {"O": 1.0}, {"O": 0.8, "B-Disease": 0.2},
                    {"I-Disease": 0.6, "O": 0.4}, {"O": 1.0}])
    assert [e.text for e in decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs)] == ["delirium"]
    assert decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, probs, Decoding(viterbi=True)) == []
    sure = _probs([{"B-Chemical": 0.9, "O": 0.1}, {"O": 0.4, "I-Chemical": 0.6}, {"O": 1.0}, {"O": 1.0},
                   {"B-Disease": 0.55, "O": 0.45}, {"O": 1.0}])
    viterbi = decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, sure, Decoding(viterbi=True))
    assert [e.text for e in viterbi] == ["Famotidine", "delirium"]
    assert viterbi[0].score == pytest.approx((0.9 + 0.6) / 2)  # scores stay the model's probabilities, not the biased ones
    biased = decode_entities(TEXT, CONTENT_OFFSETS, WORD_IDS, sure, Decoding(viterbi=True, outside_log_bias=0.5))
    assert [e.text for e in biased] == ["Famotidine"]  # delirium's 0.55 < 0.45 e^0.5; Famotidine's B 0.45 > O 0.25 e^0.5
