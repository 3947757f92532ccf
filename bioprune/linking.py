"""Concept normalisation: a Chemical or Disease mention (with its document) to MeSH identifier(s).

The pipeline is the classic one of BioCreative V CDR systems, kept small and deterministic:

1. the document's abbreviation definitions ("long form (SF)", Schwartz & Hearst 2003, found by
   :func:`bioprune.postprocess.abbreviations`) replace short forms by their long forms first, as
   DNorm (Leaman et al. 2013) and tmChem (Leaman et al. 2015) do before normalising;
2. dictionary look-up: the exact string, then its lower case, then a normalised key (case,
   punctuation, plural, possessive, Greek letters), then the key's sorted bag of words ("diabetes
   mellitus, type 2" = "type 2 diabetes mellitus"), then the key without spaces
   ("tri-iodo-thyronine" = "triiodothyronine", "Ro15-1788" = "Ro 15-1788");
3. composite mentions ("breast and ovarian cancer", "hepatitis B and C") are split into parts,
   each part linked on its own, the IDs joined by ``|`` as in the BC5CDR gold;
4. otherwise the nearest name by cosine over character 3-gram TF-IDF vectors (the candidate
   generator of scispaCy's linker, Neumann et al. 2019), or the dictionary entry of the mention's
   head (its longest word suffix found), whichever scores higher, if above the type's threshold;
   else a near neighbour that is the mention with one long word misspelled by one letter
   ("amphothericin B", "apomophine"), which 3-gram cosines score under the threshold; else ``-``;
5. an entity still without an ID that is made wholly of dictionary names ("benzodiazepine
   lorazepam", "propofol-remifentanil") is those names, each its own entity (:func:`name_parts`):
   the model tags adjacent chemicals as one; tmChem's dictionary matching finds them apart.

A mention with no letter, or cut off after a prefix ("N-"), names nothing and gets no ID.

The names come from an index built by ``training/build_linker_index.py``: MeSH descriptor terms
(chemicals under tree D, diseases under C and F03), CTD MEDIC disease synonyms, and the
mention -> ID pairs of the training corpora, which also cover MeSH supplementary records (C-ids)
that the vocabularies lack. Pairs outrank vocabulary terms for the same name, because they carry
the corpus' own annotation guideline. The index is gzipped TSVs (no pickle) plus a JSON manifest:
the names with their weights, and the look-up tables computed from them, each a file of sorted
``key<TAB>ID`` lines that a process reads into one bytes buffer and binary-searches
(:class:`SortedTable`); the TF-IDF matrix is fitted when a mention first misses the tables.

Identifiers are bare MeSH UIs (``D003924``), as in the BC5CDR files; writers may prefix ``MESH:``.
scikit-learn and scipy are imported inside the functions that need them.
"""
from __future__ import annotations

import csv
import functools
import gzip
import itertools
import json
import logging
import re
import threading
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bioprune.postprocess import abbreviations
from bioprune.types import ENTITY_TYPES

logger = logging.getLogger(__name__)

DEFAULT_INDEX_DIR = Path(__file__).parent / "assets" / "bc5cdr-minilm-l6" / "linker"
NAMES_FILE = "names.tsv.gz"  # type, name, id, pair_weight, vocab_weight (header row first)
MANIFEST_FILE = "linker.json"  # format version, sources, counts, the command that built it
NAMES_COLUMNS = ("type", "name", "id", "pair_weight", "vocab_weight")
# the look-up tables of each type, one file each (:func:`table_file`): exact name, lower-case name,
# normalised key, bag of words, normalised key without spaces, and the normalised names the TF-IDF
# searches
TABLES = ("exact", "caseless", "normalized", "bag", "compact", "tfidf")  # all but the last: TypeIndex's look-up fields
LOOKUPS = TABLES[:-1]
FORMAT_VERSION = 3  # 1: names only; 2: no caseless and compact tables (both still read: tables computed at load)
BUILD_COMMAND = ("python -m training.build_linker_index --data ../shared/data "
                 "--output bioprune/assets/bc5cdr-minilm-l6/linker/")


