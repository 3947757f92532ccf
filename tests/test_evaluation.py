"""Exact-match mention scores, seqeval entity scores, and the end-to-end evaluation helper."""
from __future__ import annotations

import pytest

import bioprune.evaluation as evaluation
from bioprune.evaluation import (evaluate_engine, evaluate_predictions, linking_scores, mention_scores, prf,
                                 seqeval_scores, word_offsets, word_tags)
from bioprune.io.pubtator import Mention, PubTatorDocument, read_pubtator
from training.evaluate_linking import in_mesh2024, mesh2024_crosswalk, named_ids

GOLD = [
    ("d1", 0, 10, "Chemical"),
    ("d1", 15, 23, "Disease"),
    ("d1", 30, 40, "Disease"),
    ("d2", 0, 5, "Chemical"),
]
PRED = [
    ("d1", 0, 10, "Chemical"),  # TP
    ("d1", 15, 22, "Disease"),  # boundary error: FP and FN
    ("d1", 30, 40, "Chemical"),  # type error: FP (Chemical) and FN (Disease)
    ("d2", 0, 5, "Chemical"),  # TP
    ("d2", 0, 5, "Chemical"),  # duplicate: counts once
    ("d3", 0, 5, "Chemical"),  # right offsets, wrong document: FP
]


def _check(scores: dict, tp: int, n_pred: int, n_gold: int, p: float, r: float, f: float) -> None:
    assert (scores["tp"], scores["n_pred"], scores["n_gold"]) == (tp, n_pred, n_gold)
    assert scores["precision"] == pytest.approx(p)
    assert scores["recall"] == pytest.approx(r)
    assert scores["f1"] == pytest.approx(f)


def test_prf():
    _check(prf(3, 4, 6), 3, 4, 6, 0.75, 0.5, 0.6)
    _check(prf(0, 0, 0), 0, 0, 0, 0.0, 0.0, 0.0)
    _check(prf(0, 2, 0), 0, 2, 0, 0.0, 0.0, 0.0)


def test_mention_scores_hand_computed():
    scores = mention_scores(GOLD, PRED)
    assert set(scores) == {"Chemical", "Disease", "micro"}
    _check(scores["Chemical"], tp=2, n_pred=4, n_gold=2, p=0.5, r=1.0, f=2 / 3)
    _check(scores["Disease"], tp=0, n_pred=1, n_gold=2, p=0.0, r=0.0, f=0.0)
    _check(scores["micro"], tp=2, n_pred=5, n_gold=4, p=0.4, r=0.5, f=4 / 9)


def test_mention_scores_perfect_and_empty():
    _check(mention_scores(GOLD, list(reversed(GOLD)))["micro"], 4, 4, 4, 1.0, 1.0, 1.0)
    empty = mention_scores([], [])
    for key in ("Chemical", "Disease", "micro"):
        _check(empty[key], 0, 0, 0, 0.0, 0.0, 0.0)
    _check(mention_scores(GOLD, [])["micro"], 0, 0, 4, 0.0, 0.0, 0.0)


def test_mention_scores_accepts_generators_and_custom_types():
    scores = mention_scores((k for k in GOLD), (k for k in PRED), types=("Chemical",))
    assert set(scores) == {"Chemical", "micro"}
    _check(scores["Chemical"], 2, 4, 2, 0.5, 1.0, 2 / 3)


def test_seqeval_scores_hand_computed():
    gold = [["B-Chemical", "I-Chemical", "O", "B-Disease"], ["O", "B-Disease", "I-Disease"]]
    pred = [["B-Chemical", "I-Chemical", "O", "O"], ["O", "B-Disease", "O"]]
    scores = seqeval_scores(gold, pred)
    assert set(scores) == {"Chemical", "Disease", "micro"}
    assert scores["Chemical"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert scores["Disease"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2})
    assert scores["micro"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})


def test_seqeval_scores_lenient_and_missing_types():
    # I- after O starts an entity (lenient mode); no Disease anywhere: no Disease key
    scores = seqeval_scores([["O", "I-Chemical", "I-Chemical"]], [["O", "B-Chemical", "I-Chemical"]])
    assert "Disease" not in scores
    assert scores["Chemical"]["f1"] == pytest.approx(1.0)
    assert scores["micro"]["support"] == 1


