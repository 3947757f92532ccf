"""Opening input files: gunzipped when they are gzip (told apart by the magic bytes, not the name),
without a leading UTF-8 byte-order mark, and keeping every byte a truncated gzip still holds.

Every reader (PubTator, PubMed XML, BioC, JSONL, plain text) opens its file through
:func:`open_binary`, so these rules hold for every input format alike.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"  # U+FEFF as UTF-8: Windows tools start "UTF-8" files with it; it is not text


class _GzipStream(io.BufferedIOBase):
    """A gzip file's bytes, where ``read(n)`` returns what one decompression step gives (at most n).

    ``gzip.GzipFile.read(n)`` gathers several steps to fill ``n`` bytes; when the file is cut short,
    the step that meets the end raises EOFError and the bytes gathered before it go with it, so a
    record complete in the readable data was lost (lxml reads 32 KiB at a time). Here each call does
    one step: every byte that can be decompressed reaches the reader before the EOFError does.
    ``readline`` (the line-based readers) only loses the unfinished last line, as it should.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self._gz = gzip.open(path, "rb")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self._gz.read1(1 << 16), b""))
        return self._gz.read1(size) if size else b""

    def read1(self, size: int = -1) -> bytes:
        return self._gz.read1(size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._gz.readline(-1 if size is None else size)

    def peek(self, size: int = 0) -> bytes:
        return self._gz.peek(size)

    def close(self) -> None:
        if not self.closed:
            self._gz.close()
        super().close()


def open_binary(path: str | Path):
    """The file's bytes: gunzipped when it starts with the gzip magic number, and with a leading
    UTF-8 BOM skipped (else it stays in the first record: a PubTator id, a JSON line, or text whose
    offsets it would shift by one)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    handle = _GzipStream(path) if gzipped else open(path, "rb")
    try:
        if handle.peek(len(UTF8_BOM))[: len(UTF8_BOM)] == UTF8_BOM:
            handle.read(len(UTF8_BOM))
    except BaseException:
        handle.close()
        raise
    return handle