class LinkerIndexError(ValueError):
    """A linker index (or a vocabulary it is built from) is missing or malformed: one line that names
    the file and says how to build it."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}; build it with: {BUILD_COMMAND}")


@dataclass(frozen=True)
class LinkerSettings:
    """How mentions are linked. The thresholds were chosen on the BC5CDR development set with an
    index built without it (``training/evaluate_linking.py --choose``, results/linking_dev.json)."""

    chemical_min_similarity: float = 0.9  # TF-IDF cosine below which a Chemical gets no ID
    disease_min_similarity: float = 0.75  # same for Disease
    neighbours: int = 20  # nearest names looked at per mention
    ngram: int = 3  # character n-gram length (scispaCy uses 3)
    expand_abbreviations: bool = True  # replace the document's short forms by their long forms
    split_composites: bool = True  # "breast and ovarian cancer" -> two IDs
    # a TF-IDF neighbour that is the name with one word misspelled by one letter links when both words
    # are alphabetic and at least this long (shorter words and digits carry meaning: "5-HT1A",
    # "vitamin B"); 0 = off. Chosen on dev among 6, 8, 10 and off (chemical document F1 from gold
    # mentions 0.9593 off, 0.9603 at 6 or 8, 0.9606 at 10)
    respelled_min_letters: int = 10
    # the score of a head-suffix match ("metastatic breast cancer" -> "breast cancer"); 0 = off, as
    # chosen on dev: it links more mentions right (+0.5 point disease accuracy) but adds wrong
    # concepts to documents (-0.6 point document F1)
    head_score: float = 0.0
    # a Chemical nothing links is tried again as authors' spellings MeSH lacks (:func:`chemical_variants`:
    # British "sulph", "HCl", "... drugs" for "... agents", a salt or racemate of a parent compound);
    # chosen on dev (results/linking_dev.json)
    chemical_variants: bool = True

    def min_similarity(self, label: str) -> float:
        return self.chemical_min_similarity if label == "Chemical" else self.disease_min_similarity


@dataclass(frozen=True)
class Link:
    """The identifiers of one mention: ``ids`` empty when nothing matched confidently."""

    ids: tuple[str, ...] = ()
    score: float = 0.0  # 1.0 for a dictionary match, the cosine for a TF-IDF match
    method: str = "none"  # the table that answered (LOOKUPS) | composite | tfidf | respelled | head | none
    # the concepts scored for the mention, best first, as ("D1|D2", score) pairs (at most CANDIDATES, as
    # scispaCy's kb_ents): a dictionary hit is its own only candidate (score 1); a TF-IDF answer lists its
    # nearest concepts, and so does a mention left unlinked, whose candidates all fall below the threshold
    candidates: tuple[tuple[str, float], ...] = ()


NO_LINK = Link()
CANDIDATES = 5  # concept candidates a Link keeps

# ---------------------------------------------------------------- string normalisation (pure)

_GREEK = str.maketrans({"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "κ": "kappa",
                        "λ": "lambda", "μ": "mu", "ω": "omega"})
_TOKEN = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_STOPWORDS = frozenset({"of", "the", "in", "to", "with", "by", "for", "on", "a", "an", "induced"})


@functools.lru_cache(maxsize=1 << 17)  # names share their words: a load singularises each word once
def _singular(token: str) -> str:
    """A crude English singular and American spelling ("anaemias" -> "anemia", "oedema" -> "edema"),
    applied alike to index names and queries (only consistency matters)."""
    token = token.replace("ae", "e").replace("oe", "e")
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(name: str) -> list[str]:
    """Lower-case word tokens of ``name``: Greek letters spelled out, accents, possessives and
    punctuation dropped, plurals singularised."""
    text = _POSSESSIVE.sub("", name.lower().translate(_GREEK))
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return [_singular(t) for t in _TOKEN.findall(text)]


def normalized_key(name: str) -> str:
    """The normalised look-up key: ``"Alzheimer's Diseases"`` -> ``"alzheimer disease"``."""
    return " ".join(tokens(name))


@functools.lru_cache(maxsize=1 << 16)  # _respelled asks it of the same TF-IDF neighbours again and again
def bag_key(name: str) -> str:
    """Order-free key: the sorted set of tokens without stop words."""
    return _bag(tokens(name))


def _bag(toks: Sequence[str]) -> str:
    return " ".join(sorted(set(toks) - _STOPWORDS))


_CONJUNCTION = re.compile(r"\s*,?\s+(?:and/or|and|or)\s+|\s*,\s+|\s*/\s*", re.IGNORECASE)


def composite_readings(mention: str) -> list[list[str]]:
    """Ways to read ``mention`` as several names joined by a conjunction, most literal first.

    "nausea and vomiting" -> parts as they are; "breast and ovarian cancer" -> the last part's head
    shared ("breast cancer", "ovarian cancer"); "hepatitis B and C" -> the first part's head shared
    ("hepatitis B", "hepatitis C"). No conjunction: no reading.
    """
    parts = [p.strip() for p in _CONJUNCTION.split(mention) if p and p.strip()]
    if len(parts) < 2:
        return []
    readings = [parts]
    last, first = parts[-1].split(), parts[0].split()
    if len(last) > 1:
        readings.append([f"{p} {' '.join(last[1:])}" if len(p.split()) < len(last) else p
                         for p in parts[:-1]] + [parts[-1]])
    if len(first) > 1:
        readings.append([parts[0]] + [f"{' '.join(first[:-1])} {p}" if len(p.split()) < len(first) else p
                                      for p in parts[1:]])
    return readings


# British and abbreviated spellings MeSH writes otherwise ("pregnenolone sulphate", "bupropion HCl")
_RESPELLINGS = ((re.compile(r"sulph", re.IGNORECASE), "sulf"),
                (re.compile(r"(?<![^\W_])HCl(?![^\W_])"), "hydrochloride"),
                (re.compile(r"aluminium", re.IGNORECASE), "aluminum"),
                # a drug class: MeSH names pharmacological actions "... Agents" ("beta-Adrenergic Blocking Agents")
                (re.compile(r"(?<![^\W_])(?:drug|medication|medicine)(s?)(?![^\W_])", re.IGNORECASE), r"agent\1"))
# a counter-ion, salt or hydrate word before or after the parent compound's name ("atropine sulfate",
# "disodium edetate"); MeSH files most salts under the parent, as BC5CDR's annotators did
_SALT = (r"(?:(?:di|mono)?hydrochloride|hydrobromide|HBr|(?:bi)?sulfate|mesylate|mesilate|maleate|fumarate|"
         r"(?:bi)?tartrate|citrate|succinate|acetate|phosphate|besylate|besilate|tosylate|(?:di|tri)?sodium|"
         r"(?:di)?potassium|calcium|magnesium|(?:mono|di|tri|hemi)?hydrate|bromide|chloride|iodide|nitrate|"
         r"lactate|gluconate|salt)")
_SALT_WORD = re.compile(rf"^{_SALT}\s+(?=\S)|(?<=\S)(?:\s+|-){_SALT}$", re.IGNORECASE)
_ONLY_SALT = re.compile(_SALT, re.IGNORECASE)
# a racemate's prefix: "d,l-sotalol", "(+/-)-pindolol" name the drug itself
_RACEMIC = re.compile(r"^(?:d,\s?l|dl|\(\+/-\)|\(±\)|\(RS\)|rac)-(?=\w)", re.IGNORECASE)


def chemical_variants(name: str) -> list[str]:
    """Other spellings of a chemical ``name`` to link when it links to nothing, most literal first:
    respelled (:data:`_RESPELLINGS`), then without a salt word (:data:`_SALT_WORD`) or racemate
    prefix (:data:`_RACEMIC`). "Atropine sulphate" -> "Atropine sulfate" (a MeSH term of atropine);
    "beta-adrenergic blocking drugs" -> "beta-adrenergic blocking agents" (a term of D000319);
    "ritodrin-HCl" -> "ritodrin-hydrochloride", "ritodrin"; "d,l-sotalol" -> "sotalol"."""
    respelled = name
    for pattern, spelling in _RESPELLINGS:
        respelled = pattern.sub(spelling, respelled)
    bare = _RACEMIC.sub("", _SALT_WORD.sub("", respelled))
    bare = respelled if _ONLY_SALT.fullmatch(bare) else bare  # "potassium chloride" is no salt of chloride
    return [v for v in dict.fromkeys((respelled, bare)) if v != name and v.strip()]


def abbreviation_map(text: str) -> dict[str, str]:
    """Short form -> long form for each "long form (SF)" in ``text`` (the first definition wins)."""
    out: dict[str, str] = {}
    for (ls, le), (ss, se) in abbreviations(text):
        out.setdefault(text[ss:se], text[ls:le])
    return out


def expand_short_forms(mention: str, short_forms: Mapping[str, str]) -> str:
    """``mention`` with each whole-word short form replaced by its long form."""
    if not short_forms:
        return mention
    if mention in short_forms:
        return short_forms[mention]
    pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, sorted(short_forms, key=len, reverse=True)))
                         + r")(?!\w)")
    return pattern.sub(lambda m: short_forms[m.group(1)], mention)


# ---------------------------------------------------------------- the index

class NameRow(NamedTuple):
    """One name of the index: a string that refers to ``id`` for mentions of type ``type``.

    Immutable like a frozen dataclass, but a tuple: a build makes half a million of them, and a
    frozen dataclass' ``__init__`` costs four times as much.
    """

    type: str
    name: str
    id: str
    pair_weight: float = 0.0  # how often (weighted by corpus) annotators linked this string to ``id``
    vocab_weight: float = 0.0  # 2 = the descriptor's preferred term, 1 = another term or synonym


def table_file(label: str, table: str) -> str:
    """The file of one look-up table in an index folder, e.g. ``Chemical.exact.tsv.gz``."""
    return f"{label}.{table}.tsv.gz"


def write_names(directory: str | Path, rows: Iterable[NameRow], manifest: Mapping) -> Path:
    """Write an index folder: ``names.tsv.gz`` (sorted rows), each type's look-up tables
    (:func:`table_lines`) and ``linker.json``; reproducible bytes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r.type, r.name, r.id))
    lines = ["\t".join(NAMES_COLUMNS)]
    lines += [f"{r.type}\t{r.name}\t{r.id}\t{r.pair_weight:g}\t{r.vocab_weight:g}" for r in rows]
    _write_gz(directory / NAMES_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
    for label, tables in _tables_by_type(rows).items():
        for table, data in tables.items():
            _write_gz(directory / table_file(label, table), data)
    manifest = {"format_version": FORMAT_VERSION, **manifest, "rows": len(rows)}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def _write_gz(path: Path, data: bytes) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as raw:
        raw.write(data)


def read_names(directory: str | Path) -> list[NameRow]:
    """The rows of an index folder; :class:`LinkerIndexError` if it is missing or malformed."""
    path = Path(directory) / NAMES_FILE
    if not path.is_file():
        raise LinkerIndexError(path, "no linker index here")
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = tuple(next(reader, ()))
            if header != NAMES_COLUMNS:
                raise LinkerIndexError(path, f"header {list(header)} is not {list(NAMES_COLUMNS)}")
            return [NameRow(t, n, i, float(p), float(v)) for t, n, i, p, v in reader]
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as err:
        if isinstance(err, LinkerIndexError):
            raise
        raise LinkerIndexError(path, f"unreadable ({type(err).__name__}: {err})") from None


def _best_ids(rows: Iterable[tuple[str, NameRow]]) -> dict[str, tuple[str, float]]:
    """key -> (id, prior) for the best-supported ID of each key: annotated pairs first, then the
    vocabulary's preferred terms, then the smallest ID (deterministic).

    Most keys have one ID: they hold a plain (id, pair, vocab) tuple while counting, and only keys
    with several IDs get a dict (a dict per key cost ~0.4 GB transient over half a million names).
    """
    support: dict[str, tuple[str, float, float] | dict[str, list[float]]] = {}
    for key, row in rows:
        if not key:
            continue
        seen = support.get(key)
        if seen is None:
            support[key] = (row.id, row.pair_weight, row.vocab_weight)
        elif isinstance(seen, tuple) and seen[0] == row.id:
            support[key] = (row.id, seen[1] + row.pair_weight, seen[2] + row.vocab_weight)
        else:
            by_id = {seen[0]: [seen[1], seen[2]]} if isinstance(seen, tuple) else seen
            s = by_id.setdefault(row.id, [0.0, 0.0])
            s[0] += row.pair_weight
            s[1] += row.vocab_weight
            support[key] = by_id
    for key, seen in support.items():
        if isinstance(seen, tuple):
            support[key] = (seen[0], seen[1])
        else:
            best = min(seen, key=lambda i: (-seen[i][0], -seen[i][1], i))
            support[key] = (best, seen[best][0])
    return support  # every value is now (id, prior)


# TF-IDF and look-up answers kept per type, then forgotten all at once: a TF-IDF answer (80 neighbours
# as int32 and float32 arrays) holds ~1 KB, a look-up ~0.2 KB, so a long batch run stays within ~60 MB
# per type (as lists of Python pairs an answer held ~9 KB: 1.8 GB per type at the former 200,000)
MEMO_QUERIES = 50_000


class Neighbours:
    """Character n-gram TF-IDF over one type's normalised names, fitted on first use and then kept:
    most mentions are found by the look-ups, so loading an index reads only the tables, and the
    vectorizer and matrix (with the scikit-learn import, a few seconds over ~120k names) wait."""

    def __init__(self, names: Sequence[str], ngram: int = 3):
        self.names = tuple(names)  # the normalised keys the TF-IDF rows stand for
        self.ngram = ngram
        self._fitted: tuple[object, object] | None = None  # (TfidfVectorizer, CSR features x names)
        self._lock = threading.Lock()  # the app's worker threads share one linker: fit once
        # (query, k) -> its best names' indices (int32) and cosines (float32), compact (MEMO_QUERIES): a
        # corpus repeats the names the look-ups miss, and one scikit-learn transform costs ~1.5 ms of input checks
        self._memo: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def forget(self) -> None:
        self._memo.clear()

    def fit(self) -> tuple[object, object]:
        """The fitted (vectorizer, matrix), fitted now if not yet (a benchmark times it apart)."""
        with self._lock:
            if self._fitted is None:
                from sklearn.feature_extraction.text import TfidfVectorizer

                vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(self.ngram, self.ngram),
                                             lowercase=False, sublinear_tf=True, dtype=np.float32)
                self._fitted = (vectorizer, vectorizer.fit_transform(self.names).T.tocsr())
                logger.info("linker: TF-IDF over %d names fitted", len(self.names))
            return self._fitted

    def similar(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` (name index, cosine) pairs, best first (ties: lower index).

        Queries seen before come from a memo (cleared past :data:`MEMO_QUERIES`); the others go
        through scikit-learn in one transform."""
        if not self.names:
            return [[] for _ in queries]
        if todo := list(dict.fromkeys(q for q in queries if (q, k) not in self._memo)):
            if len(self._memo) + len(todo) > MEMO_QUERIES:
                self._memo.clear()
            self._memo.update(zip(((q, k) for q in todo), self._similar_now(todo, k)))
        return [list(zip(*(a.tolist() for a in self._memo[(q, k)]))) for q in queries]

    def _similar_now(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        vectorizer, matrix_t = self.fit()
        sims = (vectorizer.transform(queries) @ matrix_t).tocsr()  # (queries, names), sparse
        out = []
        for row in range(sims.shape[0]):
            lo, hi = sims.indptr[row], sims.indptr[row + 1]
            cols, vals = sims.indices[lo:hi], sims.data[lo:hi]
            if len(vals) > k:  # the k best and every name tied with the k-th, then sorted
                kth = -np.partition(-vals, k - 1)[k - 1]
                keep = vals >= kth
                cols, vals = cols[keep], vals[keep]
            order = np.lexsort((cols, -vals))[:k]
            out.append((cols[order].astype(np.int32), vals[order].astype(np.float32)))  # (<= k,) each
        return out


class SortedTable:
    """A read-only map from key to ID over one bytes buffer of ``key<TAB>ID`` lines sorted as bytes.

    Half a million names held as a Python dict cost ~0.4 GB and seconds to build; as one buffer
    plus a (n,) array of line starts they cost their UTF-8 text and 8 bytes a line, load in a
    fraction of a second, and a look-up is a binary search (~7 µs). Keys hold no tab or newline.
    """

    def __init__(self, data: bytes):
        self.data = data
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))  # (n,)
        # (n,): where each line begins; a memoryview, whose items index as Python ints twice as fast
        self.starts = memoryview(np.concatenate([[0], ends[:-1] + 1]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.starts) if self.data else 0

    def get(self, key: str) -> str | None:
        """The ID of ``key``, or None."""
        probe = key.encode("utf-8") + b"\t"
        n, data, starts = len(probe), self.data, self.starts
        lo, hi = 0, len(self)
        while lo < hi:  # the first line whose first n bytes are >= probe (lines are sorted)
            mid = (lo + hi) // 2
            if data[starts[mid]:starts[mid] + n] < probe:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(self) or data[starts[lo]:starts[lo] + n] != probe:
            return None
        return data[starts[lo] + n:data.index(b"\n", starts[lo] + n)].decode("utf-8")


def table_lines(table: Mapping[str, tuple[str, float]]) -> bytes:
    """A :class:`SortedTable`'s buffer: ``key<TAB>ID`` lines of ``table`` (key -> (ID, prior)), sorted as bytes."""
    return b"".join(sorted(f"{key}\t{ident}\n".encode("utf-8") for key, (ident, _) in table.items()))


def type_tables(rows: Sequence[NameRow]) -> dict[str, bytes]:
    """One type's look-up tables (:data:`TABLES`) from its names, as :func:`table_lines` buffers.

    Only the normalised table is whole. Each other look-up table keeps just the keys whose ID differs
    from what :func:`lookup` finds without it (for the exact name: the lower-case table's answer;
    for the others: the normalised table's for the same key), so the index holds each answer once
    (the shipped exact table keeps 81 of 435,006 chemical names) and look-ups answer as if every
    table were whole.
    """
    toks = [tokens(r.name) for r in rows]
    normalized = _best_ids((" ".join(t), r) for t, r in zip(toks, rows))
    caseless = _best_ids((r.name.lower(), r) for r in rows)

    def beyond(table: dict[str, tuple[str, float]], below) -> dict[str, tuple[str, float]]:
        return {k: v for k, v in table.items() if below(k) != v[0]}

    def normalized_id(key: str) -> str | None:
        return normalized.get(key, (None,))[0] if key else None

    # supplementary records answer look-ups only: as TF-IDF neighbours their ~340k names slowed every
    # missed mention and, on dev, linked no more right (the thresholds were re-chosen without them)
    fuzzy = {k: v for k, v in normalized.items() if v[1] > 0 or not v[0].startswith("C")}
    tables = {"exact": beyond(_best_ids((r.name, r) for r in rows), lambda k: caseless[k.lower()][0]),
              "caseless": beyond(caseless, lambda k: normalized_id(normalized_key(k))),
              "normalized": normalized,
              "bag": beyond(_best_ids((_bag(t), r) for t, r in zip(toks, rows)), normalized_id),
              "compact": beyond(_best_ids(("".join(t), r) for t, r in zip(toks, rows)), normalized_id),
              "tfidf": fuzzy}
    return {name: table_lines(tables[name]) for name in TABLES}


def _tables_by_type(rows: Sequence[NameRow]) -> dict[str, dict[str, bytes]]:
    types = sorted({r.type for r in rows} | set(ENTITY_TYPES))
    return {t: type_tables([r for r in rows if r.type == t]) for t in types}


@dataclass(frozen=True)
class TypeIndex:
    """The look-up tables (:data:`LOOKUPS`, as :func:`type_tables` writes them) and TF-IDF neighbours
    of one mention type."""

    exact: SortedTable
    caseless: SortedTable
    normalized: SortedTable
    bag: SortedTable
    compact: SortedTable
    neighbours: Neighbours  # TF-IDF over the normalised names of the "tfidf" table
    neighbour_ids: tuple[str, ...]  # the ID of each of ``neighbours.names``
    # name -> its :func:`lookup` answer: linking asks the same names again (prefetch, then the mention;
    # an abstract repeats its names, a corpus its common ones), and one answer costs up to five binary searches
    looked_up: dict[str, "Link"] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_tables(cls, tables: Mapping[str, bytes], ngram: int = 3) -> "TypeIndex":
        names, ids = zip(*(line.decode("utf-8").split("\t") for line in tables["tfidf"].splitlines())) \
            if tables["tfidf"] else ((), ())
        return cls(*(SortedTable(tables[name]) for name in LOOKUPS), neighbours=Neighbours(names, ngram),
                   neighbour_ids=ids)

    def nearest(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` most similar (id, cosine) per query, best first, one entry per ID."""
        out = []
        for hits in self.neighbours.similar(queries, 4 * k):
            seen: dict[str, float] = {}
            for j, sim in hits:
                seen.setdefault(self.neighbour_ids[j], sim)
            out.append(sorted(seen.items(), key=lambda x: -x[1])[:k])
        return out


def build_index(rows: Sequence[NameRow], ngram: int = 3) -> dict[str, TypeIndex]:
    """One :class:`TypeIndex` per entity type, computed from an index's names (seconds; an index
    folder written by :func:`write_names` holds the tables already: :func:`read_index`)."""
    return {t: TypeIndex.from_tables(tables, ngram) for t, tables in _tables_by_type(rows).items()}


def read_index(directory: str | Path, ngram: int = 3) -> dict[str, TypeIndex]:
    """The :class:`TypeIndex` of each type from an index folder's table files; a folder written
    before they existed (format 1: names only) has them computed from its names, with a log line."""
    directory = Path(directory)
    files = {(t, name): directory / table_file(t, name) for t in ENTITY_TYPES for name in TABLES}
    if not all(path.is_file() for path in files.values()):
        logger.info("linker: %s lacks look-up tables (format 1 or 2): computing them from %s; rebuild the "
                    "index to load faster", directory, NAMES_FILE)
        return build_index(read_names(directory), ngram)
    tables = {key: _read_table(path) for key, path in files.items()}
    return {t: TypeIndex.from_tables({name: tables[t, name] for name in TABLES}, ngram) for t in ENTITY_TYPES}


def _read_table(path: Path) -> bytes:
    """A look-up table file's lines; :class:`LinkerIndexError` unless each line is ``key<TAB>ID``."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a damaged compressed body
        raise LinkerIndexError(path, f"unreadable ({type(err).__name__}: {err})") from None
    lines, tabs = data.count(b"\n"), data.count(b"\t")
    if (data and not data.endswith(b"\n")) or tabs != lines:
        raise LinkerIndexError(path, f"not key<TAB>ID lines ({lines} lines, {tabs} tabs)")
    return data