def test_word_offsets_and_word_tags():
    offsets = [(0, 7), (7, 10), (10, 11), (11, 18), (19, 27), (27, 28)]
    words = word_offsets(offsets, [0, 0, 1, 2, 3, 4])
    assert words == [(0, 10), (10, 11), (11, 18), (19, 27), (27, 28)]
    assert word_offsets([], []) == []
    assert word_tags(words, [(0, 10, "Chemical"), (11, 27, "Disease"), (19, 27, "Disease")]) == [
        "B-Chemical", "O", "B-Disease", "I-Disease", "O"]


def test_evaluate_predictions():
    words = {"a": [(0, 10), (10, 11), (11, 18), (19, 27), (27, 28)], "b": [(0, 5)]}
    gold = {"a": [(0, 10, "Chemical"), (19, 27, "Disease")], "b": [(0, 5, "Disease")]}
    pred = {"a": [(0, 10, "Chemical"), (11, 27, "Disease")]}  # nothing predicted for "b"
    result = evaluate_predictions(gold, pred, words)
    assert result["n_documents"] == 2
    _check(result["mention"]["Chemical"], 1, 1, 1, 1.0, 1.0, 1.0)
    _check(result["mention"]["Disease"], 0, 1, 2, 0.0, 0.0, 0.0)
    _check(result["mention"]["micro"], 1, 2, 3, 0.5, 1 / 3, 0.4)
    assert result["seqeval"]["micro"]["support"] == 3
    assert result["seqeval"]["Disease"]["f1"] == pytest.approx(0.0)
    assert result["seqeval"]["Chemical"]["f1"] == pytest.approx(1.0)


def test_evaluate_engine_on_fixture(tiny_engine, sample_path):
    docs = read_pubtator(sample_path)
    result = evaluate_engine(tiny_engine, docs, batch_size=2)
    assert set(result) == {"mention", "seqeval", "n_documents", "linking"}  # linking: on by default
    assert result["n_documents"] == 3
    assert {t: s["n_gold"] for t, s in result["mention"].items()} == {"Chemical": 10, "Disease": 11, "micro": 21}
    assert "micro" in result["seqeval"]
    for scores in result["mention"].values():
        assert 0.0 <= scores["f1"] <= 1.0
    # same predictions as annotate(): n_pred is the number of predicted entities
    n_pred = sum(len(a.entities) for a in tiny_engine.annotate([d.to_document() for d in docs]))
    assert result["mention"]["micro"]["n_pred"] == n_pred


def test_evaluate_engine_hand_computed_with_per_word_engine(per_word_engine, sample_path):
    """Every word predicted as its own Disease: only the 6 one-word Disease mentions match."""
    docs = read_pubtator(sample_path)
    result = evaluate_engine(per_word_engine, docs)
    n_words = sum(len(set(enc.word_ids)) for enc in per_word_engine.encode([d.text for d in docs]))
    _check(result["mention"]["Chemical"], 0, 0, 10, 0.0, 0.0, 0.0)
    disease = result["mention"]["Disease"]
    assert (disease["tp"], disease["n_pred"], disease["n_gold"]) == (6, n_words, 11)
    assert disease["recall"] == pytest.approx(6 / 11)
    assert result["mention"]["micro"]["tp"] == 6


def test_evaluate_engine_ignores_other_gold_types(per_word_engine):
    text = "BRCA1 and delirium"
    doc = PubTatorDocument("42", text, None, mentions=(
        Mention(0, 5, "BRCA1", "Gene"), Mention(10, 18, "delirium", "Disease")))
    result = evaluate_engine(per_word_engine, [doc])
    assert result["mention"]["micro"]["n_gold"] == 1
    assert result["mention"]["Disease"]["tp"] == 1  # "delirium" predicted as a one-word Disease
    assert result["mention"]["micro"]["n_pred"] == 3


