"""PubTator reader and writer (the BioCreative V CDR distribution format).

One block per document, blocks separated by blank lines::

    PMID|t|Title text
    PMID|a|Abstract text
    PMID<TAB>start<TAB>end<TAB>mention<TAB>Chemical|Disease<TAB>MeSH id(s)
    PMID<TAB>CID<TAB>chemical id<TAB>disease id          (relation line)
    PMID<TAB>Association<TAB>id<TAB>id<TAB>Novel         (BioRED's relation line)

Offsets are 0-based, end-exclusive, over ``title + " " + abstract``. bioprune writes the six
columns of PubTator3 (``MESH:D003924``, composite ``MESH:D1|MESH:D2``, ``-`` for none:
:mod:`bioprune.identifiers`): with five, PubTator tools (the ``bioc`` package) take a mention line
for a relation. ``iter_pubtator`` streams records one block at a time and raises
:class:`~bioprune.errors.InputError` naming the file and line of the first problem (missing
``|t|``, offsets outside the text, non-UTF-8 bytes, ...);
``iter_pubtator_records`` reports a bad block as a :class:`~bioprune.io.records.RecordError` and
goes on with the next one.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from bioprune.errors import InputError
from bioprune.identifiers import format_ids, parse_ids
from bioprune.io.compression import open_binary
from bioprune.io.records import RecordError
from bioprune.types import Annotation, Document

_TEXT_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")
_RELATION_TYPE = re.compile(r"^[A-Z][A-Za-z_]*$")  # CID, Association, Positive_Correlation, ...


@dataclass(frozen=True)
class Mention:
    """A gold mention line: ``PMID start end text type ids``."""

    start: int
    end: int
    text: str
    type: str
    ids: str = ""  # MeSH id(s), "|"-joined for composite mentions; "-1" (BC5CDR) or "-" when unnormalised

    @property
    def concept_ids(self) -> tuple[str, ...]:
        """The bare IDs (``MESH:`` dropped; none for ``-1``/``-``)."""
        return parse_ids(self.ids)


@dataclass(frozen=True)
class Relation:
    """A relation line (``PMID CID chemical disease``); kept for completeness, unused by NER."""

    type: str
    arg1: str
    arg2: str


@dataclass(frozen=True)
class PubTatorDocument:
    """One PubTator block. ``abstract`` is None when the block has no ``|a|`` line."""

    pmid: str
    title: str
    abstract: str | None
    mentions: tuple[Mention, ...] = field(default_factory=tuple)
    relations: tuple[Relation, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """The text offsets refer to: ``title + " " + abstract`` (just the title if no abstract)."""
        return self.title if self.abstract is None else f"{self.title} {self.abstract}"

    def to_document(self) -> Document:
        return Document(id=self.pmid, text=self.text, title_end=len(self.title))


def iter_pubtator(path: str | Path) -> Iterator[PubTatorDocument]:
    """Yield the documents of a PubTator file in order; raise InputError on the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    with open_binary(path) as handle:  # gzipped or not, without a leading BOM
        for block, bad in _blocks(handle):
            yield _parse_block(block, bad, str(path))


def read_pubtator(path: str | Path) -> list[PubTatorDocument]:
    """All documents of a PubTator file; an error if it holds none."""
    docs = list(iter_pubtator(path))
    if not docs:
        raise InputError(str(path), "empty file: no PubTator documents found")
    return docs


def iter_pubtator_records(path: str | Path) -> Iterator[PubTatorDocument | RecordError]:
    """Like :func:`iter_pubtator`, but a bad block becomes a :class:`RecordError` and reading goes on
    with the next block (the batch annotator's lenient mode; evaluation keeps the strict reader)."""
    path = Path(path)  # errors name it as the strict reader does
    with open_binary(path) as handle:  # gzipped or not
        for block, bad in _blocks(handle):
            try:
                yield _parse_block(block, bad, str(path))
            except InputError as err:
                pmid = re.split(r"[|\t]", block[0][1], maxsplit=1)[0].strip()  # the first line's, if any
                yield RecordError(str(path), err.reason, pmid or None, err.line)


def _blocks(handle: BinaryIO) -> Iterator[tuple[list[tuple[int, str]], tuple[int, UnicodeDecodeError] | None]]:
    """Blank-line separated blocks of (line number, line); with the first undecodable line, if any
    (its text is decoded with replacement characters so the block still splits and names its id)."""
    block: list[tuple[int, str]] = []
    bad: tuple[int, UnicodeDecodeError] | None = None
    for line_no, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if bad is None:
                bad = (line_no, err)
            if not line.strip():  # undecodable bytes on a line that is otherwise blank
                line = "\ufffd"
        if line.strip():
            block.append((line_no, line))
        elif block:
            yield block, bad
            block, bad = [], None
    if block:
        yield block, bad


