"""Errors raised on bad input, carrying where the problem is so the CLI can print one clear line."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input: names the file, the line (1-based, when known) and what is wrong."""

    def __init__(self, source: str, reason: str, line: int | None = None):
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
