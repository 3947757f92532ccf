"""PubMed / MEDLINE XML reader, streamed with ``iterparse`` and cleared as it goes.

Reads ``PubmedArticleSet`` (today's baseline, E-utilities efetch) and the legacy
``MedlineCitationSet`` layout, plain or gzipped. Text layout, fixed so offsets are stable:

    ArticleTitle + " " + section_1 + " " + section_2 ...

where a section is its ``AbstractText`` text with inline markup flattened (``<i>``, ``<sup>``, ...),
prefixed by ``"LABEL: "`` when the section has a ``Label`` attribute (structured abstracts, as
PubMed displays them). A title-only citation is just its title. ``DeleteCitation`` entries name
PMIDs to delete, not documents: they are skipped here.
"""
from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from bioprune.errors import InputError
from bioprune.types import Document


def _text(element) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def citation_document(citation) -> Document:
    """A Document from a ``MedlineCitation`` element."""
    pmid = (citation.findtext("PMID") or "").strip()
    title = _text(citation.find("Article/ArticleTitle"))
    sections = []
    for section in citation.findall("Article/Abstract/AbstractText"):
        body = _text(section)
        label = section.get("Label")
        if body:
            sections.append(f"{label}: {body}" if label else body)
    text = " ".join([title, *sections]) if sections else title
    return Document(id=pmid, text=text, title_end=len(title))


def iter_pubmed_xml(path: str | Path) -> Iterator[Document]:
    """Yield one Document per ``MedlineCitation`` in file order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for _, element in ET.iterparse(handle, events=("end",)):
                if element.tag == "MedlineCitation":
                    yield citation_document(element)
                    element.clear()
                elif element.tag in ("PubmedArticle", "DeleteCitation"):
                    element.clear()
    except ET.ParseError as err:
        raise InputError(str(path), f"malformed XML: {err}", err.position[0]) from None
    except (OSError, EOFError) as err:
        raise InputError(str(path), f"cannot read: {err}") from None
