"""Input documents from files in any supported format, told apart by content.

Formats (``--input-format``; ``auto`` sniffs the first 64 KiB, gunzipped if the file is gzip):

- ``pubmed``: PubMed/MEDLINE XML (root ``PubmedArticleSet`` or ``MedlineCitationSet``), see
  :mod:`bioprune.io.pubmed_xml` for the text layout.
- ``bioc``: BioC XML (root ``collection``) or BioC JSON (an object with ``documents``).
- ``jsonl``: one JSON object per line (``{"id","text"}`` or ``{"pmid","title","abstract"}``).
- ``pubtator``: the first non-blank line is a ``PMID|t|title`` line (mention lines in the input
  are parsed and checked but not used for prediction).
- ``text``: anything else; every non-blank line is a document whose id is its 1-based line number;
  blank lines are skipped.

:func:`iter_records` is lenient (the batch annotator): a bad record becomes a
:class:`~bioprune.io.records.RecordError` and reading goes on; an empty file, or one without any
record, is one RecordError.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from bioprune.errors import InputError
from bioprune.io.bioc import iter_bioc_json_records, iter_bioc_xml_records
from bioprune.io.compression import GZIP_MAGIC, open_binary
from bioprune.io.jsonl import iter_jsonl_records
from bioprune.io.pubtator import PubTatorDocument, iter_pubtator_records
from bioprune.io.records import Record, RecordError
from bioprune.types import Document

INPUT_FORMATS: tuple[str, ...] = ("auto", "pubtator", "pubmed", "bioc", "jsonl", "text")
SNIFF_BYTES = 1 << 16
_PUBTATOR_HEAD = re.compile(r"^[^|\t]+\|t\|")
_XML_NAME = re.compile(r"<([^\s>/]+)")


def _head(path: Path) -> bytes:
    """Up to SNIFF_BYTES of the (gunzipped) content; what can be decompressed of a truncated gzip."""
    with open(path, "rb") as handle:
        raw = handle.read(SNIFF_BYTES)
        if not raw.startswith(GZIP_MAGIC):
            return raw
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = b""
        try:
            while raw and len(out) < SNIFF_BYTES:
                out += inflate.decompress(raw, SNIFF_BYTES - len(out))
                raw = inflate.unconsumed_tail or handle.read(SNIFF_BYTES)
                if inflate.eof:
                    break
        except zlib.error:
            pass
        return out


def xml_root(text: str) -> str | None:
    """The name of the first element (after the XML declaration, comments and DOCTYPE)."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    for match in _XML_NAME.finditer(text):
        name = match.group(1)
        if not name.startswith(("?", "!")):
            return name
    return None


def detect_format(path: str | Path) -> str:
    """'pubmed', 'bioc', 'jsonl', 'pubtator' or 'text' from the content (see the module docstring);
    'xml' for XML whose root is neither PubMed's nor BioC's."""
    from bioprune.io.pubmed_xml import ROOTS

    path = Path(path)
    text = _head(path).decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("<"):
        root = xml_root(stripped)
        return "pubmed" if root in ROOTS else "bioc" if root == "collection" else "xml"
    if stripped.startswith("{"):
        first = stripped.split("\n", 1)[0]
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:  # a pretty-printed object, or a long first line cut by the sniff
            name = path.name.lower()
            return "jsonl" if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")) else "bioc"
        return "bioc" if isinstance(obj, dict) and "documents" in obj else "jsonl"
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    return "pubtator" if _PUBTATOR_HEAD.match(first_line) else "text"


def iter_text_records(path: str | Path) -> Iterator[Record]:
    """Plain text: one Document per non-blank line (id = line number); bad UTF-8 is a RecordError."""
    with open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                yield RecordError(str(path), f"not valid UTF-8 ({err.reason} at byte {err.start} of the line)",
                                  str(line_no), line_no)
                continue
            if line.strip():
                yield Document(id=str(line_no), text=line)


def _readers():
    from bioprune.io.pubmed_xml import iter_pubmed_records  # lxml: only when reading

    def bioc(path: Path) -> Iterator[Record]:
        head = _head(path).decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
        return (iter_bioc_xml_records if head.startswith("<") else iter_bioc_json_records)(path)

    return {"pubtator": lambda path: (r.to_document() if isinstance(r, PubTatorDocument) else r for r in iter_pubtator_records(path)),
            "pubmed": iter_pubmed_records, "bioc": bioc,
            "jsonl": iter_jsonl_records, "text": iter_text_records}


def iter_records(path: str | Path, fmt: str = "auto") -> Iterator[Record]:
    """Every record of one file, in order; never raises for bad content (see the module docstring).

    A missing file raises InputError (the CLI checks inputs before it starts).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    source = str(path)
    if path.stat().st_size == 0:
        yield RecordError(source, "empty file: no documents")
        return
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; one of {INPUT_FORMATS}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "xml":
        root = xml_root(_head(path).decode("utf-8", errors="replace"))
        yield RecordError(source, f"XML root <{root}> is neither PubMed's (PubmedArticleSet, "
                          "MedlineCitationSet) nor BioC's (collection)", None, 1)
        return
    n = 0
    try:
        for record in _readers()[fmt](path):
            n += 1
            yield record
    except (EOFError, zlib.error) as err:  # gzip cut short under a line-based reader
        n += 1
        yield RecordError(source, f"truncated or corrupt gzip data ({err}); the rest of the file is skipped")
    if n == 0:
        yield RecordError(source, f"no documents found (read as {fmt})")
