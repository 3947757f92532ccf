"""Input documents from files: PubTator or plain text (one document per line), told apart by content.

Plain text: every non-blank line is a document whose id is its 1-based line number; blank lines
separate nothing and are skipped. PubTator: see :mod:`bioprune.io.pubtator` (mention lines in the
input are parsed and checked but not used for prediction).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from bioprune.errors import InputError
from bioprune.io.pubtator import iter_pubtator
from bioprune.types import Document

InputFormat = Literal["auto", "pubtator", "text"]
_PUBTATOR_HEAD = re.compile(r"^[^|\t]+\|t\|")


def detect_format(path: Path) -> str:
    """'pubtator' if the first non-blank line is a ``PMID|t|`` line, else 'text'."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    return "pubtator" if _PUBTATOR_HEAD.match(line) else "text"
    except UnicodeDecodeError:
        return "text"  # the text reader reports the line with the bad bytes
    return "text"


def iter_text(path: Path) -> Iterator[Document]:
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise InputError(str(path), f"not valid UTF-8 ({err.reason} at byte {err.start} "
                                 "of the line)", line_no) from None
            if line.strip():
                yield Document(id=str(line_no), text=line)


def iter_documents(path: str | Path, fmt: InputFormat = "auto") -> Iterator[Document]:
    """Stream the documents of one file; InputError for a missing or empty file or a bad record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    if path.stat().st_size == 0:
        raise InputError(str(path), "empty file: no documents")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "pubtator":
        return (doc.to_document() for doc in iter_pubtator(path))
    if fmt == "text":
        return iter_text(path)
    raise ValueError(f"unknown input format {fmt!r}")
