"""Opening input files whether or not they are gzipped (told apart by the magic bytes, not the name)."""
from __future__ import annotations

import gzip
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str | Path):
    """The file's bytes, gunzipped when it starts with the gzip magic number."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")
