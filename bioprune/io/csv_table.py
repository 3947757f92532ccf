"""CSV output (the standard library's ``csv``): one row per entity, and one row for a document without entities.

Columns: ``id, start, end, label, text, score, ids`` (``ids``: ``MESH:D003924``, ``|`` between the
IDs of a composite mention, empty when none or linking is off). A document without entities has one row with its
id and the entity columns empty, so every input document appears in the file, in input order,
exactly once as a group of consecutive rows. ``start``/``end`` are 0-based, end-exclusive
character offsets into the document text (the same text the other formats write).

    import pandas as pd
    table = pd.read_csv("out.csv", dtype={"id": str}, keep_default_na=False, na_values={"start": [""]})
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from bioprune.identifiers import format_ids
from bioprune.types import Annotation, Document

COLUMNS = ("id", "start", "end", "label", "text", "score", "ids")


class CsvOutput:
    """The header row is written once, at the start; chunks are rows only."""

    name = "csv"
    extension = ".csv"

    def header(self) -> str:
        return ",".join(COLUMNS) + "\n"

    def problem(self, document: Document) -> str | None:
        return None  # CSV quotes any id (commas, quotes, tabs, line breaks)

    def format(self, pairs: Iterable[tuple[Annotation, Document]], first_index: int) -> str:
        rows = []
        for annotation, document in pairs:
            if not annotation.entities:
                rows.append((document.id, None, None, "", "", None, ""))
            rows += [(document.id, int(e.start), int(e.end), e.label, e.text, float(e.score),
                      format_ids(e.ids) if e.ids else "")
                     for e in annotation.entities]
        parts, start = [], 0
        for i, row in enumerate(rows):
            if any(isinstance(value, str) and "\r" in value for value in row):  # see _to_csv
                parts += [_to_csv(rows[start:i]), _to_csv([row], csv.QUOTE_NONNUMERIC)]
                start = i + 1
        parts.append(_to_csv(rows[start:]))
        return "".join(parts)

    def footer(self) -> str:
        return ""


def _to_csv(rows: list[tuple], quoting: int = csv.QUOTE_MINIMAL) -> str:
    """Rows as CSV text (``None`` as an empty field). Python's csv writer quotes a field holding a
    line feed but not one holding a lone carriage return, which every CSV reader then takes for a
    line break: a row with a ``\r`` anywhere is written with its text fields quoted
    (``QUOTE_NONNUMERIC``). The choice is per row, so the bytes do not depend on how the run was
    cut into chunks."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerows(rows)
    return buffer.getvalue()
