"""PubMed / MEDLINE XML reader, streamed with lxml ``iterparse`` and cleared as it goes.

Reads ``PubmedArticleSet`` (today's baseline and update files, E-utilities efetch) and the legacy
``MedlineCitationSet`` layout, plain or gzipped (told apart by the gzip magic bytes, not the name).
Each ``MedlineCitation`` (or ``BookDocument`` of a ``PubmedBookArticle``) is one document, its id
the PMID. The text layout is fixed, so offsets are well defined and stable::

    text = title                                   (no abstract, or only empty sections)
    text = title + " " + " ".join(sections)        (otherwise; title_end = len(title))
    section = "LABEL: " + body  if the AbstractText has a non-empty Label attribute, else body

where ``title`` is ``Article/ArticleTitle`` (``BookTitle`` for books) and ``body`` the section's
``AbstractText``, both with inline markup flattened (``<i>``, ``<sup>``, ``<sub>``, MathML ... keep
their text, drop their tags) and every run of whitespace (line breaks, indentation, no-break
spaces) turned into one space, with none at either end. ``OtherAbstract`` (translations, plain
language summaries) is not read. The labelled form is how PubMed displays structured abstracts.

``DeleteCitation`` entries name PMIDs to delete: they come out as :class:`DeletedRecord`, never as
documents. Memory stays flat: each record's subtree is cleared once read, and earlier siblings are
dropped from the root. XML is well-formed or not as a whole: on a syntax error (truncated file,
bad bytes, broken tag) the records before it are kept, one :class:`RecordError` names the line and
the last PMID read, and the rest of that file is skipped.
"""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from bioprune.errors import InputError
from bioprune.io.compression import open_binary, utf8_repaired
from bioprune.io.records import DeletedRecord, Record, RecordError
from bioprune.types import Document

ROOTS = ("PubmedArticleSet", "MedlineCitationSet")
_RECORD_TAGS = ("MedlineCitation", "BookDocument", "DeleteCitation", "PubmedArticle", "PubmedBookArticle")


def flat_text(element) -> str:
    """An element's text with inline markup flattened and whitespace runs collapsed to one space."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def citation_document(citation) -> Document | RecordError:
    """A Document from a ``MedlineCitation`` or ``BookDocument`` element (a RecordError without PMID)."""
    pmid = flat_text(citation.find("PMID"))
    if not pmid:
        return RecordError("", f"<{citation.tag}> without a PMID", None, citation.sourceline)
    title_el = citation.find("Article/ArticleTitle")
    if title_el is None:  # books: the chapter's ArticleTitle, else the book's title
        title_el = citation.find("ArticleTitle")
        if title_el is None:
            title_el = citation.find("Book/BookTitle")
    title = flat_text(title_el)
    abstract = citation.find("Article/Abstract")
    if abstract is None:
        abstract = citation.find("Abstract")
    sections = []
    for section in abstract.iterfind("AbstractText") if abstract is not None else ():
        body = flat_text(section)
        label = " ".join((section.get("Label") or "").split())
        if body:
            sections.append(f"{label}: {body}" if label else body)
    text = " ".join([title, *sections]) if sections else title
    return Document(id=pmid, text=text, title_end=len(title))


def iter_pubmed_records(path: str | Path) -> Iterator[Record]:
    """Every record of one PubMed XML file in order: Documents, DeletedRecords and RecordErrors."""
    path = Path(path)
    source = str(path)
    last_pmid = None
    try:
        with open_binary(path) as raw:
            handle = utf8_repaired(raw, source)
            for _, element in etree.iterparse(handle, events=("end",), tag=_RECORD_TAGS,
                                              resolve_entities=False, no_network=True, load_dtd=False):
                tag = element.tag
                if tag in ("MedlineCitation", "BookDocument"):
                    root = element.getroottree().getroot().tag
                    if root not in ROOTS:
                        yield RecordError(source, f"not a PubMed XML file: root element <{root}>, expected "
                                          f"<{ROOTS[0]}> or <{ROOTS[1]}>", None, 1)
                        return
                    record = citation_document(element)
                    if isinstance(record, RecordError):
                        record = RecordError(source, record.reason, None, record.line)
                    else:
                        last_pmid = record.id
                    yield record
                elif tag == "DeleteCitation":
                    for pmid in element.iterfind("PMID"):
                        yield DeletedRecord(source, flat_text(pmid))
                if element.getparent() is not None and element.getparent().getparent() is None:
                    drop_element(element)  # a child of the root: the whole record is read
    except etree.XMLSyntaxError as err:
        yield RecordError(source, f"malformed XML ({err.msg}); the rest of the file is skipped"
                          + (f" (last PMID read: {last_pmid})" if last_pmid else ""), None, err.lineno)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        yield RecordError(source, f"truncated or corrupt gzip data ({err}); the rest of the file is skipped"
                          + (f" (last PMID read: {last_pmid})" if last_pmid else ""))


def drop_element(element) -> None:
    """Free a read record (PubMed's or BioC's): clear its subtree and delete its parent's earlier children."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    while element.getprevious() is not None:
        del parent[0]


def iter_pubmed_xml(path: str | Path) -> Iterator[Document]:
    """Yield one Document per citation in file order; InputError on the first malformed record.

    The strict reader (for training scripts): deletions are skipped, any error stops the read.
    """
    for record in iter_pubmed_records(path):
        if isinstance(record, RecordError):
            raise InputError(record.source, record.reason, record.line)
        if isinstance(record, Document):
            yield record