# ---------------------------------------------------------------- linking (pure over an index)

def lookup(index: TypeIndex, name: str) -> Link:
    """Dictionary look-up: the exact string, its lower case ("Phenothiazines", the class, is not
    "phenothiazine", the compound, which the normalised key conflates), the normalised key, the bag of
    words, the normalised key without spaces. A key missing from a table that :func:`type_tables`
    thinned is asked of the normalised table (the exact and lower-case ones fall through to it).
    Answers are memoised in ``index.looked_up`` (cleared past :data:`MEMO_QUERIES`)."""
    if (found := index.looked_up.get(name)) is None:
        if len(index.looked_up) >= MEMO_QUERIES:
            index.looked_up.clear()
        found = index.looked_up[name] = _lookup_now(index, name)
    return found


def _lookup_now(index: TypeIndex, name: str) -> Link:
    toks = tokens(name)  # tokenised once for the three keys made of them
    for method, table, probe in (("exact", index.exact, name), ("caseless", index.caseless, name.lower()),
                                 ("normalized", index.normalized, " ".join(toks)), ("bag", index.bag, _bag(toks)),
                                 ("compact", index.compact, "".join(toks))):
        if not probe:
            continue
        hit = table.get(probe)
        if hit is None and method in ("bag", "compact"):
            hit = index.normalized.get(probe)
        if hit is not None:
            return Link(ids=tuple(hit.split("|")), score=1.0, method=method, candidates=((hit, 1.0),))
    return NO_LINK


