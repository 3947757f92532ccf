"""Groups of mentions and per-group scores (fairness analysis), on small hand-made mentions."""
from __future__ import annotations

import pytest

from training.analysis.fairness import (MentionRecord as m, bucket_name, bucket_order, compare_groups, group_scores,
                               is_abbreviation, length_bucket, mention_vocabulary, normalise_mention,
                               quantile_edges, records, standard_groupings, word_count)


@pytest.mark.parametrize("text, abbreviation", [
    *[(t, True) for t in ["HCC", "MPTP", "5-FU", "mCPP", "COX-2", "IgA", "HIV-1", "NaCl", "L-NAME"]],
    *[(t, False) for t in ["Ca", "Dox", "cisplatin", "Parkinson", "renal failure", "HIV infection", "ABCDEFGHIJKLM",
                           "", "5", "L-dopa"]],  # full forms
])
def test_abbreviations_and_full_forms(text, abbreviation):
    assert is_abbreviation(text) is abbreviation


def test_seen_compares_lower_cased_whitespace_collapsed_strings():
    vocab = mention_vocabulary(["Renal Failure", "cisplatin"])
    assert normalise_mention("renal   FAILURE ") in vocab
    assert normalise_mention("renal failures") not in vocab


def test_length_buckets():
    assert [length_bucket(word_count(t)) for t in ["a", "a b", "a b c", "a b c d", "a b c d e f"]] == \
        ["1", "2", "3", "4+", "4+"]
    assert word_count("5-fluorouracil induced") == 2  # whitespace words, not subword tokens


def test_quantile_edges_and_bucket_names_cover_every_value_once():
    values = [10, 20, 30, 40, 50, 60, 70, 80]
    edges = quantile_edges(values)
    assert edges == [20, 40, 60]
    names = [bucket_name(v, edges) for v in values]
    assert names == ["<=20 words"] * 2 + ["21-40 words"] * 2 + ["41-60 words"] * 2 + [">60 words"] * 2
    assert bucket_order(edges) == ["<=20 words", "21-40 words", "41-60 words", ">60 words"]
    assert quantile_edges([5, 5, 5, 5]) == [5]  # ties collapse, no empty buckets in between
    assert bucket_name(6, [5]) == ">5 words"


def test_recall_from_gold_side_precision_from_prediction_side():
    gold = [m("d", 0, 13, "Disease", "renal failure"), m("d", 20, 29, "Chemical", "cisplatin")]
    pred = [m("d", 0, 5, "Disease", "renal"), m("d", 20, 29, "Chemical", "cisplatin")]  # boundary error
    by_len = group_scores(gold, pred, lambda x: length_bucket(word_count(x.text)), order=["1", "2"])
    assert list(by_len) == ["1", "2"]
    assert by_len["1"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "n_gold": 1, "tp_gold": 1,
                           "n_pred": 2, "tp_pred": 1}
    assert by_len["2"]["recall"] == 0.0 and by_len["2"]["n_pred"] == 0 and by_len["2"]["precision"] == 0.0


def test_groups_in_order_then_the_rest_sorted_without_duplicates():
    gold = [m("d", 0, 1, "Chemical", "a"), m("d", 2, 3, "Disease", "b")]
    pred = [m("d", 4, 5, "Gene", "c"), m("d", 0, 1, "Chemical", "a")]
    assert list(group_scores(gold, pred, lambda x: x.type, order=["Disease"])) == ["Disease", "Chemical", "Gene"]


def test_compare_groups_drop_in_points():
    gold = [m("d", 0, 3, "Chemical", "HCC"), m("d", 4, 13, "Chemical", "cisplatin")]
    dense = list(gold)
    pruned = [gold[1]]  # the abbreviation is lost
    out = compare_groups(gold, dense, pruned, lambda x: "abbreviation" if is_abbreviation(x.text) else "full_form")
    assert out["abbreviation"]["drop_points"]["recall"] == pytest.approx(100.0)
    assert out["full_form"]["drop_points"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert out["abbreviation"]["n_gold"] == 1


def test_standard_groupings_place_mentions_by_document_length_and_vocabulary():
    text = "Cisplatin nephrotoxicity"
    recs = records("d1", text, [(0, 9, "Chemical"), (10, 24, "Disease")])
    assert recs[0].text == "Cisplatin"
    groupings = standard_groupings(mention_vocabulary(["cisplatin"]), {"d1": 2, "d2": 300}, [100])
    seen, _ = groupings["seen_in_training"]
    doc_len, order = groupings["abstract_length_words"]
    assert [seen(r) for r in recs] == ["seen", "unseen"]
    assert doc_len(recs[0]) == "<=100 words" and doc_len(m("d2", 0, 1, "Chemical", "x")) == ">100 words"
    assert order == ["<=100 words", ">100 words"]
