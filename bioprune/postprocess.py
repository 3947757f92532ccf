"""Document-level consistency of predicted mentions: one abstract names a thing the same way.

A token classifier labels each occurrence of a name on its own local context, so the same string
can be tagged in one sentence and missed in the next, and an abbreviation defined as
"long form (SF)" can be missed where it is used later. These passes repair that after
decoding, over character spans only:

* :func:`propagate_mentions`: every other whole-word occurrence of a predicted mention's exact
  text gets the same type, unless it overlaps a prediction already there (the classic
  document-level consistency pass of BC5CDR systems, e.g. TaggerOne, Leaman & Lu 2016);
* :func:`abbreviations`: "long form (SF)" pairs by the Schwartz & Hearst (2003) rule (the short
  form's characters appear in order in the long form, the first one starting a word), so that a
  short form whose long form is a predicted mention is tagged with its type;
* :class:`Gazetteer`: names the training annotations tag reliably (:func:`build_gazetteer`), and
  vocabulary names the annotated corpora do not leave untagged (:func:`tagged_as`), are tagged
  where the model tagged nothing (the dictionary half of tmChem, Leaman et al. 2015);
* :func:`drop_gene_names`: a predicted Chemical whose text other corpora annotate only as a gene,
  protein or variant is dropped (BC5CDR has no gene type, so the model calls "PPARA" a chemical);
* :func:`repair_brackets`: a mention with unbalanced brackets ("ZnSO(", a lone "[") is closed or
  opened where the text balances it, as chemical taggers' post-processing does (tmChem).

:class:`Postprocess` is the one record of what runs after the forward (a model folder's ``postprocess.json``).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from bioprune.labels import ARGMAX, Decoding
from bioprune.types import ENTITY_TYPES, Entity

_SHORT_FORM = re.compile(r"\(([^()\s]{2,10})\)")  # "(SF)": 2-10 characters, no spaces


def _is_word_boundary(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not before.isalnum() and not after.isalnum()


def _add_free(text: str, entities: Sequence[Entity], found: Iterable[Entity]) -> list[Entity]:
    """``entities`` plus each ``found`` one that is a whole word and overlaps none kept before it,
    sorted by start."""
    out = list(entities)
    for e in found:
        if _is_word_boundary(text, e.start, e.end) and not any(e.start < o.end and o.start < e.end for o in out):
            out.append(e)
    return sorted(out, key=lambda e: (e.start, e.end))


def propagate_mentions(text: str, entities: Sequence[Entity], min_chars: int = 3) -> list[Entity]:
    """``entities`` plus every other whole-word occurrence of their texts (at least ``min_chars``).

    A string predicted with two types is left alone (ambiguous). Added mentions carry the score of
    the mention they copy. Sorted by start.
    """
    types: dict[str, set[str]] = {}
    score: dict[str, float] = {}
    for e in entities:
        types.setdefault(e.text, set()).add(e.label)
        score[e.text] = max(score.get(e.text, 0.0), e.score)
    return _add_free(text, entities, (
        Entity(start=m.start(), end=m.end(), label=next(iter(labels)), text=name, score=score[name])
        for name, labels in types.items() if len(labels) == 1 and len(name) >= min_chars
        for m in re.finditer(re.escape(name), text)))


def _long_form_start(text: str, open_paren: int, short: str) -> int | None:
    """Start of the long form ending just before ``open_paren`` (Schwartz & Hearst), or None."""
    window_start = max(0, open_paren - 8 * len(short) - 20)
    candidate = text[window_start:open_paren].rstrip()
    s, c = len(short) - 1, len(candidate) - 1
    while s >= 0:
        ch = short[s].lower()
        if not ch.isalnum():
            s -= 1
            continue
        while c >= 0 and (candidate[c].lower() != ch or (s == 0 and c > 0 and candidate[c - 1].isalnum())):
            c -= 1
        if c < 0:
            return None
        s -= 1
        c -= 1
    return window_start + c + 1


def abbreviations(text: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((long_start, long_end), (short_start, short_end))`` for each "long form (SF)" in ``text``."""
    pairs = []
    for m in _SHORT_FORM.finditer(text):
        short = m.group(1)
        if not any(ch.isalpha() for ch in short) or not short[0].isalnum():
            continue
        start = _long_form_start(text, m.start(), short)
        if start is None:
            continue
        end = len(text[:m.start()].rstrip())
        if end - start > len(short):
            pairs.append(((start, end), (m.start(1), m.end(1))))
    return pairs