def _fuzzy(index: TypeIndex, name: str, k: int) -> Link:
    key = normalized_key(name)
    if not key:
        return NO_LINK
    [best] = index.nearest([key], k)
    return Link(ids=tuple(best[0][0].split("|")), score=best[0][1], method="tfidf",
                candidates=tuple(best[:CANDIDATES])) if best else NO_LINK


def _link_name(index: TypeIndex, name: str, settings: LinkerSettings, min_similarity: float) -> Link:
    """Look-up, then composite readings, then the nearest TF-IDF name (one string, no abbreviations)."""
    found = lookup(index, name)
    if found.ids:
        return found
    best = NO_LINK
    for parts in composite_readings(name) if settings.split_composites else ():
        links = [lookup(index, p) for p in parts]
        links = [lk if lk.ids else _fuzzy(index, p, settings.neighbours) for lk, p in zip(links, parts)]
        score = min(lk.score for lk in links)
        if score > best.score and all(lk.ids for lk in links):
            ids = tuple(dict.fromkeys(i for lk in links for i in lk.ids))
            best = Link(ids=ids, score=score, method="composite", candidates=(("|".join(ids), score),))
    whole = _fuzzy(index, name, settings.neighbours)
    best = whole if whole.score > best.score else best
    head = _head_lookup(index, name) if settings.head_score > best.score else NO_LINK
    if head.ids:
        best = replace(head, score=settings.head_score, candidates=(("|".join(head.ids), settings.head_score),))
    if best.score >= min_similarity:
        return best
    respelled = _respelled(index, name, settings) if settings.respelled_min_letters else NO_LINK
    if respelled.ids:
        return replace(respelled, candidates=_merged(respelled.candidates + whole.candidates))
    return replace(NO_LINK, candidates=whole.candidates)  # no ID, and the near misses it had


