"""What a lenient reader yields for each input record: a Document, a RecordError, or a DeletedRecord.

The batch annotator reads every input as a stream of records. A record is a document to annotate, a
malformed record (reported, not annotated, and the run goes on), or a PubMed ``DeleteCitation``
entry (reported, not annotated). Every record lands in exactly one of the output, the error report
or the deletion report, so ``documents + errors + deletions == records``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from bioprune.types import Document


@dataclass(frozen=True)
class RecordError:
    """A record that could not be read: where it is and why. ``record_id``/``line`` when known."""

    source: str  # the input file
    reason: str
    record_id: str | None = None  # the document id (PMID, ...) when it could be read
    line: int | None = None  # 1-based line where the record starts (or where reading failed)

    def to_dict(self) -> dict:
        return {"file": self.source, "record_id": self.record_id, "line": self.line, "reason": self.reason}

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        rid = f" [{self.record_id}]" if self.record_id is not None else ""
        return f"{where}{rid}: {self.reason}"


@dataclass(frozen=True)
class DeletedRecord:
    """A PubMed ``DeleteCitation`` PMID: the citation is to be removed downstream, not annotated."""

    source: str
    record_id: str

    def to_dict(self) -> dict:
        return {"file": self.source, "record_id": self.record_id}


Record = Union[Document, RecordError, DeletedRecord]