def test_evaluate_engine_progress_bar_and_chunks_leave_the_scores_alone(tiny_engine, sample_path, monkeypatch,
                                                                          capsys):
    docs = read_pubtator(sample_path)
    quiet = evaluate_engine(tiny_engine, docs)
    assert "doc/s" not in capsys.readouterr().err  # no bar unless asked: library callers see nothing
    monkeypatch.setattr(evaluation, "EVAL_CHUNK_DOCS", 2)  # 3 documents in 2 engine calls
    shown = evaluate_engine(tiny_engine, docs, progress=True, desc="scoring")
    assert shown == quiet
    err = capsys.readouterr().err
    assert "scoring: " in err and "/3 [" in err


# --- linking measures (bioprune.evaluation.linking_scores; training/evaluate_linking.py uses the same) ---

def test_mesh2024_crosswalk_moves_only_records_that_2024_promoted():
    terms = {"linezolid": {"D000069349"}, "zyvox": {"D000069349"}, "aspirin": {"D001241"}, "shared": {"D1", "D2"}}
    docs = [PubTatorDocument("1", "Linezolid", "", [Mention(0, 9, "Linezolid", "Chemical", "C098010")])]
    names = {**named_ids(docs, []), "D001241": {"zyvox"}, "C000001": {"shared"}, "C000002": {"unknown"}}
    crosswalk = mesh2024_crosswalk(terms, names)
    # a 2024 ID stays; a name on two descriptors or on none says nothing
    assert crosswalk == {"C098010": "D000069349"}
    assert in_mesh2024(crosswalk, {"1": [frozenset({"C098010", "D001241"}), frozenset()]}) == \
        {"1": [frozenset({"D000069349", "D001241"}), frozenset()]}


def test_linking_scores_hand_computed():
    gold = {"1": [(0, 5, "Chemical", "aspA"), (10, 15, "Disease", "disB"), (20, 25, "Disease", "disC")]}
    gold_ids = {"1": [frozenset({"D1"}), frozenset({"D2", "D3"}), frozenset()]}  # disC: gold "-1"
    from_gold = {"1": [frozenset({"D1"}), frozenset({"D2"}), frozenset({"D9"})]}
    predicted = {"1": [(0, 5, "Chemical", "aspA"), (10, 15, "Disease", "disB"), (30, 35, "Disease", "x")]}
    from_predicted = {"1": [frozenset({"D1"}), frozenset({"D2", "D3"}), frozenset({"D4"})]}
    scores = linking_scores(gold, gold_ids, from_gold, predicted, from_predicted)
    acc = scores["normalization_accuracy"]  # mentions with a gold ID only; composite sets must match whole
    assert (acc["Chemical"]["correct"], acc["Chemical"]["n"], acc["Disease"]["correct"], acc["Disease"]["n"]) == \
        (1, 1, 0, 1)
    assert acc["micro"]["accuracy"] == 0.5
    doc = scores["document_from_predicted"]  # concepts: gold {D1 Chem, D2 Dis, D3 Dis}, predicted + D4
    assert (doc["Disease"]["tp"], doc["Disease"]["n_pred"], doc["Disease"]["n_gold"]) == (2, 3, 2)
    assert doc["Chemical"]["f1"] == 1.0
    from_gold_doc = scores["document_from_gold"]  # D9 from disC is a false positive, D3 is missed
    _check(from_gold_doc["Disease"], tp=1, n_pred=2, n_gold=2, p=0.5, r=0.5, f=0.5)
    both = scores["mention_and_id"]  # aspA and disB match offsets, type and the whole ID set
    assert (both["micro"]["tp"], both["micro"]["n_pred"], both["micro"]["n_gold"]) == (2, 3, 2)


def test_evaluate_engine_links_gold_and_predicted_mentions(biased_engine):
    """The biased engine's one Chemical is the whole text; the tiny index (conftest) links both it and
    the gold mention, so every linking measure is perfect for Chemical; --no-link drops them."""
    doc = PubTatorDocument("7", "Famotidine", None, (Mention(0, 10, "Famotidine", "Chemical", "D015738"),))
    linking = evaluate_engine(biased_engine, [doc])["linking"]
    assert linking["normalization_accuracy"]["Chemical"] == {"accuracy": 1.0, "correct": 1, "n": 1}
    for measure in ("document_from_gold", "document_from_predicted", "mention_and_id"):
        assert linking[measure]["Chemical"]["f1"] == 1.0, measure
    off = biased_engine.with_config(biased_engine.config.with_(link=False))
    assert "linking" not in evaluate_engine(off, [doc])