def expand_abbreviations(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """Short forms whose long form is exactly a predicted mention get its type, everywhere in ``text``."""
    by_span = {(e.start, e.end): e for e in entities}
    pairs = [(by_span[long_span], text[s:e]) for long_span, (s, e) in abbreviations(text) if long_span in by_span]
    return _add_free(text, entities, (
        Entity(start=m.start(), end=m.end(), label=source.label, text=short, score=source.score)
        for source, short in pairs for m in re.finditer(re.escape(short), text)))


def build_gazetteer(texts_and_mentions: Iterable[tuple[str, Sequence[tuple[int, int, str]]]],
                    min_ratio: float, min_count: int = 1, min_chars: int = 3,
                    skip_short_forms: bool = False) -> dict[str, str]:
    """Name -> type for the names that annotated training text tags reliably.

    A name (a mention's exact text) qualifies when every one of its annotations has the same type,
    it is annotated at least ``min_count`` times and at least ``min_ratio`` of its whole-word
    occurrences in those texts are annotated: "cocaine" (tagged wherever it appears) qualifies,
    "lead" or "ACE" (tagged in a few abstracts, plain words or genes in others) do not. The
    dictionary half of dictionary-plus-tagger systems such as tmChem (Leaman et al. 2015).
    ``skip_short_forms`` leaves out every name that some training text defines as an abbreviation
    ("sodium nitroprusside (SNP)"): what it stands for is the document's own (SNP is a
    polymorphism elsewhere), and :func:`expand_abbreviations` tags it where it is defined.
    """
    texts, types, short_forms = [], {}, set()
    for text, mentions in texts_and_mentions:
        texts.append(text)
        for start, end, label in mentions:
            types.setdefault(text[start:end], []).append(label)
        if skip_short_forms:
            short_forms.update(text[s:e] for _, (s, e) in abbreviations(text))
    names = {n: ls[0] for n, ls in types.items()
             if len(n) >= min_chars and len(set(ls)) == 1 and len(ls) >= min_count and n not in short_forms}
    occurrences = dict.fromkeys(names, 0)
    by_prefix = _by_prefix(names, min_chars)
    for text in texts:
        for _, name in _matches(text, by_prefix, min_chars, overlapping=True):
            occurrences[name] += 1
    return {n: t for n, t in names.items() if len(types[n]) >= min_ratio * max(occurrences[n], 1)}


def tagged_as(names: Iterable[str], texts_and_mentions: Iterable[tuple[str, Sequence[tuple[int, int, str]]]],
              label: str, min_ratio: float, min_chars: int = 3) -> frozenset[str]:
    """The ``names`` (from a vocabulary, not from the texts) that the annotated texts tag as
    ``label`` on at least ``min_ratio`` of their whole-word occurrences; a name the texts never
    contain passes (the vocabulary is its evidence). "Thiopental" passes; "element" and "mineral",
    MeSH chemicals that the corpora leave untagged, do not."""
    by_prefix = _by_prefix(names, min_chars)
    seen, tagged = Counter(), Counter()
    for text, mentions in texts_and_mentions:
        spans = {(start, end) for start, end, t in mentions if t == label}
        for start, name in _matches(text, by_prefix, min_chars, overlapping=True):
            seen[name] += 1
            tagged[name] += (start, start + len(name)) in spans
    return frozenset(n for groups in by_prefix.values() for _, group in groups for n in group
                     if tagged[n] >= min_ratio * seen[n])


# Where a gazetteer name may start: a character that is not a space and does not continue a word
# (names match whole words; some start with punctuation: "(+)-catechin", "[3H]dopamine"). [^\W_] is
# a letter or digit as str.isalnum() has it.
_NAME_START = re.compile(r"(?<![^\W_])\S")

# names by their first ``min_chars`` characters, then by length, longest first: ((length, names), ...)
NameIndex = dict[str, tuple[tuple[int, frozenset[str]], ...]]


def _by_prefix(names: Iterable[str], min_chars: int) -> NameIndex:
    """Names grouped by their first ``min_chars`` characters and, within a group, by length, longest
    first: at each start :func:`_matches` tries one slice per length, not one comparison per name
    (a common prefix holds hundreds of names)."""
    groups: dict[str, dict[int, set[str]]] = {}
    for name in names:
        groups.setdefault(name[:min_chars], {}).setdefault(len(name), set()).add(name)
    return {prefix: tuple((length, frozenset(group)) for length, group in sorted(by_length.items(), reverse=True))
            for prefix, by_length in groups.items()}


def _matches(text: str, by_prefix: NameIndex, min_chars: int, overlapping: bool = False) -> Iterator[tuple[int, str]]:
    """``(start, name)`` of whole-word occurrences in ``text``, longest name first at each start;
    left to right, skipping what a match covers unless ``overlapping``."""
    covered_until, n = 0, len(text)
    for m in _NAME_START.finditer(text):
        i = m.start()
        if i < covered_until:
            continue
        for length, group in by_prefix.get(text[i:i + min_chars], ()):
            end = i + length
            if (end >= n or not text[end].isalnum()) and text[i:end] in group:
                yield i, text[i:end]
                if not overlapping:
                    covered_until = end
                    break


@dataclass(frozen=True)
class Gazetteer:
    """Names with their types (:func:`build_gazetteer`), indexed once for matching; equal when the names are."""

    names: Mapping[str, str]  # name -> "Chemical" | "Disease"
    min_chars: int = 3
    _by_prefix: NameIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_prefix", _by_prefix(self.names, self.min_chars))

    def tag(self, text: str, entities: Sequence[Entity]) -> list[Entity]:
        """``entities`` plus the whole-word occurrences of the names that overlap none of them
        (longest name first), typed by the gazetteer, with score 1. Sorted by start."""
        return _add_free(text, entities, (  # _matches gives whole words that do not overlap each other
            Entity(start=start, end=start + len(name), label=self.names[name], text=name, score=1.0)
            for start, name in _matches(text, self._by_prefix, self.min_chars)))


# sequence-variant notation: protein changes (N372H, p.Arg117His, Arg117His), dbSNP ids (rs8099917), cDNA
# and genomic changes (c.1521A>G); two or more position digits, so that S1P or C6S stay chemicals
VARIANT = re.compile(r"\b(?:[ACDEFGHIKLMNPQRSTVWY]\d{2,}[ACDEFGHIKLMNPQRSTVWY*]|(?:p\.)?[A-Z][a-z]{2}\d+[A-Z][a-z]{2}"
                     r"|rs\d+|[cg]\.[-*]?\d+[ACGT]>[ACGT])(?![\w>])")
_AMINO_ACID = ("(?i:alanine|arginine|asparagine|aspartic acid|aspartate|cysteine|glutamine|glutamic acid|glutamate|glycine|"
               "histidine|isoleucine|leucine|lysine|methionine|phenylalanine|proline|serine|threonine|tryptophan|"
               "tyrosine|valine)|Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val")
# an amino acid at a sequence position ("Arg555", "arginine 555-to-tryptophan"; not "arginine 10 mg/kg")
AT_POSITION = re.compile(rf"\b(?:{_AMINO_ACID})(?:\d+\b|[\s-]\d+[\s-](?:to[\s-])?(?:{_AMINO_ACID})\b)")


def drop_gene_names(text: str, entities: Sequence[Entity], genes: frozenset[str]) -> list[Entity]:
    """``entities`` without the Chemical ones whose exact text is in ``genes``, that hold a sequence
    variant (:data:`VARIANT`: "BRCA2 N372H") or lie inside one (:data:`AT_POSITION`: "tryptophan" in
    "arginine 555-to-tryptophan"). ``genes``: names that corpora with a gene type (DrugProt, ChemDisGene,
    NLM-Chem's enzymes) annotate as genes, proteins or variants and never as chemicals, and that the model's
    training data never tags as a chemical (``training/choose_postprocess.py --genes-from``). No BC5CDR
    chemical (train, dev or test) is a variant or inside one; BioRED's variants are, and the model calls them chemicals."""
    holds, inside = [m.span() for m in VARIANT.finditer(text)], [m.span() for m in AT_POSITION.finditer(text)]
    return [e for e in entities if not (e.label == "Chemical" and (e.text in genes or any(  # (start, end) spans
        e.start <= a and b <= e.end for a, b in holds) or any(a <= e.start and e.end <= b for a, b in holds + inside)))]


_OPENERS, _CLOSERS = "([{", ")]}"
_RACEMATE = re.compile(r"(?<![\w,])[DdLl],$")  # the "d," of "d,l-sotalol", just before a mention "l-..."


def _unmatched(s: str) -> tuple[list[int], list[int]]:
    """Offsets in ``s`` of the brackets whose partner is not in ``s``: (openers, closers)."""
    openers, closers = [], []
    for i, ch in enumerate(s):
        if ch in _OPENERS:
            openers.append(i)
        elif openers and _OPENERS.index(s[openers[-1]]) == _CLOSERS.find(ch):
            openers.pop()
        elif ch in _CLOSERS:
            closers.append(i)
    return openers, closers


def _partner(text: str, at: int, step: int, limit: int = 60) -> int | None:
    """The offset of the bracket that balances the one at ``at``, reading ``step`` (1: right, -1:
    left) at most ``limit`` characters and not past a line end; None when there is none."""
    depth, i = 0, at
    while 0 <= i < len(text) and abs(i - at) <= limit and text[i] != "\n":
        depth += (text[i] in _OPENERS) - (text[i] in _CLOSERS)
        if depth == 0:
            return i
        i += step
    return None


def _repaired(text: str, e: Entity) -> Entity:
    """``e`` with balanced brackets: an unclosed one closed where the text closes it, the word run on
    ("ZnSO(" -> "ZnSO(4)", "N-(2-hydroxypropyl" -> "N-(2-hydroxypropyl)methacrylamide"); an unopened
    one opened where the text opens it; one the text never balances cut off the edge it dangles on
    ("gastrointestinal (" -> "gastrointestinal"). A racemate prefix joins ("d," + "l-sotalol")."""
    start, end = e.start, e.end
    openers, closers = _unmatched(text[start:end])
    if openers and (close := _partner(text, start + openers[0], 1)) is not None:
        end = close + 1
        while end < len(text) and (text[end].isalnum() or text[end] == "-"):
            end += 1
    elif openers and not text[start + openers[0] + 1:end].strip():
        end = start + len(text[start:start + openers[0]].rstrip())
    if closers and (open_ := _partner(text, start + closers[-1], -1)) is not None:
        start = open_
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "-"):
            start -= 1
    elif closers and not text[start:start + closers[-1]].strip():
        start = end - len(text[start + closers[-1] + 1:end].lstrip())
    if _RACEMATE.search(text, max(0, start - 2), start) and re.match(r"[DdLl]-", text[start:end]):
        start -= 2
    return e if (start, end) == (e.start, e.end) or start >= end else replace(e, start=start, end=end, text=text[start:end])