def _parse_block(block: list[tuple[int, str]], bad: tuple[int, UnicodeDecodeError] | None,
                 source: str) -> PubTatorDocument:
    """One block as a document; InputError naming the line of its first problem (``bad``: see :func:`_blocks`)."""
    if bad is not None:
        line_no, err = bad
        raise InputError(source, f"not valid UTF-8 ({err.reason} at byte {err.start} of the line)", line_no)
    first_no, first = block[0]
    match = _TEXT_LINE.match(first)
    if not match or match.group(2) != "t":
        raise InputError(source, "document block does not start with a 'PMID|t|title' line", first_no)
    pmid, title = match.group(1), match.group(3)
    abstract: str | None = None
    mention_lines: list[tuple[int, str]] = []
    relations: list[Relation] = []
    for line_no, line in block[1:]:
        match = _TEXT_LINE.match(line)
        if match:
            if match.group(1) != pmid:
                raise InputError(source, f"'|{match.group(2)}|' line for {match.group(1)} inside the "
                                 f"block of {pmid} (missing blank line?)", line_no)
            if match.group(2) == "t":
                raise InputError(source, f"second '|t|' line for {pmid}", line_no)
            abstract = match.group(3)
            continue
        cols = line.split("\t")
        if cols[0] != pmid:
            raise InputError(source, f"line for '{cols[0]}' inside the block of {pmid}", line_no)
        if len(cols) == 4 or (len(cols) == 5 and _RELATION_TYPE.match(cols[1])):
            # a relation line; BioRED's carry a fifth column (novelty), kept out of the record
            relations.append(Relation(type=cols[1], arg1=cols[2], arg2=cols[3]))
        elif len(cols) >= 5:
            mention_lines.append((line_no, line))
        else:
            raise InputError(source, f"expected a mention line with 5-6 tab-separated columns, "
                             f"got {len(cols)}", line_no)
    doc = PubTatorDocument(pmid=pmid, title=title, abstract=abstract, relations=tuple(relations))
    return replace(doc, mentions=tuple(_parse_mention(line, doc.text, source, n) for n, line in mention_lines))


def _parse_mention(line: str, text: str, source: str, line_no: int) -> Mention:
    cols = line.split("\t")
    try:
        start, end = int(cols[1]), int(cols[2])
    except ValueError:
        raise InputError(source, f"mention offsets are not integers: {cols[1]!r}, {cols[2]!r}",
                         line_no) from None
    if not 0 <= start < end <= len(text):
        raise InputError(source, f"mention offsets {start}-{end} are outside the text "
                         f"(length {len(text)})", line_no)
    if text[start:end] != cols[3]:
        raise InputError(source, f"mention text {cols[3]!r} does not match the text at "
                         f"{start}-{end}: {text[start:end]!r}", line_no)
    return Mention(start=start, end=end, text=cols[3], type=cols[4],
                   ids=cols[5] if len(cols) > 5 else "")


def _one_line(text: str) -> str:
    """Line breaks and tabs would break PubTator's line and column structure: make them spaces
    (one character for one, so offsets still hold)."""
    return text.translate(_LINE_BREAKS)


_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "\v": " ", "\f": " ", "\x1c": " ",
                              "\x1d": " ", "\x1e": " ", "\x85": " ", "\u2028": " ", "\u2029": " "})
_ID_BREAKERS = frozenset("|" + "".join(chr(c) for c in _LINE_BREAKS))  # what an id cannot hold


def pubtator_id_problem(doc_id: str) -> str | None:
    """Why ``doc_id`` cannot be a PubTator id, or None when it can.

    An id is the first column of every line of its block, ended by ``|`` on the text lines and by a
    tab on the mention lines: an id holding ``|``, a tab or a line break would write a block that no
    PubTator reader (bioprune's included) reads back as the same document. There is no escape in
    the format, so such a document is refused (the batch annotator reports it and goes on); JSONL,
    CSV and BioC output keep any id.
    """
    if bad := sorted({c for c in doc_id if c in _ID_BREAKERS}):
        return (f"id {doc_id!r} holds {', '.join(map(repr, bad))}, which PubTator cannot represent "
                "(choose --format jsonl, csv or bioc for such ids)")
    if not doc_id:
        return "empty id, which PubTator cannot represent"
    return None


def format_pubtator(annotation: Annotation, document: Document) -> str:
    """One PubTator block (with its trailing blank line) for an annotated document.

    A document with a title (``title_end``) is split back into its ``|t|`` and ``|a|`` lines; a
    plain-text document is written whole as the title with an empty abstract, so that offsets over
    ``title + " " + abstract`` still point at the same characters. ValueError for an id PubTator
    cannot hold (:func:`pubtator_id_problem`): never a block that reads back as something else.
    """
    if (problem := pubtator_id_problem(document.id)) is not None:
        raise ValueError(problem)
    text = _one_line(document.text)
    if document.title_end is None:
        title, abstract = text, ""
    else:
        title, abstract = text[: document.title_end], text[document.title_end + 1:]
    lines = [f"{document.id}|t|{title}", f"{document.id}|a|{abstract}"]
    lines += [f"{document.id}\t{e.start}\t{e.end}\t{_one_line(e.text)}\t{e.label}\t{format_ids(e.ids)}"
              for e in annotation.entities]
    return "\n".join(lines) + "\n\n"
