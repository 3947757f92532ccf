"""Mention-level exact-match scores (the BioCreative V CDR measure), seqeval entity F1 and the
concept (ID) measures of the linker.

A predicted mention counts only if document, start, end and type all equal a gold mention.
Precision, recall and F1 are given per type and micro-averaged over all types. seqeval's entity F1
is computed on word-level BIO tags (words from the tokenizer's pre-tokenizer), for comparison with
papers that report CoNLL-style scores.

Linking (:func:`linking_scores`, when the engine links): ``normalization_accuracy`` (gold mentions
with a gold ID whose linked ID set equals the gold set), ``document_from_gold`` /
``document_from_predicted`` (the BioCreative V CDR concept measure: per document, the set of
(ID, type); composite IDs count one by one; from the gold mentions and from the engine's own), and
``mention_and_id`` (a predicted mention whose offsets, type and ID set all equal a gold mention's).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby

from bioprune.labels import spans_to_tags
from bioprune.types import ENTITY_TYPES, flops_saved_ratio

Key = tuple[str, int, int, str]  # (document id, start, end, type)


def prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def mention_scores(gold: Iterable[tuple], pred: Iterable[tuple], types: Sequence[str] = ENTITY_TYPES) -> dict:
    """Exact-match P/R/F1 per type and micro-averaged over keys whose last element is the type
    (:data:`Key`, or the linking measures' keys); duplicates count once."""
    gold, pred = set(gold), set(pred)
    by_type = {t: ({k for k in gold if k[-1] == t}, {k for k in pred if k[-1] == t}) for t in types}
    scores = {t: prf(len(g & p), len(p), len(g)) for t, (g, p) in by_type.items()}
    scores["micro"] = prf(len(gold & pred), len(pred), len(gold))
    return scores


def word_offsets(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Character (start, end) of each word from its subword tokens' offsets."""
    words = [[span for span, _ in group] for _, group in groupby(zip(offsets, word_ids), key=lambda item: item[1])]
    return [(w[0][0], w[-1][1]) for w in words]  # first token's start, last token's end


def seqeval_scores(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """seqeval entity P/R/F1 (default, lenient mode) per type and micro-averaged."""
    from seqeval.metrics import classification_report

    report = classification_report(gold_tags, pred_tags, output_dict=True, zero_division=0)
    rows = {**{t: report[t] for t in ENTITY_TYPES if t in report}, "micro": report["micro avg"]}
    return {name: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"],
                   "support": int(r["support"])} for name, r in rows.items()}


def word_tags(words: Sequence[tuple[int, int]], spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """Word-level BIO tags for character spans (overlapping spans: longest wins)."""
    return spans_to_tags(words, list(spans))[0]


def evaluate_predictions(gold: Mapping[str, Sequence[tuple[int, int, str]]],
                         pred: Mapping[str, Sequence[tuple[int, int, str]]],
                         words: Mapping[str, Sequence[tuple[int, int]]]) -> dict:
    """Both measures over documents; ``words`` gives each document's word offsets for seqeval."""
    gold_keys, pred_keys = span_keys(gold), span_keys(pred)
    g_tags = [word_tags(words[d], gold[d]) for d in gold]
    p_tags = [word_tags(words[d], pred.get(d, ())) for d in gold]
    return {"mention": mention_scores(gold_keys, pred_keys), "seqeval": seqeval_scores(g_tags, p_tags),
            "n_documents": len(gold)}


Span = tuple[int, int, str, str]  # start, end, type, mention text
IdSets = Mapping[str, Sequence[frozenset[str]]]  # document id -> the ID set of each of its spans, in order


def concepts(spans: Mapping[str, Sequence[Span]], ids: IdSets) -> set[tuple]:
    """(document id, ID, type) for every ID of every span: the CDR document-level concept set."""
    return {(doc, i, s[2]) for doc, doc_spans in spans.items() for s, found in zip(doc_spans, ids[doc])
            for i in found}


def mention_id_keys(spans: Mapping[str, Sequence[Span]], ids: IdSets) -> set[tuple]:
    """(document id, start, end, ID set, type) of every span with at least one ID."""
    return {(doc, s[0], s[1], found, s[2]) for doc, doc_spans in spans.items()
            for s, found in zip(doc_spans, ids[doc]) if found}


def normalization_accuracy(gold: Mapping[str, Sequence[Span]], gold_ids: IdSets, linked: IdSets) -> dict:
    """Share of gold mentions with a gold ID whose linked ID set is exactly the gold set."""
    counts = {t: [0, 0] for t in ENTITY_TYPES}
    for doc, doc_spans in gold.items():
        for s, want, got in zip(doc_spans, gold_ids[doc], linked[doc]):
            if want:
                counts[s[2]][0] += want == got
                counts[s[2]][1] += 1
    counts["micro"] = [sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())]
    return {t: {"accuracy": c / n if n else 0.0, "correct": c, "n": n} for t, (c, n) in counts.items()}


def linking_scores(gold: Mapping[str, Sequence[Span]], gold_ids: IdSets, from_gold: IdSets,
                   predicted: Mapping[str, Sequence[Span]], from_predicted: IdSets) -> dict:
    """The four linking measures of the module docstring: ``from_gold`` links the gold spans,
    ``from_predicted`` the predicted ones."""
    return {
        "normalization_accuracy": normalization_accuracy(gold, gold_ids, from_gold),
        "document_from_gold": mention_scores(concepts(gold, gold_ids), concepts(gold, from_gold)),
        "document_from_predicted": mention_scores(concepts(gold, gold_ids), concepts(predicted, from_predicted)),
        "mention_and_id": mention_scores(mention_id_keys(gold, gold_ids), mention_id_keys(predicted, from_predicted)),
    }


def gold_concepts(documents) -> tuple[dict[str, list[Span]], dict[str, list[frozenset[str]]]]:
    """The Chemical/Disease spans of gold PubTator ``documents`` and their gold ID sets, per PMID."""
    gold = {d.pmid: [(m.start, m.end, m.type, m.text) for m in d.mentions if m.type in ENTITY_TYPES]
            for d in documents}
    gold_ids = {d.pmid: [frozenset(m.concept_ids) for m in d.mentions if m.type in ENTITY_TYPES] for d in documents}
    return gold, gold_ids


def evaluate_linking(linker, documents, annotations) -> dict:
    """:func:`linking_scores` of an engine's linked ``annotations`` of gold PubTator ``documents``,
    with ``linker`` (the engine's) also linking the gold mentions."""
    gold, gold_ids = gold_concepts(documents)
    from_gold = {d.pmid: [frozenset(lk.ids) for lk in linker.link(d.text, [(s[3], s[2]) for s in gold[d.pmid]])]
                 for d in documents}
    predicted = {a.id: [(e.start, e.end, e.label, e.text) for e in a.entities] for a in annotations}
    from_predicted = {a.id: [frozenset(e.ids) for e in a.entities] for a in annotations}
    return linking_scores(gold, gold_ids, from_gold, predicted, from_predicted)


def pruning_summary(annotations) -> dict:
    """Corpus totals of what pruning did: tokens per layer, FLOPs saved, pruned tokens, recoveries."""
    traces = [a.trace for a in annotations if a.trace is not None]
    if not traces:
        return {}
    per_layer = [sum(layer) for layer in zip(*(t.tokens_per_layer for t in traces))]
    flops, dense = sum(t.flops for t in traces), sum(t.dense_flops for t in traces)
    return {
        "documents": len(traces),
        "tokens_per_layer": per_layer,
        "token_keep_ratio_last_layer": per_layer[-1] / per_layer[0] if per_layer[0] else 1.0,
        "tokens_pruned": sum(len(t.pruned_tokens) for t in traces),
        "tokens_pruned_ratio": sum(len(t.pruned_tokens) for t in traces) / per_layer[0] if per_layer[0] else 0.0,
        "flops": flops,
        "dense_flops": dense,
        "flops_saved_ratio": flops_saved_ratio(flops, dense),  # net of pruning's own cost: may be < 0
        "recovery_rate_documents": sum(bool(t.recovery_events) for t in traces) / len(traces),
        "recovered_tokens": sum(len(e.positions) for t in traces for e in t.recovery_events),
        "recovery_events_by_trigger": {
            trig: sum(e.trigger == trig for t in traces for e in t.recovery_events)
            for trig in sorted({e.trigger for t in traces for e in t.recovery_events})},
    }


EVAL_CHUNK_DOCS = 64  # documents annotated per engine call: how often the progress bar moves


def annotate_with_progress(engine, documents: Sequence, batch_size: int = 16, progress: bool = False,
                           desc: str = "evaluate") -> list:
    """``engine.annotate(documents)`` in chunks of EVAL_CHUNK_DOCS, with a tqdm bar (on stderr) when
    ``progress``. The chunks are the same with the bar on or off, so the scores never depend on it
    (and an annotation does not depend on its batch: tests/test_engine.py)."""
    from tqdm.auto import tqdm

    annotations = []
    with tqdm(total=len(documents), desc=desc, unit="doc", disable=not progress, leave=False) as bar:
        for start in range(0, len(documents), EVAL_CHUNK_DOCS):
            chunk = documents[start:start + EVAL_CHUNK_DOCS]
            annotations += engine.annotate(chunk, batch_size=batch_size)
            bar.update(len(chunk))
    return annotations


def evaluate_engine(engine, documents, batch_size: int = 16, progress: bool = False, desc: str = "evaluate",
                    reference=None) -> dict:
    """Annotate gold PubTator documents with ``engine`` and score the predictions against them.

    ``progress`` shows a bar on stderr (the CLI's, unless --quiet); ``desc`` labels it.
    ``reference``: another engine (the exact dense fp32 model, :data:`bioprune.config.DENSE`) run on
    the same documents: adds its scores (``dense``), the F1 drop in points (``f1_drop_points``) and
    ``agreement``, the exact-match scores of our entities against the reference's (fidelity).
    With ``engine.config.link``, ``linking`` holds :func:`evaluate_linking`'s measures.
    """
    docs = list(documents)
    inputs = [d.to_document() for d in docs]
    annotations = annotate_with_progress(engine, inputs, batch_size, progress, desc)
    encoded = engine.encode([d.text for d in docs])
    gold = {d.pmid: [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES] for d in docs}
    pred = annotation_spans(annotations)
    words = {d.pmid: word_offsets(enc.offsets, enc.word_ids) for d, enc in zip(docs, encoded)}
    scores = evaluate_predictions(gold, pred, words)
    if summary := pruning_summary(annotations):
        scores["pruning"] = summary
    if engine.config.link:
        scores["linking"] = evaluate_linking(engine.linker, docs, annotations)
    if reference is not None:
        ref = annotation_spans(annotate_with_progress(reference, inputs, batch_size, progress, f"{desc} (dense fp32)"))
        dense = evaluate_predictions(gold, ref, words)
        scores["dense"] = {k: dense[k] for k in ("mention", "seqeval")}
        scores["f1_drop_points"] = {t: 100 * (dense["mention"][t]["f1"] - scores["mention"][t]["f1"])
                                    for t in scores["mention"]}
        scores["agreement"] = mention_scores(span_keys(ref), span_keys(pred))
    return scores


def annotation_spans(annotations) -> dict[str, list[tuple[int, int, str]]]:
    """Each annotation's entities as ``(start, end, label)``, by document id."""
    return {a.id: [(e.start, e.end, e.label) for e in a.entities] for a in annotations}


def span_keys(spans: Mapping[str, Sequence[tuple[int, int, str]]]) -> list[Key]:
    """Spans by document id as flat :data:`Key` tuples, the form :func:`mention_scores` compares."""
    return [(d, s, e, t) for d, doc_spans in spans.items() for s, e, t in doc_spans]
