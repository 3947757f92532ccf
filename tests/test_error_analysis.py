"""Error kinds, pruning-added errors and their attribution, on small hand-made spans."""
from __future__ import annotations

import pytest

from training.analysis.error_analysis import (CAUSES, MentionError, added_errors, attribute, attribution_counts,
                                     classify_errors, corpus_errors, count_kinds, example, gold_type_at,
                                     pick_examples, still_pruned)
from bioprune.types import PrunedToken, RecoveryEvent, Trace

TEXT = "Cisplatin induced acute renal failure in rats ."
#       0        9 10     17 18  23 24  29 30     37 38 40 41 45
CIS = (0, 9, "Chemical")
ARF = (18, 37, "Disease")  # "acute renal failure"
RF = (24, 37, "Disease")  # "renal failure"


def tok(start, end, label="O", layer=2):
    return PrunedToken(position=0, start=start, end=end, layer=layer, score=0.0, label=label)


def kinds(errors):
    return [(e.kind, e.gold, e.pred) for e in errors]


@pytest.mark.parametrize("gold, pred, expected", [
    ([CIS, ARF], [ARF, CIS, CIS], []),  # exact matches are not errors, and duplicates count once
    ([CIS], [(0, 9, "Disease")], [("type", CIS, (0, 9, "Disease"))]),  # a type error, not a missed + spurious pair
    ([ARF], [RF], [("boundary", ARF, RF)]),  # same-type overlap: boundary, the gold mention is not also "missed"
    ([ARF], [(24, 29, "Chemical")], [("boundary_type", ARF, (24, 29, "Chemical"))]),  # other-type overlap only
    ([(0, 9, "Chemical"), (10, 17, "Disease")], [(0, 17, "Disease")],  # same-type overlap preferred over other type
     [("boundary", (10, 17, "Disease"), (0, 17, "Disease")), ("missed", (0, 9, "Chemical"), None)]),
    ([RF], [(24, 29, "Disease"), (30, 37, "Disease")],  # two fragments of one mention: two boundary errors
     [("boundary", RF, (24, 29, "Disease")), ("boundary", RF, (30, 37, "Disease"))]),
    ([(0, 9, "Chemical"), (0, 17, "Disease")], [(0, 9, "Disease")],  # exact span preferred over a larger overlap
     [("missed", (0, 17, "Disease"), None), ("type", (0, 9, "Chemical"), (0, 9, "Disease"))]),
    ([ARF], [ARF, RF], [("spurious", None, RF)]),  # nested in a correctly found mention: spurious
    ([CIS], [(41, 45, "Chemical")], [("missed", CIS, None), ("spurious", None, (41, 45, "Chemical"))]),
])
def test_error_kinds(gold, pred, expected):
    assert kinds(classify_errors("d", gold, pred)) == expected


def test_count_kinds_names_every_kind():
    errors = classify_errors("d", [CIS], [(41, 45, "Chemical")])
    assert count_kinds(errors) == {"boundary": 0, "type": 0, "boundary_type": 0, "missed": 1, "spurious": 1}


def test_corpus_errors_treats_a_document_without_predictions_as_all_missed():
    errors = corpus_errors({"a": [CIS], "b": [ARF]}, {"a": [CIS]})
    assert kinds(errors) == [("missed", ARF, None)] and errors[0].doc_id == "b"


def test_added_errors_are_the_pruned_errors_the_dense_model_does_not_make():
    dense = classify_errors("d", [CIS, ARF], [CIS, RF])  # boundary on ARF
    pruned = classify_errors("d", [CIS, ARF], [(24, 29, "Disease")])  # missed CIS, other boundary on ARF
    added = added_errors(dense, pruned)
    assert kinds(added) == [("boundary", ARF, (24, 29, "Disease")), ("missed", CIS, None)]
    assert added_errors(dense, dense) == []


def test_gold_type_at_uses_the_longest_nested_mention():
    assert gold_type_at(24, 29, [RF, (24, 29, "Chemical")]) == "Disease"
    assert gold_type_at(38, 40, [RF]) == "O"


@pytest.mark.parametrize("err, tokens, cause, flags", [
    # "acute" lost: an entity token pruned takes precedence (its O inside a Disease is a wrong exit too)
    (MentionError("d", "boundary", ARF, RF), [tok(18, 23, "O")], "entity_tokens_pruned", (True, True, False)),
    # "in rats" predicted as Chemical: a wrong early exit outside the gold mention
    (MentionError("d", "spurious", None, (38, 45, "Chemical")), [tok(38, 40, "B-Chemical")], "wrong_early_exit",
     (False, True, False)),
    # pruned tokens elsewhere only: every token of the region ran every layer
    (MentionError("d", "missed", CIS, None), [tok(41, 45), tok(10, 17)], "context_lost", (False, False, True)),
    # "induced" wrongly joined, though it left with the right label
    (MentionError("d", "boundary", CIS, (0, 17, "Chemical")), [tok(10, 17, "O")], "other", (False, False, False)),
])
def test_attribution_cause_and_flags(err, tokens, cause, flags):
    a = attribute(err, tokens, [CIS, ARF])
    assert (a.cause, a.entity_tokens_pruned, a.wrong_early_exit, a.context_lost) == (cause, *flags)
    assert (a.pruned_in_region == ()) == a.context_lost


def test_attribution_counts_and_examples():
    gold = [CIS, ARF]
    atts = [attribute(MentionError("d", "missed", CIS, None), [], gold),
            attribute(MentionError("d", "boundary", ARF, RF), [tok(18, 23)], gold),
            attribute(MentionError("e", "boundary", ARF, RF), [tok(18, 23)], gold)]
    counts = attribution_counts(atts)
    assert counts["total"] == 3
    assert counts["by_cause"] == {"entity_tokens_pruned": 2, "wrong_early_exit": 0, "context_lost": 1, "other": 0}
    assert counts["by_flag"]["wrong_early_exit"] == 2
    assert counts["by_kind_and_cause"]["boundary"]["entity_tokens_pruned"] == 2
    assert set(counts["by_cause"]) == set(CAUSES)
    picked = pick_examples(atts, per_cause=1)
    assert [a.cause for a in picked] == ["entity_tokens_pruned", "context_lost"]
    ex = example(atts[1], TEXT, [ARF])
    assert ex["gold"]["text"] == "acute renal failure" and ex["pruned"]["text"] == "renal failure"
    assert ex["dense"] == [{"text": "acute renal failure", "type": "Disease", "start": 18, "end": 37}]
    assert ex["pruned_tokens"] == [{"text": "acute", "label": "O", "layer": 2}]


def test_pick_examples_spreads_over_kinds():
    gold = [CIS, ARF]
    atts = [attribute(MentionError("d", "missed", CIS, None), [], gold),
            attribute(MentionError("e", "missed", CIS, None), [], gold),
            attribute(MentionError("f", "spurious", None, (41, 45, "Chemical")), [], gold)]
    assert sorted(a.error.kind for a in pick_examples(atts, per_cause=2)) == ["missed", "spurious"]


def test_tokens_re_inserted_by_recovery_are_not_counted_as_pruned():
    a, b = PrunedToken(3, 18, 23, 2, 0.0, "B-Disease"), PrunedToken(7, 41, 45, 2, 0.0, "O")
    trace = Trace(pruned_tokens=(a, b), recovery_events=(
        RecoveryEvent("entity_loss", positions=(3,), layer=2, labels_before=("O",), labels_after=("B-Disease",)),))
    assert still_pruned(trace) == (b,)
    assert still_pruned(None) == ()
