"""Concept identifiers in and out of the file formats: ``D003924`` inside bioprune, ``MESH:D003924`` on disk.

An entity's ``ids`` are bare MeSH UIs (as in the BC5CDR gold); a composite mention ("breast and
ovarian cancer") has several. Writers spell them the PubTator3 way, ``MESH:D001943|MESH:D010051``,
and ``-`` for none; readers accept that, bare IDs, and BC5CDR's ``-1`` for none.
"""
from __future__ import annotations

from collections.abc import Sequence

NO_ID = "-"  # no concept (PubTator3); BC5CDR writes "-1"
MESH_PREFIX = "MESH:"
_NONE = frozenset({"", "-", "-1"})


def format_ids(ids: Sequence[str], prefix: str = MESH_PREFIX) -> str:
    """``("D1", "D2")`` -> ``"MESH:D1|MESH:D2"``; no IDs -> ``"-"``."""
    return "|".join(prefix + i for i in ids) if ids else NO_ID


def parse_ids(field: str) -> tuple[str, ...]:
    """The bare IDs of an identifier field (:func:`format_ids`' output, BC5CDR's or bare IDs), in
    order; ``()`` for ``-``, ``-1`` or an empty field."""
    found = (i.strip() for i in field.split("|"))
    return tuple(i[len(MESH_PREFIX):] if i.startswith(MESH_PREFIX) else i for i in found if i not in _NONE)
