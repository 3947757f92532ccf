"""Batch independence: does an abstract's result depend on the batch it shares?

    python -m training.batch_independence --output results/batch_independence.json

A user's abstract should get the same entities whether the annotator sees it alone (an app
request, batch 1) or among 15 others (``bioprune annotate``, batch 16). For each precision, runs
the default pruning on the MEDLINE slice's first half at both batch sizes and counts the abstracts
whose label probabilities differ at all (and by how much at most), and the exact-match F1 of the
two runs' entities (linking off: the linker works on text, not on the batch).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import torch

from bioprune.config import DEFAULT
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import prf
from bioprune.precision import PRECISIONS
from training.analysis.common import MEDLINE_SLICE, command_line, medline_halves, parse_dataclass, write_json_atomic

logger = logging.getLogger("batch_independence")


@dataclass(frozen=True)
class BatchIndependenceArgs:
    unlabelled: str = str(MEDLINE_SLICE)  # PubMed XML (the MEDLINE slice)
    half: Literal["first", "second"] = "first"  # the first half: where settings are chosen and checked
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    output: str = "results/batch_independence.json"  # results JSON
    precisions: tuple[Literal[PRECISIONS], ...] = ("auto", "bf16", "int8", "fp32")  # each run at the default config
    batch_sizes: tuple[int, int] = (1, 16)  # the two batch sizes compared
    limit_docs: int = 0  # 0: every document of the half
    threads: int = 2  # torch intra-op threads


def compare(engine: PruningEngine, texts: list[str], batch_sizes: tuple[int, int]) -> dict:
    """One engine at two batch sizes: abstracts whose label probabilities differ (and the largest
    difference), and the exact-match agreement of their entities."""
    encoded = engine.encode(texts)
    a, b = (engine.run(encoded, batch_size=bs) for bs in batch_sizes)
    gaps = [float(abs(pa - pb).max()) if pa.size else 0.0 for (pa, _), (pb, _) in zip(a, b)]
    ents = [[{(e.start, e.end, e.label) for e in ann.entities} for ann in engine.annotate(texts, batch_size=bs)]
            for bs in batch_sizes]
    same = sum(len(x & y) for x, y in zip(*ents))
    n_a, n_b = (sum(map(len, e)) for e in ents)
    return {"runs_at": engine.precision, "abstracts_with_different_probabilities": sum(g > 0 for g in gaps),
            "largest_probability_difference": max(gaps, default=0.0),
            "entities": [n_a, n_b], "entity_agreement_f1": prf(same, n_b, n_a)["f1"]}


def main(argv=None) -> dict:
    args = parse_dataclass(BatchIndependenceArgs, __doc__, argv)
    torch.set_num_threads(args.threads)
    first, second = medline_halves(args.unlabelled)
    docs = first if args.half == "first" else second
    texts = [d.text for d in (docs[:args.limit_docs] if args.limit_docs else docs)]
    base = PruningEngine.from_pretrained(args.model, config=replace(DEFAULT, link=False))
    rows = {}
    for precision in args.precisions:
        engine = base.with_config(replace(DEFAULT, link=False, precision=precision))
        rows[precision] = compare(engine, texts, args.batch_sizes)
        logger.info("%s: %s", precision, rows[precision])
    result = {"command": command_line("-m training.batch_independence", argv), "model": args.model,
              "unlabelled": args.unlabelled, "half": args.half, "n_documents": len(texts),
              "batch_sizes": list(args.batch_sizes), "config": "the default, linking off", "rows": rows}
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
