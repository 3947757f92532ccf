"""Choose the tag decoding and the document-level consistency passes on the development set (never on test).

    python -m training.choose_postprocess --model runs/dev-minilm \
        --gold DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output results/decoding_dev.json

The model must not have seen the gold file: use a train-only run. Predicts label probabilities once
(dense fp32), then scores, with the BioCreative exact-match measure, every pairing of a decoding
(:class:`bioprune.labels.Decoding`: the per-word argmax, or the best valid BIO sequence with a bias
toward O) and a combination of :func:`bioprune.postprocess.propagate_mentions`,
:func:`bioprune.postprocess.expand_abbreviations` and, with ``--gazetteer-from`` (the scored model's
own training files), the gazetteer pass at each of :data:`GAZETTEER_GRID`'s settings
(:func:`bioprune.postprocess.build_gazetteer`); with ``--substances-from`` (the data folder) each
gazetteer setting is also scored with MeSH's substance names added (training/build_linker_index.py's
``substance_names``: "thiopental", "daunorubicin", names a training set of 500 abstracts never
meets), less those that the training files and the ``--genes-from`` corpora tag as chemicals on
fewer than a ratio of their occurrences, at each of :data:`SUBSTANCE_RATIOS`. With
``--off-domain`` (a corpus of other guidelines that the model never trained on, registered in ``training/corpora.py``) every pairing is also scored
there, on the types it annotates, and the best pairing is the one with the highest mean of the two
micro F1s, so that a setting that gains on BC5CDR and loses elsewhere is not chosen; else the
highest dev micro F1. With ``--genes-from`` (corpora with a gene type, e.g. DrugProt and ChemDisGene)
each setting is also scored followed by the genes pass (:func:`bioprune.postprocess.drop_gene_names`)
at each of :data:`GENES_RATIOS`: names those corpora tag only as genes, proteins or variants, less
the chemicals of the scored model's training files (``--gazetteer-from``). Every setting is scored
as it is and with :func:`bioprune.postprocess.repair_brackets` first ("brackets + ..."), a pass with
no setting of its own. With ``--linker-index`` (an index built without ``--gold``), the best setting's entities are then
linked (gene products dropped, as the engine does) and every pair of :data:`UNLINKED_GRID`
thresholds is scored: an entity left without an ID is kept only if its score reaches its type's
threshold (:meth:`bioprune.postprocess.Postprocess.keeps`); the same mean rule chooses the pair.
The best is written as ``choice``: the content of the ``postprocess.json`` that the
engine reads beside the model it was chosen for; a chosen gazetteer's names are built with the
chosen settings from ``--ship-gazetteer-from`` (the shipped model's training files; default
``--gazetteer-from``).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch

from bioprune.config import DENSE
from bioprune.engine import PruningEngine
from bioprune.evaluation import mention_scores, span_keys
from bioprune.io.pubtator import read_pubtator
from bioprune.labels import ARGMAX, Decoding, decode_entities
from bioprune.linking import Linker
from bioprune.postprocess import Gazetteer, Postprocess, build_gazetteer, tagged_as
from bioprune.types import ENTITY_TYPES
from training.analysis.common import command_line, gold_spans, parse_dataclass, write_json_atomic
from training.build_linker_index import MESH_TERMS, MESH_TREES, substance_names
from training.corpora import OTHER_ENTITY, corpus_for_file, mapped_spans
from training.evaluate_corpus import corpus_gold, corpus_scores

VARIANTS = {"none": (), "propagate": ("propagate",), "abbreviations": ("abbreviations",),
            "propagate+abbreviations": ("propagate", "abbreviations")}
# (min_ratio, skip_short_forms) of bioprune.postprocess.build_gazetteer (min_count 2 lost on dev at every ratio)
GAZETTEER_GRID = tuple((ratio, skip) for skip in (False, True) for ratio in (0.3, 0.5, 0.7, 0.9))
GENES_RATIOS = (0.5, 0.7, 0.9)  # min_ratio of a gene name in the --genes-from corpora
# min_ratio of a MeSH substance name as a chemical in the training files and --genes-from corpora
SUBSTANCE_RATIOS = (0.3, 0.5)
SUBSTANCE_MIN_CHARS = 7  # shorter MeSH terms are mostly symbols and short forms (a probe on dev: 5 gained less)
# least score (the model's confidence, a probability) of an unlinked entity kept: 0 keeps all, 1.01 none
UNLINKED_GRID = (0.0, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.01)
DECODINGS = {"argmax": ARGMAX, **{f"viterbi, O bias {b:g}": Decoding(viterbi=True, outside_log_bias=b)
                                  for b in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)}}


@dataclass(frozen=True)
class Variant:
    """One scored setting of the passes: which, and how their name lists are built."""

    passes: tuple[str, ...]
    gazetteer: tuple[float, bool] | None = None  # (min_ratio, skip_short_forms) of the gazetteer's names
    substances_ratio: float | None = None  # MeSH substance names added to the gazetteer at this min_ratio
    genes_ratio: float | None = None  # min_ratio of the gene names
    brackets: bool = False  # the brackets pass first

    @property
    def name(self) -> str:
        if self.gazetteer is None:
            name = next(n for n, p in VARIANTS.items() if p == tuple(x for x in self.passes if x != "genes"))
        else:
            ratio, skip = self.gazetteer
            substances = "" if self.substances_ratio is None else f", MeSH substances {self.substances_ratio:g}"
            name = f"gazetteer (ratio {ratio:g}{', no short forms' if skip else ''}{substances}) + abbreviations"
        genes = "" if self.genes_ratio is None else f" + genes (ratio {self.genes_ratio:g})"
        return ("brackets + " if self.brackets else "") + name + genes

    def build(self, training_files: tuple[str, ...], genes_from: tuple[str, ...],
              decoding: Decoding = ARGMAX, substances_from: str | None = None) -> tuple[Postprocess, dict]:
        """The record, its name lists built from a model's training files (the gazetteer's names, the
        chemicals no gene name may be), the gene corpora and MeSH (``substances_from``, the data
        folder); and how each list was built."""
        training = _training_mentions(tuple(training_files))
        provenance, gazetteer, genes = {}, None, frozenset()
        if self.gazetteer is not None:
            ratio, skip = self.gazetteer
            gazetteer = _gazetteer(tuple(training_files), ratio, skip)
            provenance["gazetteer"] = {"min_ratio": ratio, "skip_short_forms": skip,
                                       "built_from": [Path(f).name for f in training_files]}
            if self.substances_ratio is not None:
                names = _substances(substances_from, tuple(training_files), tuple(genes_from), self.substances_ratio)
                gazetteer = Gazetteer({**dict.fromkeys(names, "Chemical"), **gazetteer.names})  # training's types win
                provenance["gazetteer"]["mesh_substances"] = {
                    "min_ratio": self.substances_ratio, "min_chars": SUBSTANCE_MIN_CHARS, "n_names": len(names),
                    "ratio_in": [Path(f).name for f in (*training_files, *genes_from)]}
        if self.genes_ratio is not None:
            genes = gene_names(genes_from, self.genes_ratio, {t[s:e] for t, ms in training for s, e, ty in ms
                                                               if ty == "Chemical"})
            provenance["genes"] = {"min_ratio": self.genes_ratio, "built_from": [Path(f).name for f in genes_from],
                                   "never_chemical_in": [Path(f).name for f in training_files]}
        return Postprocess(("brackets",) * self.brackets + self.passes, decoding, gazetteer, genes), provenance


def gene_names(files: tuple[str, ...], min_ratio: float, chemicals: set[str]) -> frozenset[str]:
    """The names the corpora of ``files`` (registered in training/corpora.py) annotate as another
    entity (gene, protein, variant, enzyme) and never otherwise, on at least ``min_ratio`` of their
    whole-word occurrences (:func:`bioprune.postprocess.build_gazetteer`'s rule), less ``chemicals``."""
    return _other_entity_names(tuple(files), min_ratio) - chemicals


@lru_cache(maxsize=None)
def _gazetteer(files: tuple[str, ...], ratio: float, skip_short_forms: bool) -> Gazetteer:
    """The gazetteer of ``files`` at one setting, built once (a setting and its genes variants share it)."""
    return Gazetteer(build_gazetteer(_training_mentions(files), ratio, skip_short_forms=skip_short_forms))


@lru_cache(maxsize=None)
def _substances(data: str, training_files: tuple[str, ...], corpora: tuple[str, ...], ratio: float) -> frozenset[str]:
    """MeSH substance names (training/build_linker_index.py's :func:`substance_names`) that the
    training files and ``corpora`` tag as chemicals on at least ``ratio`` of their occurrences."""
    texts = _training_mentions(training_files) + _corpus_mentions(corpora)
    return tagged_as(substance_names(Path(data), SUBSTANCE_MIN_CHARS), texts, "Chemical", ratio)


@lru_cache(maxsize=None)
def _other_entity_names(files: tuple[str, ...], min_ratio: float) -> frozenset[str]:
    return frozenset(n for n, t in build_gazetteer(_corpus_mentions(files), min_ratio).items() if t == OTHER_ENTITY)


@lru_cache(maxsize=None)
def _corpus_mentions(files: tuple[str, ...]) -> list[tuple[str, list]]:
    """(text, mapped ``(start, end, target)`` spans) of every document of the registered corpora ``files``, read once."""
    return [(d.text, mapped_spans(d, corpus_for_file(f))) for f in files for d in read_pubtator(f)]


def variants(args: "ChooseArgs") -> list[Variant]:
    """Every setting scored: the pass sets, the gazetteer grid (with ``--gazetteer-from``; each
    setting also with MeSH substance names at each of :data:`SUBSTANCE_RATIOS` with
    ``--substances-from``), each of those followed by the genes pass at each ratio (with
    ``--genes-from``), and all of them again with the brackets pass first."""
    base = [Variant(p) for p in VARIANTS.values()]
    base += [Variant(("gazetteer", "abbreviations"), g, s) for g in (GAZETTEER_GRID if args.gazetteer_from else ())
             for s in (None, *(SUBSTANCE_RATIOS if args.substances_from else ()))]
    grid = base + [replace(v, passes=(*v.passes, "genes"), genes_ratio=r)
                   for r in (GENES_RATIOS if args.genes_from else ()) for v in base]
    return grid + [replace(v, brackets=True) for v in grid]


@dataclass(frozen=True)
class ChooseArgs:
    model: str  # a model folder that never saw --gold (the train-only run)
    gold: str  # the development set (PubTator)
    output: str = "results/decoding_dev.json"
    threads: int = 2
    gazetteer_from: tuple[str, ...] = field(default=(), metadata={
        "help": "the scored model's training files (PubTator): also score the gazetteer pass built from them"})
    ship_gazetteer_from: tuple[str, ...] = field(default=(), metadata={
        "help": "the shipped model's training files: a chosen gazetteer's names (default --gazetteer-from)"})
    off_domain: str | None = field(default=None, metadata={
        "help": "a corpus of other guidelines the model never trained on: choose by the mean of its F1 and dev's"})
    genes_from: tuple[str, ...] = field(default=(), metadata={
        "help": "corpora with a gene type (training/corpora.py): also score the genes pass built from them"})
    substances_from: str | None = field(default=None, metadata={
        "help": "the data folder (vocab/ holds MeSH 2024): also score the gazetteer with MeSH substance names"})
    linker_index: str | None = field(default=None, metadata={
        "help": "a linker index built without --gold: also choose which unlinked entities to keep"})


@lru_cache(maxsize=None)
def _training_mentions(files: tuple[str, ...]) -> list[tuple[str, list[tuple[int, int, str]]]]:
    return [(d.text, [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES])
            for f in files for d in read_pubtator(f)]


def main(args: ChooseArgs) -> dict:
    torch.set_num_threads(args.threads)
    engine = PruningEngine.from_pretrained(args.model, config=DENSE, postprocess=Postprocess())
    docs = read_pubtator(args.gold)
    gold = gold_spans(docs)
    grid = {v.name: v for v in variants(args)}
    scored = {name: v.build(args.gazetteer_from, args.genes_from, substances_from=args.substances_from)[0]
              for name, v in grid.items()}

    dev_score = lambda pred: mention_scores(span_keys(gold), span_keys(pred))  # noqa: E731
    outputs = _model_outputs(engine, docs)
    decodings = _score_grid(outputs, scored, dev_score)
    off = None
    if args.off_domain:
        off, off_outputs, off_score = _off_domain(args, engine)
        off["scores"] = _score_grid(off_outputs, scored, off_score)

    def merit(dev: dict, elsewhere: dict | None) -> float:
        return dev["micro"]["f1"] if elsewhere is None else (dev["micro"]["f1"] + elsewhere["micro"]["f1"]) / 2

    best_decoding, best = max(((dn, n) for dn, vs in decodings.items() for n in vs), key=lambda k: merit(
        decodings[k[0]][k[1]], off["scores"][k[0]][k[1]] if off else None))
    shipped, provenance = grid[best].build(args.ship_gazetteer_from or args.gazetteer_from, args.genes_from,
                                           DECODINGS[best_decoding], args.substances_from)
    result = {"args": asdict(args), "command": command_line("-m training.choose_postprocess"),
              "n_documents": len(docs), "variants": decodings["argmax"], "decodings": decodings,
              **({"off_domain": off} if off else {}), "best": best, "best_decoding": best_decoding}
    if args.linker_index:
        linker, chosen = Linker.load(args.linker_index), replace(scored[best], decoding=DECODINGS[best_decoding])
        unlinked = {"dev": _unlinked_grid(linker, outputs, chosen, dev_score)}
        if off:
            unlinked["off_domain"] = _unlinked_grid(linker, off_outputs, chosen, off_score)
        pair = max(unlinked["dev"], key=lambda k: merit(unlinked["dev"][k], unlinked.get("off_domain", {}).get(k)))
        result["unlinked"] = {**unlinked, "best": pair}
        shipped = replace(shipped, unlinked_min_score=dict(zip(ENTITY_TYPES, map(float, pair.split()))))
    result["choice"] = shipped.settings(provenance)
    write_json_atomic(args.output, result)
    for decoding_name, scores in decodings.items():
        name, s = max(scores.items(), key=lambda kv: kv[1]["micro"]["f1"])
        print(f"{decoding_name:22s} best on dev alone: {name}: F1 {s['micro']['f1']:.4f}")
    print(f"best on dev: {best_decoding}, {best}: postprocess.json {json.dumps(result['choice'])[:300]}")
    return result


def _model_outputs(engine: PruningEngine, docs: list) -> list[tuple]:
    """(document, encoding, label probabilities (T, C)) of each document: the model run once."""
    encoded = engine.encode([d.text for d in docs])
    return [(d, enc, p) for d, enc, (p, _) in zip(docs, encoded, engine.run(encoded))]


def _decoded(outputs: list[tuple], decoding: Decoding) -> list[tuple[str, str, list]]:
    """(PMID, text, entities before the passes) of each document under ``decoding``."""
    return [(d.pmid, d.text, decode_entities(d.text, enc.offsets, enc.word_ids, p, decoding)) for d, enc, p in outputs]


def _score_grid(outputs: list[tuple], variants: dict, score) -> dict:
    """``score(predicted spans by PMID)`` of every decoding x variant (each decoding run once)."""
    grid = {}
    for decoding_name, decoding in DECODINGS.items():
        decoded = _decoded(outputs, decoding)
        grid[decoding_name] = {name: score({pmid: [(e.start, e.end, e.label) for e in variant.apply(text, ents)]
                                            for pmid, text, ents in decoded}) for name, variant in variants.items()}
    return grid


def _unlinked_grid(linker: Linker, outputs: list[tuple], chosen: Postprocess, score) -> dict:
    """``score`` of ``chosen``'s entities, linked (gene products dropped), for each pair of
    :data:`UNLINKED_GRID` thresholds (keys "Chemical Disease", e.g. "0.99 0.995")."""
    linked = {pmid: linker.linked_entities(text, chosen.apply(text, ents))
              for pmid, text, ents in _decoded(outputs, chosen.decoding)}
    grid = {}
    for pair in itertools.product(UNLINKED_GRID, repeat=len(ENTITY_TYPES)):
        keep = Postprocess(unlinked_min_score=dict(zip(ENTITY_TYPES, pair)))
        grid[" ".join(f"{t:g}" for t in pair)] = score(
            {pmid: [(e.start, e.end, e.label) for e in found if keep.keeps(e)] for pmid, found in linked.items()})
    return grid


def _off_domain(args: ChooseArgs, engine: PruningEngine) -> tuple[dict, list[tuple], object]:
    """``args.off_domain``'s documents that are not BC5CDR's: their description, model outputs, and
    the scorer of predicted spans on the types that corpus annotates (``training/evaluate_corpus.py``'s measure)."""
    corpus = corpus_for_file(args.off_domain)
    seen = {d.pmid for f in (*args.gazetteer_from, *args.ship_gazetteer_from, *args.genes_from, args.gold)
            for d in read_pubtator(f)}
    docs = [d for d in read_pubtator(args.off_domain) if d.pmid not in seen]
    types, gold, other = corpus_gold(docs, corpus)
    return ({"file": Path(args.off_domain).name, "n_documents": len(docs)}, _model_outputs(engine, docs),
            lambda pred: corpus_scores(gold, pred, other, types))


def check_args(args: ChooseArgs) -> str | None:
    """One line for options that parse but cannot work: a --substances-from folder without MeSH."""
    if args.substances_from is None:
        return None
    missing = [f for f in (MESH_TERMS, MESH_TREES) if not (Path(args.substances_from) / f).is_file()]
    return (f"--substances-from {args.substances_from}: no {' or '.join(missing)} there; "
            "give the shared data folder (its README says where MeSH 2024 comes from)") if missing else None


if __name__ == "__main__":
    main(parse_dataclass(ChooseArgs, __doc__, check=check_args))
