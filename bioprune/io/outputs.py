"""Output formats for the batch annotator: a header, chunks of formatted documents, a footer.

Each format turns a chunk of (Annotation, Document) pairs into text; ``first_index`` is the
position of the chunk's first document in the whole output, so formats with separators (BioC JSON)
or a header row (CSV) write the same bytes however the run was cut into chunks or resumed.
``problem(document)`` says why a document cannot be written in the format (None when it can): the
batch annotator reports such a document as a failed record, before annotating it, and goes on.

    pubtator  one |t|/|a| block per document plus its mention lines (bioprune.io.pubtator)
    jsonl     one {"id", "text", "entities", "trace"?} object per line (bioprune.io.jsonl)
    bioc      a BioC JSON collection, one document per line (bioprune.io.bioc)
    csv       one row per entity, a row with empty entity columns for a document without any
              (bioprune.io.csv_table)
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bioprune.errors import InputError
from bioprune.io.bioc import BioCJsonOutput
from bioprune.io.csv_table import CsvOutput
from bioprune.io.jsonl import format_jsonl
from bioprune.io.pubtator import format_pubtator, pubtator_id_problem
from bioprune.types import Annotation, Document

OUTPUT_FORMATS: tuple[str, ...] = ("pubtator", "jsonl", "csv", "bioc")


class OutputFormat(Protocol):
    name: str
    extension: str  # file name ending for sharded (Ray) outputs

    def header(self) -> str: ...

    def problem(self, document: Document) -> str | None: ...

    def format(self, pairs: Iterable[tuple[Annotation, Document]], first_index: int) -> str: ...

    def footer(self) -> str: ...


class LineOutput:
    """A format with no header or footer: each document formats on its own.

    ``checker(document)`` says why a document cannot be written (None: it can); default: any can.
    """

    def __init__(self, name: str, extension: str, formatter, checker=None):
        self.name, self.extension, self._formatter, self._checker = name, extension, formatter, checker

    def header(self) -> str:
        return ""

    def problem(self, document: Document) -> str | None:
        return self._checker(document) if self._checker is not None else None

    def format(self, pairs: Iterable[tuple[Annotation, Document]], first_index: int) -> str:
        return "".join(self._formatter(annotation, document) for annotation, document in pairs)

    def footer(self) -> str:
        return ""


def output_format(name: str) -> OutputFormat:
    """The writer for a format of :data:`OUTPUT_FORMATS`; an unknown name is an InputError listing them."""
    makers = {"pubtator": lambda: LineOutput("pubtator", ".pubtator", format_pubtator,
                                             lambda doc: pubtator_id_problem(doc.id)),
              "jsonl": lambda: LineOutput("jsonl", ".jsonl", format_jsonl), "csv": CsvOutput, "bioc": BioCJsonOutput}
    if name not in makers:
        raise InputError("--format", f"unknown output format {name!r}; one of {', '.join(OUTPUT_FORMATS)}")
    return makers[name]()
