"""Fairness analysis, dense vs pruned, on the BC5CDR test set: does pruning hurt some groups more?

    python -m training.fairness_analysis --output results/fairness.json [--controller rule --lambda 1 ...]

Groups (:mod:`training.analysis.fairness`): entity type, mention length in words, mentions seen vs unseen
in the training data (lower-cased gold mention strings of CDR train + dev, which the shipped model
trained on), abbreviations vs full forms (heuristic: :func:`training.analysis.fairness.is_abbreviation`),
and abstract length (quartiles of the evaluated abstracts). Per group: recall over its gold
mentions, precision over its predicted mentions (each prediction placed by its own text), F1,
the drop of each in points, and the counts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bioprune.engine import DEFAULT_MODEL_DIR
from bioprune.evaluation import annotation_spans, pruning_summary
from training.analysis.fairness import (compare_groups, is_abbreviation, mention_vocabulary, quantile_edges,
                               records, standard_groupings, word_count)
from bioprune.io.pubtator import read_pubtator
from bioprune.types import ENTITY_TYPES
from training.analysis.common import (TEST_SET, TRAINING_SETS, add_pruning_args, annotate_gold, command_line,
                                      config_dict, gold_spans, parse_dataclass, pruning_config, write_json_atomic)

logger = logging.getLogger("fairness_analysis")


@dataclass(frozen=True)
class FairnessArgs:
    gold: str = str(TEST_SET)  # PubTator file with gold mentions (the BC5CDR test set)
    training: tuple[str, ...] = tuple(map(str, TRAINING_SETS))  # PubTator files whose gold mentions count as seen
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    output: str = "results/fairness.json"  # results JSON
    limit_docs: int = 0  # 0: every document
    batch_size: int = 16  # windows per forward pass
    threads: int = 2  # torch intra-op threads


DEFINITIONS = {
    "entity_type": "the mention's type (precision and recall both per type: the usual per-type score)",
    "mention_length_words": "whitespace-separated words of the mention text: 1, 2, 3, 4+",
    "seen_in_training": "seen: the lower-cased mention text (whitespace collapsed) is a gold mention string of "
                        "the training files (CDR train + dev, what the shipped model trained on)",
    "abbreviation": "no whitespace, <= 12 characters, >= 2 capitals and no more lower-case letters than capitals "
                    "(HCC, 5-FU, mCPP, COX-2, IgA; also formulas like NaCl; misses Ca, Dox); every other mention "
                    "is a full_form",
    "abstract_length_words": "whitespace words of the document (title + abstract), quartile buckets of the "
                             "evaluated documents; every mention of a document is in its bucket",
    "measures": "recall over the group's gold mentions; precision over the predicted mentions whose own text/type/"
                "document falls in the group (a boundary error can move a prediction to another group); "
                "F1 from the two. Read recall for groups defined on gold mention text.",
}


def analyse(docs, dense_annotations, pruned_annotations, vocabulary: frozenset[str]) -> dict:
    """Per grouping and group: counts, dense and pruned scores, and drops (module docstring)."""
    texts = {d.pmid: d.text for d in docs}
    gold = [m for d, spans in gold_spans(docs).items() for m in records(d, texts[d], spans)]
    dense = [m for d, spans in annotation_spans(dense_annotations).items() for m in records(d, texts[d], spans)]
    pruned = [m for d, spans in annotation_spans(pruned_annotations).items() for m in records(d, texts[d], spans)]
    doc_words = {d: word_count(t) for d, t in texts.items()}
    edges = quantile_edges(list(doc_words.values()))
    groupings = standard_groupings(vocabulary, doc_words, edges)
    out = {name: compare_groups(gold, dense, pruned, group_of, order) for name, (group_of, order) in groupings.items()}
    overall = compare_groups(gold, dense, pruned, lambda m: "all")["all"]
    return {"overall": overall, "groups": out, "abstract_length_edges_words": edges,
            "gold_mentions": len({m.key for m in gold}),
            "abbreviation_examples": sorted({m.text for m in gold if is_abbreviation(m.text)})[:25]}


def training_vocabulary(paths) -> frozenset[str]:
    """Normalised gold Chemical/Disease mention strings of the PubTator files at ``paths``."""
    return mention_vocabulary(m.text for p in paths for d in read_pubtator(p) for m in d.mentions
                              if m.type in ENTITY_TYPES)


def main(argv=None) -> dict:
    args, ns = parse_dataclass(FairnessArgs, __doc__, argv, add_pruning_args)
    config = pruning_config(ns)
    vocabulary = training_vocabulary(args.training)
    docs, dense, pruned = annotate_gold(args, config)
    result = {"command": command_line("-m training.fairness_analysis", argv), "gold": args.gold,
              "training": args.training, "training_vocabulary_size": len(vocabulary), "model": args.model,
              "n_documents": len(docs), "config": config_dict(config), "pruning": pruning_summary(pruned),
              "definitions": DEFINITIONS, **analyse(docs, dense, pruned, vocabulary)}
    write_json_atomic(args.output, result)
    for name, groups in result["groups"].items():
        logger.info("%s: %s", name, "; ".join(f"{g} n={v['n_gold']} F1 drop {v['drop_points']['f1']:.2f}"
                                              for g, v in groups.items()))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
