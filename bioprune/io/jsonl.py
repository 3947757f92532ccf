"""JSON Lines: input records and the ``{"id", "text", "entities": [...]}`` output.

Input, one JSON object per non-blank line, in one of three shapes::

    {"id": "doc-1", "text": "Famotidine-associated delirium."}          text as given
    {"pmid": "123", "title": "A title.", "abstract": "An abstract."}     text = title + " " + abstract
    {"id": "123", "passages": [{"offset": 0, "text": ...}, ...]}        a BioC document (see bioc.py)

With ``title``/``abstract`` the layout is PubTator's: ``title + " " + abstract`` with the title
ending at ``title_end``; a missing, null or empty abstract leaves the title alone. Ids may be
strings or integers. Extra keys are ignored, so bioprune's own JSONL output reads back as input.
A line that is not valid UTF-8 or JSON, or has none of these shapes, is a
:class:`~bioprune.io.records.RecordError` naming its line; reading goes on.

Output: one ``{"id", "text", "entities": [{start, end, label, text, score, ids}], "trace"?}`` per line
(``ids``: bare MeSH IDs, ``[]`` when none or linking is off; ``trace`` only when pruning is on).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from bioprune.io.bioc import bioc_document
from bioprune.io.compression import open_binary
from bioprune.io.records import Record, RecordError
from bioprune.types import Annotation, Document


def format_jsonl(annotation: Annotation, document: Document) -> str:
    return json.dumps(annotation.to_dict(), ensure_ascii=False) + "\n"


def iter_jsonl_records(path: str | Path) -> Iterator[Record]:
    """One Document or RecordError per non-blank line, in order."""
    source = str(path)
    with open_binary(path) as handle:  # gzipped or not
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RecordError(source, f"not valid UTF-8 ({err.reason} at byte {err.start} of the line)",
                                  None, line_no)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield RecordError(source, f"not valid JSON ({err.msg} at column {err.colno})", None, line_no)
                continue
            yield (bioc_document if isinstance(obj, dict) and "passages" in obj else json_document)(
                obj, source, line_no)


def json_document(obj, source: str, line: int | None) -> Document | RecordError:
    """A Document from an ``{"id","text"}`` or ``{"pmid","title","abstract"}`` object."""
    if not isinstance(obj, dict):
        return RecordError(source, f"expected a JSON object, got {type(obj).__name__}", None, line)
    doc_id = obj.get("id", obj.get("pmid"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id).strip() == "":
        return RecordError(source, 'expected an "id" (or "pmid"): a non-empty string or an integer',
                           None, line)
    doc_id = str(doc_id)
    if "text" in obj:
        if not isinstance(obj["text"], str):
            return RecordError(source, '"text" must be a string', doc_id, line)
        return Document(id=doc_id, text=obj["text"])
    if "title" in obj:
        title, abstract = obj["title"], obj.get("abstract")
        if not isinstance(title, str) or not (abstract is None or isinstance(abstract, str)):
            return RecordError(source, '"title" must be a string and "abstract" a string or null', doc_id, line)
        text = f"{title} {abstract}" if abstract else title
        return Document(id=doc_id, text=text, title_end=len(title))
    return RecordError(source, 'expected {"id", "text"} or {"pmid", "title", "abstract"}', doc_id, line)
