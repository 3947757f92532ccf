"""Score a model on a corpus with other guidelines (BioRED dev), and count genes taken for chemicals.

    python -m training.evaluate_corpus --gold ../shared/data/corpora/BioRED_Dev.PubTator \
        --model bioprune/assets/bc5cdr-minilm-l6 --output results/corpus_biored_dev_shipped.json

Why (issue 17): the BC5CDR model tags gene and protein symbols as chemicals on gene-rich abstracts,
and BC5CDR test cannot show it (it has no genes). The file's corpus (training/corpora.py, by file
name) maps its types to ours; only the types it annotates are scored (exact mention match, as
``bioprune evaluate``), and its gene/variant mentions (OTHER_ENTITY) count the predicted chemicals
that overlap one: ``chemical_on_other_entity``. The same scores on the gene-rich documents (at least
the median count of gene/variant mentions) show whether chemical precision collapses there. With
``--reference-dense`` the dense fp32 model's entities are the reference for agreement (fidelity).

Documents whose PMID is also in a BC5CDR file given with ``--exclude`` (the shipped model trained
on BC5CDR train+dev) are left out, so that no model is scored on text it trained on.
"""
from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from bioprune.config import DENSE
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.errors import InputError
from bioprune.evaluation import annotate_with_progress, annotation_spans, mention_scores, span_keys
from bioprune.io.pubtator import read_pubtator
from bioprune.options import add_config_arguments
from training.analysis.common import command_line, parse_dataclass, pruning_config, write_json_atomic
from training.corpora import OTHER_ENTITY, corpus_for_file, mapped_spans

logger = logging.getLogger("evaluate_corpus")


@dataclass(frozen=True)
class CorpusArgs:
    gold: str  # PubTator file of a corpus registered in training/corpora.py
    model: str = str(DEFAULT_MODEL_DIR)  # model folder (default: the shipped model)
    exclude: tuple[str, ...] = ()  # PubTator files whose PMIDs are not scored
    reference_dense: bool = False  # also run the dense fp32 model and report agreement with it
    batch_size: int = 16  # windows per forward pass
    threads: int = 2  # torch intra-op threads
    output: str | None = None  # results JSON to write


def overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    """Whether [start, end) shares a character with any of ``spans``."""
    return any(s < end and start < e for s, e in spans)


def corpus_scores(gold: Mapping[str, list[tuple[int, int, str]]], pred: Mapping[str, list[tuple[int, int, str]]],
                  other: Mapping[str, list[tuple[int, int]]], types: Sequence[str]) -> dict:
    """Exact-mention P/R/F1 per scored type and micro, plus the predicted chemicals that overlap a
    gene/variant mention (count and share of predicted chemicals). Pure: spans by document id."""
    scores = mention_scores([k for k in span_keys(gold) if k[-1] in types],
                            [k for k in span_keys(pred) if k[-1] in types], types)
    chemicals = [(d, s, e) for d, ds in pred.items() for s, e, t in ds if t == "Chemical"]
    on_other = sum(overlaps(s, e, other.get(d, [])) for d, s, e in chemicals)
    scores["chemical_on_other_entity"] = {"n": on_other, "n_pred_chemical": len(chemicals),
                                          "share": on_other / len(chemicals) if chemicals else 0.0}
    return scores


def corpus_gold(docs, corpus) -> tuple[list[str], dict, dict]:
    """The types ``corpus`` annotates, its gold ``(start, end, type)`` spans of those types and its
    gene/variant ``(start, end)`` spans, by document id."""
    types = sorted(corpus.annotates)
    spans = {d.pmid: mapped_spans(d, corpus) for d in docs}
    return (types, {k: [s for s in v if s[2] in types] for k, v in spans.items()},
            {k: [(s, e) for s, e, t in v if t == OTHER_ENTITY] for k, v in spans.items()})


def main(argv=None) -> dict:
    # the engine's options: --no-link also keeps the entities linking drops (gene products, unsure unlinked ones)
    args, ns = parse_dataclass(CorpusArgs, __doc__, argv, add_config_arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch
    torch.set_num_threads(args.threads)
    try:
        corpus = corpus_for_file(args.gold)
        excluded = {d.pmid for path in args.exclude for d in read_pubtator(path)}
        all_docs = read_pubtator(args.gold)
        docs = [d for d in all_docs if d.pmid not in excluded]
        config = pruning_config(ns)
    except (InputError, ValueError) as err:
        print(f"evaluate_corpus: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    types, gold, other = corpus_gold(docs, corpus)
    engine = PruningEngine.from_pretrained(args.model, config=config)
    pred = annotation_spans(annotate_with_progress(engine, [d.to_document() for d in docs], args.batch_size, True, "corpus"))
    counts = {d.pmid: len(other[d.pmid]) for d in docs}
    threshold = statistics.median(counts.values()) if counts else 0
    rich = {d for d, n in counts.items() if n >= threshold and n > 0}
    subset = lambda spans: {d: v for d, v in spans.items() if d in rich}  # noqa: E731
    result = {"command": command_line("-m training.evaluate_corpus", argv), "model": args.model,
              "gold": args.gold, "corpus": corpus.name, "config": str(config), "scored_types": types,
              "n_documents": len(docs), "n_excluded": len(all_docs) - len(docs),
              "all": corpus_scores(gold, pred, other, types),
              "gene_rich": {"min_other_entity_mentions": threshold, "n_documents": len(rich),
                            **corpus_scores(subset(gold), subset(pred), subset(other), types)}}
    if args.reference_dense:
        dense = PruningEngine.from_pretrained(args.model, config=replace(DENSE, link=config.link))
        ref = annotation_spans(annotate_with_progress(dense, [d.to_document() for d in docs], args.batch_size, True, "dense"))
        result["agreement"] = mention_scores(span_keys(ref), span_keys(pred))
    for part in ("all", "gene_rich"):
        m = result[part]
        logger.info("%s: micro F1 %.4f; Chemical P %.4f R %.4f; chemicals on genes/variants %d of %d (%.1f%%)",
                    part, m["micro"]["f1"], m.get("Chemical", {}).get("precision", float("nan")),
                    m.get("Chemical", {}).get("recall", float("nan")), m["chemical_on_other_entity"]["n"],
                    m["chemical_on_other_entity"]["n_pred_chemical"], 100 * m["chemical_on_other_entity"]["share"])
    if args.output:
        write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    main()
