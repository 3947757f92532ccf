"""Error kinds, pruning-added errors and their attribution, on small hand-made spans."""
from __future__ import annotations

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


def test_exact_matches_are_not_errors_and_duplicates_count_once():
    assert classify_errors("d", [CIS, ARF], [ARF, CIS, CIS]) == []


def test_same_span_other_type_is_a_type_error_not_a_missed_and_spurious_pair():
    errors = classify_errors("d", [CIS], [(0, 9, "Disease")])
    assert kinds(errors) == [("type", CIS, (0, 9, "Disease"))]


def test_overlap_same_type_is_boundary_and_explains_the_gold_mention():
    errors = classify_errors("d", [ARF], [RF])
    assert kinds(errors) == [("boundary", ARF, RF)]  # the gold mention is not also "missed"


def test_two_fragments_of_one_mention_are_two_boundary_errors():
    errors = classify_errors("d", [RF], [(24, 29, "Disease"), (30, 37, "Disease")])
    assert [e.kind for e in errors] == ["boundary", "boundary"]
    assert {e.gold for e in errors} == {RF}


def test_overlap_with_other_type_only_is_boundary_type():
    errors = classify_errors("d", [ARF], [(24, 29, "Chemical")])
    assert kinds(errors) == [("boundary_type", ARF, (24, 29, "Chemical"))]


def test_same_type_overlap_is_preferred_over_other_type_overlap():
    gold = [(0, 9, "Chemical"), (10, 17, "Disease")]
    errors = classify_errors("d", gold, [(0, 17, "Disease")])
    assert kinds(errors) == [("boundary", (10, 17, "Disease"), (0, 17, "Disease")), ("missed", (0, 9, "Chemical"), None)]


def test_exact_span_is_preferred_over_a_larger_same_type_overlap():
    gold = [(0, 9, "Chemical"), (0, 17, "Disease")]
    errors = classify_errors("d", gold, [(0, 9, "Disease")])
    assert ("type", (0, 9, "Chemical"), (0, 9, "Disease")) in kinds(errors)


def test_prediction_overlapping_only_a_found_mention_is_spurious():
    errors = classify_errors("d", [ARF], [ARF, RF])  # nested extra prediction inside a correct one
    assert kinds(errors) == [("spurious", None, RF)]


def test_missed_and_spurious():
    errors = classify_errors("d", [CIS], [(41, 45, "Chemical")])
    assert sorted(e.kind for e in errors) == ["missed", "spurious"]
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


def test_attribution_entity_token_pruned_takes_precedence():
    err = MentionError("d", "boundary", ARF, RF)  # "acute" lost
    a = attribute(err, [tok(18, 23, "O")], [CIS, ARF])
    assert a.cause == "entity_tokens_pruned"
    assert a.entity_tokens_pruned and a.wrong_early_exit and not a.context_lost  # O inside a Disease is wrong too


def test_attribution_wrong_early_exit_outside_the_gold_mention():
    err = MentionError("d", "spurious", None, (38, 45, "Chemical"))  # "in rats" predicted as Chemical
    a = attribute(err, [tok(38, 40, "B-Chemical")], [CIS, ARF])
    assert a.cause == "wrong_early_exit" and not a.entity_tokens_pruned


def test_attribution_context_lost_when_every_token_of_the_region_ran_every_layer():
    err = MentionError("d", "missed", CIS, None)
    a = attribute(err, [tok(41, 45, "O"), tok(10, 17, "O")], [CIS, ARF])  # pruned tokens elsewhere only
    assert a.cause == "context_lost" and a.context_lost and a.pruned_in_region == ()


def test_attribution_other_when_pruned_region_tokens_kept_right_labels():
    err = MentionError("d", "boundary", CIS, (0, 17, "Chemical"))  # "induced" wrongly joined
    a = attribute(err, [tok(10, 17, "O")], [CIS, ARF])  # it left with the right label
    assert a.cause == "other"


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
