"""CSV output through pandas: one row per entity, and one row for a document without entities.

Columns: ``id, start, end, label, text, score``. A document without entities has one row with its
id and the entity columns empty, so every input document appears in the file, in input order,
exactly once as a group of consecutive rows. ``start``/``end`` are 0-based, end-exclusive
character offsets into the document text (the same text the other formats write).

    import pandas as pd
    table = pd.read_csv("out.csv", dtype={"id": str}, keep_default_na=False, na_values={"start": [""]})
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from bioprune.types import Annotation, Document

COLUMNS = ("id", "start", "end", "label", "text", "score")


class CsvOutput:
    """The header row is written once, at the start; chunks are rows only."""

    name = "csv"
    extension = ".csv"

    def header(self) -> str:
        return ",".join(COLUMNS) + "\n"

    def format(self, pairs: Iterable[tuple[Annotation, Document]], first_index: int) -> str:
        rows = []
        for annotation, document in pairs:
            if not annotation.entities:
                rows.append((document.id, None, None, "", "", None))
            rows += [(document.id, e.start, e.end, e.label, e.text, e.score) for e in annotation.entities]
        if not rows:
            return ""
        table = pd.DataFrame(rows, columns=list(COLUMNS)).astype(
            {"id": str, "start": "Int64", "end": "Int64", "label": str, "text": str, "score": "Float64"})
        return table.to_csv(index=False, header=False, lineterminator="\n")

    def footer(self) -> str:
        return ""
