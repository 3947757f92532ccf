"""Mention-level exact-match scores (the BioCreative V CDR measure) and seqeval entity F1.

A predicted mention counts only if document, start, end and type all equal a gold mention.
Precision, recall and F1 are given per type and micro-averaged over all types. seqeval's entity F1
is computed on word-level BIO tags (words from the tokenizer's pre-tokenizer), for comparison with
papers that report CoNLL-style scores.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bioprune.flops import flops_saved_ratio
from bioprune.labels import spans_to_tags
from bioprune.types import ENTITY_TYPES

Key = tuple[str, int, int, str]  # (document id, start, end, type)


def prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def mention_scores(gold: Iterable[Key], pred: Iterable[Key], types: Sequence[str] = ENTITY_TYPES) -> dict:
    """Exact-match P/R/F1 per type and micro-averaged; duplicates count once."""
    gold, pred = set(gold), set(pred)
    scores = {}
    for t in types:
        g = {k for k in gold if k[3] == t}
        p = {k for k in pred if k[3] == t}
        scores[t] = prf(len(g & p), len(p), len(g))
    scores["micro"] = prf(len(gold & pred), len(pred), len(gold))
    return scores


def word_offsets(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Character (start, end) of each word from its subword tokens' offsets."""
    words: list[list[int]] = []
    last = None
    for (s, e), w in zip(offsets, word_ids):
        if w != last:
            words.append([s, e])
            last = w
        else:
            words[-1][1] = e
    return [tuple(w) for w in words]


def seqeval_scores(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """seqeval entity P/R/F1 (default, lenient mode) per type and micro-averaged."""
    from seqeval.metrics import classification_report

    report = classification_report(gold_tags, pred_tags, output_dict=True, zero_division=0)
    out = {t: {"precision": report[t]["precision"], "recall": report[t]["recall"],
               "f1": report[t]["f1-score"], "support": int(report[t]["support"])}
           for t in ENTITY_TYPES if t in report}
    micro = report["micro avg"]
    out["micro"] = {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1-score"],
                    "support": int(micro["support"])}
    return out


def word_tags(words: Sequence[tuple[int, int]], spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """Word-level BIO tags for character spans (overlapping spans: longest wins)."""
    tags, _ = spans_to_tags(words, list(spans))
    return tags


def evaluate_predictions(gold: Mapping[str, Sequence[tuple[int, int, str]]],
                         pred: Mapping[str, Sequence[tuple[int, int, str]]],
                         words: Mapping[str, Sequence[tuple[int, int]]]) -> dict:
    """Both measures over documents; ``words`` gives each document's word offsets for seqeval."""
    gold_keys = [(d, s, e, t) for d, spans in gold.items() for s, e, t in spans]
    pred_keys = [(d, s, e, t) for d, spans in pred.items() for s, e, t in spans]
    g_tags = [word_tags(words[d], gold[d]) for d in gold]
    p_tags = [word_tags(words[d], pred.get(d, ())) for d in gold]
    return {"mention": mention_scores(gold_keys, pred_keys), "seqeval": seqeval_scores(g_tags, p_tags),
            "n_documents": len(gold)}


def pruning_summary(annotations) -> dict:
    """Corpus totals of what pruning did: tokens per layer, FLOPs saved, pruned tokens, recoveries."""
    traces = [a.trace for a in annotations if a.trace is not None]
    if not traces:
        return {}
    n_layers = len(traces[0].tokens_per_layer)
    per_layer = [sum(t.tokens_per_layer[i] for t in traces) for i in range(n_layers)]
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
    """
    docs = list(documents)
    annotations = annotate_with_progress(engine, [d.to_document() for d in docs], batch_size, progress, desc)
    encoded = engine.encode([d.text for d in docs])
    gold = {d.pmid: [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES] for d in docs}
    pred = _spans(annotations)
    words = {d.pmid: word_offsets(enc.offsets, enc.word_ids) for d, enc in zip(docs, encoded)}
    scores = evaluate_predictions(gold, pred, words)
    summary = pruning_summary(annotations)
    if summary:
        scores["pruning"] = summary
    if reference is not None:
        ref = _spans(annotate_with_progress(reference, [d.to_document() for d in docs], batch_size, progress,
                                            f"{desc} (dense fp32)"))
        dense = evaluate_predictions(gold, ref, words)
        scores["dense"] = {k: dense[k] for k in ("mention", "seqeval")}
        scores["f1_drop_points"] = {t: 100 * (dense["mention"][t]["f1"] - scores["mention"][t]["f1"])
                                    for t in scores["mention"]}
        scores["agreement"] = mention_scores(_keys(ref), _keys(pred))
    return scores


def _spans(annotations) -> dict[str, list[tuple[int, int, str]]]:
    return {a.id: [(e.start, e.end, e.label) for e in a.entities] for a in annotations}


def _keys(spans: Mapping[str, Sequence[tuple[int, int, str]]]) -> list[Key]:
    return [(d, s, e, t) for d, doc_spans in spans.items() for s, e, t in doc_spans]