def repair_brackets(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """``entities`` with unbalanced brackets repaired (:func:`_repaired`): BC5CDR's gold holds 1
    such mention in 28,785, the shipped tagger 15 on its test set ("ZnSO(", a lone "["). A repaired mention
    absorbs those of its type it now overlaps or touches ("[" + "omega-I-131]heptadecanoic acid");
    one that would overlap the other type stays as it was. Sorted by start."""
    fixed = []
    for e in entities:
        r = _repaired(text, e)
        clash = any(o.label != e.label and o.start < r.end and r.start < o.end for o in entities)
        fixed.append((e, False) if r is e or clash else (r, True))
    out: list[tuple[Entity, bool]] = []
    for e, changed in sorted(fixed, key=lambda x: (x[0].start, x[0].end)):
        if out and out[-1][0].label == e.label and e.start <= out[-1][0].end and (changed or out[-1][1]):
            prev = out.pop()[0]
            end = max(prev.end, e.end)
            e, changed = replace(prev, end=end, text=text[prev.start:end], score=max(prev.score, e.score)), True
        out.append((e, changed))
    return [e for e, _ in out]


PASSES = ("brackets", "propagate", "abbreviations", "gazetteer", "genes")  # the document-level passes, by name

# beside a model, its dev-chosen output settings: {"passes": [...], "decoding": {...}, "gazetteer": {"names": {...}}}
POSTPROCESS_FILE = "postprocess.json"


@dataclass(frozen=True)
class Postprocess:
    """How a model's label probabilities become its entities, after the forward: the tag decoding
    (:class:`~bioprune.labels.Decoding`), then the named document-level passes in order (any of
    :data:`PASSES`): "gazetteer" tags this record's :class:`Gazetteer`, "genes" drops the chemicals
    named in its ``genes``. When linking runs, an entity the linker leaves without an ID is kept only
    if its score reaches its type's ``unlinked_min_score`` (:meth:`keeps`): on the development set,
    unlinked predictions are mostly wrong unless the model is sure of them.

    One record, chosen on the development set (``training/choose_postprocess.py``) and kept beside
    the model as ``postprocess.json`` (:meth:`load`, :meth:`settings`), so that the decoding, the
    passes and the names they need always travel together. The default does nothing: per-word
    argmax, no passes.
    """

    passes: tuple[str, ...] = ()
    decoding: Decoding = ARGMAX
    gazetteer: Gazetteer | None = None
    genes: frozenset[str] = frozenset()  # the names the "genes" pass drops as chemicals
    unlinked_min_score: Mapping[str, float] = field(default_factory=dict)  # type -> least score of an unlinked entity kept

    def __post_init__(self):
        object.__setattr__(self, "passes", tuple(self.passes))
        object.__setattr__(self, "genes", frozenset(self.genes))
        if unknown := [p for p in self.passes if p not in PASSES]:
            raise ValueError(f"unknown postprocess pass(es) {unknown}; known: {', '.join(PASSES)}")
        if "gazetteer" in self.passes and self.gazetteer is None:
            raise ValueError(f'the "gazetteer" pass needs a gazetteer ({POSTPROCESS_FILE}\'s "gazetteer" names)')
        if "genes" in self.passes and not self.genes:
            raise ValueError(f'the "genes" pass needs gene names ({POSTPROCESS_FILE}\'s "genes" names)')
        scores = self.unlinked_min_score
        if not isinstance(scores, Mapping) or not all(t in ENTITY_TYPES and isinstance(v, (int, float))
                                                      and not isinstance(v, bool) for t, v in scores.items()):
            raise ValueError(f'"unlinked_min_score" must be an object {{type: number}} with types from '
                             f"{', '.join(ENTITY_TYPES)}; got {scores!r}")
        object.__setattr__(self, "unlinked_min_score", {t: float(v) for t, v in scores.items()})

    def apply(self, text: str, entities: Sequence[Entity]) -> list[Entity]:
        """``entities`` (decoded from ``text``) after each pass, in order."""
        run = {"brackets": repair_brackets, "propagate": propagate_mentions, "abbreviations": expand_abbreviations,
               "gazetteer": self.gazetteer.tag if self.gazetteer is not None else None,
               "genes": lambda text, found: drop_gene_names(text, found, self.genes)}
        entities = list(entities)
        for name in self.passes:
            entities = run[name](text, entities)
        return entities

    def keeps(self, entity: Entity) -> bool:
        """Whether a linked ``entity`` stays: it has IDs, or the model is sure enough (``unlinked_min_score``)."""
        return bool(entity.ids) or entity.score >= self.unlinked_min_score.get(entity.label, 0.0)

    @classmethod
    def load(cls, directory: str | Path) -> "Postprocess":
        """The record a model folder's ``postprocess.json`` holds (the default if it has none);
        ValueError naming the file and what is expected for a malformed one."""
        path = Path(directory) / POSTPROCESS_FILE
        given = json.loads(path.read_text()) if path.is_file() else {}
        decoding = given.get("decoding", {})
        keys = [f.name for f in fields(Decoding)]
        if not isinstance(decoding, dict) or not set(decoding) <= set(keys):
            raise ValueError(f"{path}: \"decoding\" must be an object with keys {', '.join(keys)}; "
                             f"got {json.dumps(decoding)}")
        gazetteer = given.get("gazetteer")
        names = gazetteer.get("names") if isinstance(gazetteer, dict) else None
        if gazetteer is not None and (not isinstance(names, dict) or not all(t in ENTITY_TYPES for t in names.values())):
            raise ValueError(f"{path}: \"gazetteer\" must be an object with "
                             f"\"names\": {{name: one of {', '.join(ENTITY_TYPES)}}}")
        genes = given.get("genes", {}).get("names", []) if isinstance(given.get("genes", {}), dict) else None
        if not isinstance(genes, list) or not all(isinstance(n, str) for n in genes):
            raise ValueError(f"{path}: \"genes\" must be an object with \"names\": [name, ...]")
        try:
            return cls(passes=tuple(given.get("passes", ())),
                       decoding=Decoding(viterbi=bool(decoding.get("viterbi", False)),
                                         outside_log_bias=float(decoding.get("outside_log_bias", 0.0))),
                       gazetteer=None if gazetteer is None else Gazetteer(names), genes=frozenset(genes),
                       unlinked_min_score=given.get("unlinked_min_score", {}))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def settings(self, provenance: Mapping[str, Mapping] | None = None) -> dict:
        """``postprocess.json``'s content (the inverse of :meth:`load`); ``provenance["gazetteer"]``
        and ``provenance["genes"]`` (how and from what each name list was built) go beside its names."""
        provenance = provenance or {}
        out = {"passes": list(self.passes), **({"decoding": asdict(self.decoding)} if self.decoding != ARGMAX else {})}
        if self.gazetteer is not None:
            out["gazetteer"] = {**provenance.get("gazetteer", {}), "names": dict(sorted(self.gazetteer.names.items()))}
        if self.genes:
            out["genes"] = {**provenance.get("genes", {}), "names": sorted(self.genes)}
        if self.unlinked_min_score:
            out["unlinked_min_score"] = dict(self.unlinked_min_score)
        return out
