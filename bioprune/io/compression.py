"""Opening input files: gunzipped when they are gzip (told apart by the magic bytes, not the name),
without a leading UTF-8 byte-order mark, and keeping every byte a truncated gzip still holds; for
the XML readers, bytes that are not UTF-8 read as U+FFFD (:func:`utf8_repaired`).

Every reader (PubTator, PubMed XML, BioC, JSONL, plain text) opens its file through
:func:`open_binary`, so these rules hold for every input format alike.
"""
from __future__ import annotations

import codecs
import gzip
import io
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

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


_XML_ENCODING = re.compile(rb"""<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class Utf8Repaired(io.RawIOBase):
    """An XML file's bytes with each byte sequence that is not UTF-8 replaced by U+FFFD.

    libxml2 (2.13 and later, as in lxml 6) checks the encoding of each chunk lxml hands it before
    it reports the elements in it, so one bad byte lost, with the rest of the file, the complete
    records earlier in its 32 KiB. PubMed and BioC XML are UTF-8: the bad byte becomes U+FFFD in its
    own record (a warning at the end of the file counts them) and every other record is read as it is.
    """

    def __init__(self, handle, source: str):
        super().__init__()
        self._handle, self._source = handle, source
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = b""  # the last 2 bytes read: a U+FFFD of the file itself may span two reads
        self.replaced = 0  # U+FFFD written for bad bytes (not those the file holds)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Some bytes, empty only at the end (a read that ends inside a character reads on)."""
        while True:
            data = self._handle.read(-1 if size is None else size)
            text = self._decoder.decode(data, final=not data)
            self.replaced += text.count("\ufffd") - (self._tail + data).count("\ufffd".encode())
            self._tail = (self._tail + data)[-2:]
            if text or not data:
                break
        if not data and self.replaced:
            logger.warning("%s: %d byte sequence(s) that are not UTF-8 read as U+FFFD", self._source, self.replaced)
        return text.encode("utf-8")


def utf8_repaired(handle, source: str):
    """``handle`` (from :func:`open_binary`) as :class:`Utf8Repaired`, unless its XML declaration
    names an encoding other than UTF-8 (then libxml2 decodes it, and reports what it cannot)."""
    declared = _XML_ENCODING.match(handle.peek(200)[:200])
    if declared and declared.group(1).decode("ascii").lower().replace("_", "-") not in ("utf-8", "utf8"):
        return handle
    return Utf8Repaired(handle, source)