def _merged(candidates: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """Each concept once, where it first comes, at most :data:`CANDIDATES`."""
    first: dict[str, float] = {}
    for concept, score in candidates:
        first.setdefault(concept, score)
    return tuple(first.items())[:CANDIDATES]


def one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by exactly one inserted, deleted or replaced character."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + 1:] == b[i + 1:] if len(a) == len(b) else a[i:] == b[i + 1:]


def _one_word_respelled(words: Sequence[str], other: Sequence[str], min_letters: int) -> bool:
    """Whether two word lists differ in one position only, by :func:`one_edit`, between alphabetic
    words of at least ``min_letters`` letters."""
    if len(words) != len(other):
        return False
    diff = [(a, b) for a, b in zip(words, other) if a != b]
    return (len(diff) == 1 and all(w.isalpha() and len(w) >= min_letters for w in diff[0])
            and one_edit(*diff[0]))


def _respelled(index: TypeIndex, name: str, settings: LinkerSettings) -> Link:
    """The nearest TF-IDF name that is ``name`` with one long word misspelled by one letter, in
    order or as a bag of words ("Sodium thiopenthal" = "thiopental sodium"); else no link. Authors
    misspell drug names ("amphothericin B", "procyclindine"), and one letter moves a short name's
    3-gram cosine far below the threshold."""
    key, bag = normalized_key(name), bag_key(name)
    if not key:
        return NO_LINK
    [hits] = index.neighbours.similar([key], 4 * settings.neighbours)  # the memoised query of _fuzzy
    for j, sim in hits:
        other = index.neighbours.names[j]
        if (_one_word_respelled(key.split(), other.split(), settings.respelled_min_letters)
                or _one_word_respelled(bag.split(), bag_key(other).split(), settings.respelled_min_letters)):
            return Link(ids=tuple(index.neighbour_ids[j].split("|")), score=sim, method="respelled",
                        candidates=((index.neighbour_ids[j], sim),))
    return NO_LINK


def _head_lookup(index: TypeIndex, name: str) -> Link:
    """Dictionary look-up of the longest proper word suffix of ``name``: English noun phrases end in
    their head, so "ribavirin-induced hemolytic anemia" and "metastatic breast cancer" fall back to
    "hemolytic anemia" and "breast cancer" (DNorm's guideline: the chemical cause is not the disease)."""
    words = re.split(r"[\s-]+", name.strip())
    for k in range(1, len(words)):
        found = lookup(index, " ".join(words[k:]))
        if found.ids:
            return replace(found, method="head")
    return NO_LINK


_FRAGMENT = re.compile(r"^[\W\d_]*$|[^\W\d_]-$")  # no letter at all, or a prefix cut off ("N-", "tri-")
# where a mention may hold several names: spaces, "/", "+", or a hyphen between two words of four letters
_PART_BREAK = re.compile(r"\s+|\s*[/+]\s*|(?<=[^\W\d_]{4})-(?=[^\W\d_]{4})")
_SYSTEMATIC = re.compile(r"\d[,'-]|[(-]\d|[()]")  # locants and brackets: one systematic name, never several


def name_parts(index: TypeIndex, mention: str, min_chars: int = 4) -> list[tuple[int, int, Link]]:
    """``mention`` read as adjacent dictionary names: the (start, end, link) of each, the longest
    look-up hit first from the left, when such hits cover every word of it; else ``[]``.

    For a mention the look-ups and the TF-IDF leave without an ID: the model tags adjacent
    chemicals as one entity ("anthracycline doxorubicin", "levomepromazine-fluvoxamine"), which
    no name matches. A systematic name (locants, brackets) is one compound and is never split,
    and a part is a name of at least ``min_chars`` characters.
    """
    breaks = [] if _SYSTEMATIC.search(mention) else list(_PART_BREAK.finditer(mention))
    pieces = [(s, e) for s, e in zip([0] + [b.end() for b in breaks], [b.start() for b in breaks] + [len(mention)])
              if e > s]
    if len(pieces) < 2:
        return []
    out, i = [], 0
    while i < len(pieces):
        for j in range(len(pieces) - 1 - (i == 0), i - 1, -1):  # the whole mention already missed
            start, end = pieces[i][0], pieces[j][1]
            if end - start >= min_chars and (link := lookup(index, mention[start:end])).ids:
                out.append((start, end, link))
                i = j + 1
                break
        else:
            return []
    return out


def link_mention(index: Mapping[str, TypeIndex], mention: str, label: str, short_forms: Mapping[str, str],
                 settings: LinkerSettings) -> Link:
    """The ID(s) of one mention of type ``label``; ``short_forms`` from :func:`abbreviation_map`.

    The long form of an abbreviation is tried first (the same "PD" is Parkinson's disease in one
    abstract and panic disorder in another); the mention as written is the fallback. A fragment
    (no letter, or a prefix cut off: "N-") gets none: the decoder cut it from a longer name.
    """
    if (type_index := index.get(label)) is None or _FRAGMENT.search(mention):
        return NO_LINK
    threshold = settings.min_similarity(label)
    expanded = expand_short_forms(mention, short_forms) if settings.expand_abbreviations else mention
    forms = [expanded, mention] if expanded != mention else [mention]
    variants = (v for form in forms for v in chemical_variants(form)) \
        if label == "Chemical" and settings.chemical_variants else ()  # tried only when no form links
    unlinked = NO_LINK  # the first form's near misses, when none links
    for form in itertools.chain(forms, variants):
        link = _link_name(type_index, form, settings, threshold)
        if link.ids:
            return link
        unlinked = unlinked if unlinked.candidates else link
    return unlinked


def link_document(index: Mapping[str, TypeIndex], text: str, mentions: Sequence[tuple[str, str]],
                  settings: LinkerSettings = LinkerSettings()) -> list[Link]:
    """One :class:`Link` per ``(mention text, type)`` of a document whose full text is ``text``.

    Repeated mentions are linked once (an abstract repeats its names).
    """
    return link_documents(index, [(text, mentions)], settings)[0]


def link_documents(index: Mapping[str, TypeIndex], documents: Sequence[tuple[str, Sequence[tuple[str, str]]]],
                   settings: LinkerSettings = LinkerSettings()) -> list[list[Link]]:
    """:func:`link_document` of each ``(text, mentions)``, the TF-IDF asked once for all of them."""
    short_forms = [abbreviation_map(text) if settings.expand_abbreviations else {} for text, _ in documents]
    _prefetch(index, [(mentions, forms) for (_, mentions), forms in zip(documents, short_forms)], settings)
    out = []
    for (_, mentions), forms in zip(documents, short_forms):
        links = {key: link_mention(index, *key, forms, settings) for key in dict.fromkeys(mentions)}
        out.append([links[key] for key in mentions])
    return out


def _prefetch(index: Mapping[str, TypeIndex], documents: Sequence[tuple[Sequence[tuple[str, str]], Mapping[str, str]]],
              settings: LinkerSettings) -> None:
    """Ask the TF-IDF once per type for every name of the documents (their mentions and short forms)
    that the look-ups miss (the mention, its expanded form, their composite parts and a chemical's
    variants), so linking the mentions one by one finds the answers memoised: one scikit-learn call
    per batch of documents instead of one per name (each call costs ~1.5 ms of input checks)."""
    for label, type_index in index.items():
        names = set()
        for mentions, short_forms in documents:
            for mention in dict.fromkeys(m for m, kind in mentions if kind == label):
                forms = {mention, expand_short_forms(mention, short_forms) if settings.expand_abbreviations else mention}
                for form in forms:
                    if lookup(type_index, form).ids:
                        continue
                    names.add(form)
                    if settings.split_composites:
                        names.update(p for parts in composite_readings(form) for p in parts
                                     if not lookup(type_index, p).ids)
                    if label == "Chemical" and settings.chemical_variants:
                        names.update(v for v in chemical_variants(form) if not lookup(type_index, v).ids)
        if keys := [k for k in map(normalized_key, names) if k]:
            type_index.nearest(sorted(set(keys)), settings.neighbours)


class Linker:
    """A loaded index and its settings: ``linker.link(text, [(mention, type), ...])`` -> Links."""

    def __init__(self, index: Mapping[str, TypeIndex], settings: LinkerSettings = LinkerSettings(), gene_products=()):
        self.index, self.settings = index, settings
        self.gene_products = frozenset(gene_products)  # MeSH protein and enzyme descriptors (linker.json): not chemicals

    @classmethod
    def load(cls, directory: str | Path | None = None, settings: LinkerSettings = LinkerSettings()) -> "Linker":
        """Read an index folder (default: the shipped one): its look-up tables now, the TF-IDF
        matrices when first needed."""
        directory = Path(directory) if directory is not None else DEFAULT_INDEX_DIR
        if not (directory / NAMES_FILE).is_file():
            raise LinkerIndexError(directory / NAMES_FILE, "no linker index here")
        index = read_index(directory, settings.ngram)
        logger.info("linker: %s", ", ".join(f"{t} {len(ti.normalized)} keys" for t, ti in index.items()))
        manifest = directory / MANIFEST_FILE  # an index built before gene products were listed has none
        return cls(index, settings, json.loads(manifest.read_text()).get("gene_products", ()) if manifest.is_file() else ())

    def link(self, text: str, mentions: Sequence[tuple[str, str]]) -> list[Link]:
        return link_document(self.index, text, mentions, self.settings)

    def linked_entities(self, text: str, entities: Sequence) -> list:
        """``entities`` (:class:`~bioprune.types.Entity`) with their IDs set, an unlinked one made
        of dictionary names split into them (:func:`name_parts`), less the gene products
        (:meth:`gene_product`): what linking makes of a document's entities."""
        return self.linked_documents([(text, entities)])[0]

    def linked_documents(self, documents: Sequence[tuple[str, Sequence]]) -> list[list]:
        """:meth:`linked_entities` of each ``(text, entities)``, linked together (:func:`link_documents`)."""
        all_links = link_documents(self.index, [(text, [(e.text, e.label) for e in entities])
                                                for text, entities in documents], self.settings)
        return [self._linked(entities, links) for (_, entities), links in zip(documents, all_links)]

    def _linked(self, entities: Sequence, links: Sequence[Link]) -> list:
        out = []
        for e, lk in zip(entities, links):
            parts = name_parts(self.index[e.label], e.text) if not lk.ids and e.label in self.index else []
            out += [replace(e, start=e.start + s, end=e.start + t, text=e.text[s:t], ids=part.ids)
                    for s, t, part in parts] or [replace(e, ids=lk.ids)]
        return [e for e in out if not self.gene_product(e.label, e)]

    def gene_product(self, label: str, linked) -> bool:
        """Whether a "Chemical" links (``linked.ids``: a Link or an entity) only to proteins or enzymes:
        a gene product, which BC5CDR does not annotate (2 of its 10,550 train+dev gold chemicals) and
        the model calls a chemical on gene-rich text."""
        return label == "Chemical" and bool(linked.ids) and all(i in self.gene_products for i in linked.ids)

    def forget_answers(self) -> None:
        """Drop the memoised TF-IDF and look-up answers (benchmarks time a first pass over their text with it)."""
        for type_index in self.index.values():
            type_index.neighbours.forget()
            type_index.looked_up.clear()


LINKER_DIR = "linker"  # the index folder inside a model folder (PruningEngine.save_pretrained writes it)


def index_dir_for(model_dir: str | Path | None) -> Path:
    """The linker index of a model folder: its ``linker/`` subfolder, else the shipped index (with a
    warning for a folder that lacks one: its IDs then come from the shipped model's vocabulary)."""
    if model_dir is None:
        return DEFAULT_INDEX_DIR
    own = Path(model_dir) / LINKER_DIR
    if own.is_dir():
        return own
    logger.warning("%s has no %s/ folder: linking with the shipped index %s", model_dir, LINKER_DIR,
                   DEFAULT_INDEX_DIR)
    return DEFAULT_INDEX_DIR


@functools.lru_cache(maxsize=4)
def load_linker(directory: str | None = None) -> Linker:
    """The linker of an index folder, loaded once per process (the first call takes seconds)."""
    return Linker.load(directory)
