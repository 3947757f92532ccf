"""The training corpora: how each one's mention types map to ours, and what its annotation allows.

Corpora beyond BC5CDR follow other guidelines and annotate other things. Each mention type maps to
one of five targets:

- ``Chemical`` / ``Disease``: our types; the mention is gold for that type.
- ``OTHER_ENTITY``: an entity of another kind (gene, variant, NLM-Chem's enzyme names): explicit
  evidence that its tokens are not a Chemical (nor a Disease, unless the run allows it).
- ``OUTSIDE``: a mention that says nothing about our types (species, cell lines): its tokens are
  treated like any text outside the corpus's mentions.
- ``MASKED``: no supervision at all on its tokens (NLM-Chem's "compound 7" references).

A corpus *annotates* the types its mapping sends something to, and says nothing about the others:
outside its mentions a token may be O or any tag of a type it does not annotate. That is the
partial-annotation loss of training/multicorpus.py: per token the set of BIO labels consistent with
the corpus, loss = -log sum of their probabilities. A fully annotated corpus (BC5CDR) allows the
gold tag only, so its loss is plain cross-entropy.

The registry below names each corpus by its files (as in ``../shared/data``, README there), says
whether its mentions are curated (gold) or machine output (silver), and gives its default loss
weight. Weights are starting points, not tuned: silver counts half a gold token.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bioprune.errors import InputError
from bioprune.io.compression import open_binary
from bioprune.labels import LABEL_TO_ID, LABELS, Span, spans_to_tags
from bioprune.types import ENTITY_TYPES

OTHER_ENTITY = "other_entity"
OUTSIDE = "outside"
MASKED = "masked"
TARGETS = (*ENTITY_TYPES, OTHER_ENTITY, OUTSIDE, MASKED)
REGISTRY_FILE = "training/corpora.py"  # where a corpus or a type mapping is added (named in error fixes)

ALL_LABELS = (1 << len(LABELS)) - 1  # bitmask with every label allowed: the token teaches nothing


@dataclass(frozen=True)
class Corpus:
    """One training corpus: its files, its type mapping and how much its tokens count."""

    name: str
    files: tuple[str, ...]  # file names (a ``.gz`` of one is accepted too)
    types: Mapping[str, str]  # mention type in the files -> one of TARGETS
    gold: bool  # curated mentions (True) or machine annotations (silver)
    default_loss_weight: float  # multiplies its tokens' loss

    @property
    def annotates(self) -> frozenset[str]:
        """Our types the corpus annotates: outside its mentions, text is not of these types."""
        return frozenset(t for t in self.types.values() if t in ENTITY_TYPES)


_PUBTATOR_CENTRAL = {"Chemical": "Chemical", "Disease": "Disease", "Gene": OTHER_ENTITY,
                     "ProteinMutation": OTHER_ENTITY, "DNAMutation": OTHER_ENTITY, "SNP": OTHER_ENTITY,
                     "Species": OUTSIDE, "CellLine": OUTSIDE}

CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("bc5cdr", ("CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt"),
           {"Chemical": "Chemical", "Disease": "Disease"}, gold=True, default_loss_weight=1.0),
    Corpus("biored", ("BioRED_Train.PubTator", "BioRED_Dev.PubTator"),
           {"ChemicalEntity": "Chemical", "DiseaseOrPhenotypicFeature": "Disease",
            "GeneOrGeneProduct": OTHER_ENTITY, "SequenceVariant": OTHER_ENTITY,
            "OrganismTaxon": OUTSIDE, "CellLine": OUTSIDE}, gold=True, default_loss_weight=1.0),
    # the curated set's abstracts were curated for relations; its mentions are PubTator Central's, so silver
    Corpus("chemdisgene_curated", ("ChemDisGene_curated.PubTator",), _PUBTATOR_CENTRAL, gold=False,
           default_loss_weight=0.5),
    Corpus("chemdisgene_silver", ("ChemDisGene_silver_A.PubTator", "ChemDisGene_silver_B.PubTator"),
           _PUBTATOR_CENTRAL, gold=False, default_loss_weight=0.5),
    # OTHER: enzyme and protein names built on chemical words ("lactate dehydrogenase"): not chemicals.
    # NonStandardRef: "compound 7", "1a": chemicals named by number, which BC5CDR would not tag: no say.
    Corpus("nlmchem", ("NLMChem_passages.PubTator",),
           {"Chemical": "Chemical", "OTHER": OTHER_ENTITY, "NonStandardRef": MASKED}, gold=True,
           default_loss_weight=1.0),
    Corpus("drugprot", ("DrugProt_chemicals.PubTator",), {"Chemical": "Chemical", "Gene": OTHER_ENTITY},
           gold=True, default_loss_weight=1.0),
)}


def corpus_for_file(path: str | Path, corpora: Mapping[str, Corpus] = CORPORA) -> Corpus:
    """The registered corpus a file belongs to, by its name; InputError naming the fix if none."""
    name = Path(path).name.removesuffix(".gz")
    for corpus in corpora.values():
        if name in corpus.files:
            return corpus
    known = ", ".join(f for c in corpora.values() for f in c.files)
    raise InputError(str(path), f"no corpus is registered for the file name {name!r} (known: {known}); "
                     f"fix: register it in {REGISTRY_FILE} (its type mapping, gold or silver, weight)")


def with_type_overrides(corpora: Mapping[str, Corpus],
                        overrides: Sequence[tuple[str, str, str]]) -> dict[str, Corpus]:
    """The registry with ``(corpus, mention type, target)`` mappings replaced or added; InputError
    (naming the ``--type-maps`` argument) for an unknown corpus or a target that names no type."""
    result = dict(corpora)
    for name, source_type, target in overrides:
        where = f"--type-maps {name}:{source_type}={target}"
        if name not in result:
            raise InputError(where, f"no corpus named {name!r}; fix: one of {', '.join(result)}")
        if target not in TARGETS:
            raise InputError(where, f"{target!r} names no type; fix: map to one of {', '.join(TARGETS)}")
        result[name] = replace(result[name], types={**result[name].types, source_type: target})
    return result


def check_types(path: str | Path, docs, corpus: Corpus) -> None:
    """InputError naming the file, the line and the fix for the first mention type ``corpus`` does
    not map, or a mapping whose target names no type; also when it maps nothing onto our types."""
    if not corpus.annotates:
        raise InputError(str(path), f"the mapping of corpus {corpus.name!r} names none of our types "
                         f"({', '.join(ENTITY_TYPES)}): it would teach nothing; fix: map its types in "
                         f"{REGISTRY_FILE} or with --type-maps")
    seen = {m.type for d in docs for m in d.mentions}
    for source_type in sorted(seen):
        target = corpus.types.get(source_type)
        if target in TARGETS:
            continue
        line = first_line_of_type(path, source_type)
        problem = (f"mention type {source_type!r} is not in the mapping of corpus {corpus.name!r}" if target is None
                   else f"corpus {corpus.name!r} maps {source_type!r} to {target!r}, which names no type")
        raise InputError(str(path), f"{problem}; fix: map it in {REGISTRY_FILE} or with "
                         f"--type-maps {corpus.name}:{source_type}=TARGET (TARGET one of {', '.join(TARGETS)})", line)


def first_line_of_type(path: str | Path, source_type: str) -> int | None:
    """The 1-based number of the first mention line of ``source_type`` in a PubTator file (for errors)."""
    with open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            cols = raw.decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
            if len(cols) >= 5 and cols[1].isdigit() and cols[4] == source_type:
                return line_no
    return None


def mapped_spans(doc, corpus: Corpus) -> list[Span]:
    """The document's mentions as ``(start, end, target)``; OUTSIDE mentions left out (they say
    nothing the corpus's own coverage does not)."""
    spans = [(m.start, m.end, corpus.types[m.type]) for m in doc.mentions]
    return [s for s in spans if s[2] != OUTSIDE]


