"""Evaluate the linker (bioprune/linking.py) on BC5CDR: choose its thresholds on dev, report dev and test.

    # dev, with an index built from train + corpora (never dev): choose, then report
    python -m training.build_linker_index --data ../shared/data --bc5cdr train --output runs/s9/linking/index-dev
    python -m training.evaluate_linking --data ../shared/data --split dev --index runs/s9/linking/index-dev \
        --predicted runs/s9/linking/development_predicted.jsonl --choose --output results/linking_dev.json
    # test, with the shipped index (train + dev + corpora) and the thresholds chosen on dev
    python -m training.evaluate_linking --data ../shared/data --split test \
        --predicted runs/s9/linking/test_predicted.jsonl --output results/linking_test.json

Measures, per type and micro-averaged (computed by :func:`bioprune.evaluation.linking_scores`, which
``bioprune evaluate`` reports too):

* ``normalization_accuracy``: gold mentions (those with a gold ID) whose predicted ID set equals
  the gold one;
* ``document_from_gold`` / ``document_from_predicted``: the BioCreative V CDR concept measure
  (per document, the set of IDs of each type; composite IDs count one by one; micro P/R/F1), from
  the gold mentions and from the shipped model's predicted mentions
  (``PruningEngine.from_pretrained()``, default config, cached in ``--predicted``);
* ``mention_and_id``: predicted mentions whose document, offsets, type and ID set all equal a gold
  mention's;
* ``document_from_predicted_mesh2024``: ``document_from_predicted`` with both sides' IDs read in
  MeSH 2024 (:func:`mesh2024_crosswalk`). BC5CDR's gold (2015) names supplementary records that
  MeSH has since promoted to descriptors (linezolid C098010 is D000069349 now); the corpora of
  2021-22 behind the index name the descriptor, so the strict measure counts the same concept
  twice, once missed and once wrong. Reported beside the strict measure, never instead of it.

``--choose`` (dev only) sweeps the pipeline switches and each type's TF-IDF similarity threshold,
keeping what maximises the document F1 from gold mentions: the shipped NER model was trained on
train+dev, so its dev mentions are nearly the gold ones and say nothing more about unseen text.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from bioprune.evaluation import Span, concepts, gold_concepts, linking_scores, mention_scores
from bioprune.io.pubtator import PubTatorDocument, read_pubtator
from bioprune.linking import (DEFAULT_INDEX_DIR, LinkerSettings, NameRow, link_document, read_index,
                              read_names)
from bioprune.types import ENTITY_TYPES
from training.analysis.common import command_line, parse_dataclass, write_json_atomic
from training.build_linker_index import MESH_TERMS, open_table


SPLITS = {"dev": "bc5cdr/CDR_DevelopmentSet.PubTator.txt", "test": "bc5cdr/CDR_TestSet.PubTator.txt"}
SWITCHES = {"expand_abbreviations": (True, False), "split_composites": (True, False), "head_score": (0.8, 0.0),
            "respelled_min_letters": (8, 6, 10, 0), "chemical_variants": (True, False)}
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95


@dataclass(frozen=True)
class LinkingEvalArgs:
    split: Literal[tuple(SPLITS)]  # BC5CDR split scored
    predicted: str  # cache of the model's predicted mentions (JSONL)
    output: str  # results JSON
    data: str = "../shared/data"  # the shared data folder (bc5cdr/, vocab/)
    index: str = str(DEFAULT_INDEX_DIR)  # index folder (build_linker_index)
    choose: bool = False  # sweep settings on this split (dev only)


def predicted_spans(path: Path, docs: Sequence[PubTatorDocument]) -> dict[str, list[Span]]:
    """The shipped model's mentions per PMID, from the cache ``path`` (made on first use: one run of
    ``PruningEngine.from_pretrained()`` over the documents, a few CPU minutes)."""
    if not path.is_file():
        from bioprune.config import DEFAULT
        from bioprune.engine import PruningEngine
        from bioprune.evaluation import annotate_with_progress

        engine = PruningEngine.from_pretrained(config=DEFAULT)  # the entities users get (gene products dropped); linked again here
        annotations = annotate_with_progress(engine, [d.to_document() for d in docs],
                                             progress=True, desc="predict")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"id": a.id, "entities": [e.to_dict() for e in a.entities]}) + "\n"
                                for a in annotations))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: [(e["start"], e["end"], e["label"], e["text"]) for e in r["entities"]] for r in rows}


def link_spans(index, docs: Sequence[PubTatorDocument], spans: Mapping[str, Sequence[Span]],
               settings: LinkerSettings) -> dict[str, list[frozenset[str]]]:
    """The linked ID set of each span, per document."""
    return {d.pmid: [frozenset(lk.ids) for lk in
                     link_document(index, d.text, [(s[3], s[2]) for s in spans.get(d.pmid, ())], settings)]
            for d in docs}


def score(index, docs: Sequence[PubTatorDocument], predicted: Mapping[str, Sequence[Span]],
          settings: LinkerSettings, crosswalk: Mapping[str, str] | None = None) -> dict:
    """Every measure of the module docstring for one index and settings; the MeSH 2024 one only
    with a ``crosswalk`` (:func:`mesh2024_crosswalk`)."""
    gold, gold_sets = gold_concepts(docs)
    started = time.perf_counter()
    from_gold = link_spans(index, docs, gold, settings)
    from_pred = link_spans(index, docs, predicted, settings)
    seconds = time.perf_counter() - started
    out = {**linking_scores(gold, gold_sets, from_gold, predicted, from_pred),
           "linking_seconds_per_document": seconds / (2 * len(docs))}
    if crosswalk is not None:
        out["document_from_predicted_mesh2024"] = mention_scores(
            concepts(gold, in_mesh2024(crosswalk, gold_sets)), concepts(predicted, in_mesh2024(crosswalk, from_pred)))
        out["mesh2024_crosswalk_ids"] = len(crosswalk)
    return out


def mesh2024_crosswalk(terms: Mapping[str, set[str]], names_by_id: Mapping[str, set[str]]) -> dict[str, str]:
    """ID -> the MeSH 2024 descriptor it became: an ID no 2024 descriptor holds whose names (any of
    ``names_by_id[ID]``, lower case) are terms (``terms``: lower-case term -> descriptor UIs) of
    exactly one descriptor. MeSH keeps each term on one record, so a supplementary record's name on
    a descriptor says the record was promoted to it."""
    known = set().union(*terms.values()) if terms else set()
    out = {}
    for cid, names in names_by_id.items():
        found = {ui for name in names for ui in terms.get(name, ())}
        if cid not in known and len(found) == 1:
            out[cid] = found.pop()
    return out


def mesh2024_terms(data: Path) -> dict[str, set[str]]:
    """Lower-case MeSH 2024 term -> the descriptor UIs that carry it."""
    terms: dict[str, set[str]] = {}
    for row in open_table(data / MESH_TERMS, ("DescriptorUI", "TermName")):
        terms.setdefault(row["TermName"].lower(), set()).add(row["DescriptorUI"])
    return terms


def named_ids(docs: Sequence[PubTatorDocument], rows: Sequence[NameRow]) -> dict[str, set[str]]:
    """Every ID of the gold ``docs`` and the index ``rows`` -> the lower-case names it is given."""
    names: dict[str, set[str]] = {}
    pairs = [(m.text, i) for d in docs for m in d.mentions for i in m.concept_ids]
    for name, i in pairs + [(r.name, i) for r in rows for i in r.id.split("|")]:
        names.setdefault(i, set()).add(name.lower())
    return names


def in_mesh2024(crosswalk: Mapping[str, str], sets: Mapping[str, Sequence[frozenset[str]]]) -> dict:
    """``sets`` with each ID replaced by its :func:`mesh2024_crosswalk` descriptor."""
    return {doc: [frozenset(crosswalk.get(i, i) for i in ids) for ids in found] for doc, found in sets.items()}


def choose(index, docs, predicted, base: LinkerSettings) -> tuple[LinkerSettings, list[dict]]:
    """Switches first (:data:`SWITCHES`, ties to the first value), then each type's threshold, by
    document F1 from gold mentions."""
    tried = []

    def f1(settings: LinkerSettings, label: str) -> float:
        result = score(index, docs, predicted, settings)["document_from_gold"]
        tried.append({"settings": asdict(settings), **{t: result[t]["f1"] for t in (*ENTITY_TYPES, "micro")}})
        return result[label]["f1"]

    best = base
    for switch, values in SWITCHES.items():
        scored = {v: f1(replace(best, **{switch: v}), "micro") for v in values}
        best = replace(best, **{switch: max(values, key=lambda v: scored[v])})
    for field, label in (("chemical_min_similarity", "Chemical"), ("disease_min_similarity", "Disease")):
        scored = {t: f1(replace(best, **{field: t}), label) for t in THRESHOLDS}
        best = replace(best, **{field: max(scored, key=lambda t: (scored[t], t))})
    return best, tried


def main(argv: list[str] | None = None) -> dict:
    args = parse_dataclass(LinkingEvalArgs, __doc__, argv, check=lambda a: a.choose and a.split != "dev"
                           and "--choose is for the development set only")
    docs = read_pubtator(Path(args.data) / SPLITS[args.split])
    predicted = predicted_spans(Path(args.predicted), docs)
    started = time.perf_counter()
    index = read_index(args.index)
    load_seconds = time.perf_counter() - started
    rows = read_names(args.index)
    settings, tried = choose(index, docs, predicted, LinkerSettings()) if args.choose else (LinkerSettings(), [])
    crosswalk = mesh2024_crosswalk(mesh2024_terms(Path(args.data)), named_ids(docs, rows))
    result = {"split": args.split, "index": args.index, "index_load_seconds": load_seconds,
              "settings": asdict(settings), **score(index, docs, predicted, settings, crosswalk),
              "command": command_line("-m training.evaluate_linking", argv)}
    if tried:
        result["tried"] = tried
    write_json_atomic(args.output, result)
    for key in ("normalization_accuracy", "document_from_gold", "document_from_predicted", "mention_and_id",
                "document_from_predicted_mesh2024"):
        print(key, {t: round(v.get("f1", v.get("accuracy", 0.0)), 4) for t, v in result[key].items()})
    return result


if __name__ == "__main__":
    main()
