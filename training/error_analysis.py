"""Error analysis, dense vs pruned, on the BC5CDR test set: which errors pruning adds, and why.

    python -m training.error_analysis --output results/error_analysis.json [--controller rule --lambda 1 ...]

Both models run in one process on the same weights. Errors are classified as boundary, type,
boundary+type, missed and spurious (:mod:`training.analysis.error_analysis`); the errors the pruned model
makes and the dense one does not are attributed from the pruned run's trace to entity tokens
pruned, wrong early exits or context lost, with a few short examples of each.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bioprune.engine import DEFAULT_MODEL_DIR
from training.analysis.error_analysis import (CAUSES, ERROR_KINDS, added_errors, attribute_added,
                                     attribution_counts, corpus_errors, count_kinds, example, pick_examples,
                                     still_pruned)
from bioprune.evaluation import annotation_spans, mention_scores, pruning_summary, span_keys
from training.analysis.common import (TEST_SET, add_pruning_args, annotate_gold, command_line, config_dict,
                                      gold_spans, parse_dataclass, pruning_config, write_json_atomic)

logger = logging.getLogger("error_analysis")


@dataclass(frozen=True)
class ErrorAnalysisArgs:
    gold: str = str(TEST_SET)  # PubTator file with gold mentions (the BC5CDR test set)
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    output: str = "results/error_analysis.json"  # results JSON
    limit_docs: int = 0  # 0: every document
    batch_size: int = 16  # windows per forward pass
    threads: int = 2  # torch intra-op threads
    examples_per_cause: int = 3  # short examples kept of each cause


def analyse(docs, dense_annotations, pruned_annotations, examples_per_cause: int = 3) -> dict:
    """The results of the module docstring from gold documents and both runs' Annotations."""
    gold = gold_spans(docs)
    dense_pred, pruned_pred = annotation_spans(dense_annotations), annotation_spans(pruned_annotations)
    dense_errors, pruned_errors = corpus_errors(gold, dense_pred), corpus_errors(gold, pruned_pred)
    added, removed = added_errors(dense_errors, pruned_errors), added_errors(pruned_errors, dense_errors)
    pruned_tokens = {a.id: still_pruned(a.trace) for a in pruned_annotations}
    attributions = attribute_added(added, pruned_tokens, gold)
    texts = {d.pmid: d.text for d in docs}
    return {
        "scores": {"dense": mention_scores(span_keys(gold), span_keys(dense_pred))["micro"],
                   "pruned": mention_scores(span_keys(gold), span_keys(pruned_pred))["micro"]},
        "errors": {"dense": count_kinds(dense_errors), "pruned": count_kinds(pruned_errors),
                   "added_by_pruning": count_kinds(added), "removed_by_pruning": count_kinds(removed)},
        "attribution": attribution_counts(attributions),
        "documents_with_added_errors": len({e.doc_id for e in added}),
        "examples": [example(a, texts[a.error.doc_id], dense_pred.get(a.error.doc_id, ()))
                     for a in pick_examples(attributions, examples_per_cause)],
        "kinds": list(ERROR_KINDS), "causes": list(CAUSES),
    }


def main(argv=None) -> dict:
    args, ns = parse_dataclass(ErrorAnalysisArgs, __doc__, argv, add_pruning_args)
    config = pruning_config(ns)
    docs, dense, pruned = annotate_gold(args, config)
    result = {"command": command_line("-m training.error_analysis", argv), "gold": args.gold, "model": args.model,
              "n_documents": len(docs), "config": config_dict(config), "pruning": pruning_summary(pruned),
              **analyse(docs, dense, pruned, args.examples_per_cause)}
    write_json_atomic(args.output, result)
    a = result["attribution"]
    logger.info("errors dense %d, pruned %d, added by pruning %d (%s)", sum(result["errors"]["dense"].values()),
                sum(result["errors"]["pruned"].values()), a["total"],
                ", ".join(f"{k} {v}" for k, v in a["by_cause"].items()))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