def corpus_token_labels(doc, offsets: Sequence[tuple[int, int]], corpus: Corpus,
                        other_entity_allows_disease: bool) -> tuple[list[int], list[Span]]:
    """:func:`allowed_labels` for one document of ``corpus`` (the labeller training/multicorpus.py's
    ``build_examples`` takes)."""
    return allowed_labels(offsets, mapped_spans(doc, corpus), corpus.annotates, other_entity_allows_disease)


def label_bits(labels) -> int:
    """A set of BIO labels as a bitmask over LABELS (bit i: label i allowed)."""
    return sum(1 << LABEL_TO_ID[label] for label in set(labels))


def allowed_labels(offsets: Sequence[tuple[int, int]], spans: Sequence[Span], annotates: frozenset[str],
                   other_entity_allows_disease: bool = False) -> tuple[list[int], list[Span]]:
    """Per token, the bitmask of BIO labels consistent with a corpus's annotation; and the gold
    mentions BIO cannot hold.

    ``spans`` are ``(start, end, target)`` with target Chemical, Disease, OTHER_ENTITY or MASKED;
    ``annotates``: our types the corpus annotates. In order of precedence, a token
    - inside a gold mention (the longest wins, as in :func:`bioprune.labels.spans_to_tags`): its tag only;
    - inside a MASKED mention: every label;
    - inside an OTHER_ENTITY mention: O (and the Disease tags if ``other_entity_allows_disease`` and
      the corpus does not annotate diseases);
    - elsewhere: O and the tags of every type the corpus does not annotate.
    """
    tags, dropped = spans_to_tags(offsets, [s for s in spans if s[2] in ENTITY_TYPES])
    unannotated = [f"{p}-{t}" for t in ENTITY_TYPES if t not in annotates for p in ("B", "I")]
    outside = label_bits(["O", *unannotated])
    other = outside & label_bits(["O", "B-Disease", "I-Disease"] if other_entity_allows_disease else ["O"])
    bits = [outside] * len(offsets)
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    for target, value in ((OTHER_ENTITY, other), (MASKED, ALL_LABELS)):  # MASKED last: it wins
        for start, end, _ in (s for s in spans if s[2] == target):
            # tokens overlapping [start, end): from the first ending after start to the last starting before end
            for i in range(bisect_right(ends, start), bisect_left(starts, end)):
                if ends[i] > starts[i]:
                    bits[i] = value
    return [bit if tag == "O" else label_bits([tag]) for bit, tag in zip(bits, tags)], dropped
