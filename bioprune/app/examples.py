"""Example abstracts for the Annotate tab: ``bioprune/app/abstracts/*.txt``, one abstract per file.

They ship inside the package (package data), so an installed app finds them without a checkout.
Most are written for the app in PubMed style (fictional studies); one is a MEDLINE abstract chosen
because recovery triggers on it. ``bioprune/app/abstracts/SOURCES.md`` says where each comes from; the
BC5CDR corpora are read by the training scripts and never copied into the repository.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
MAX_LABEL_CHARS = 60


@dataclass(frozen=True)
class Example:
    label: str  # the abstract's title (its first sentence), shortened for a button
    text: str


def example_label(text: str) -> str:
    """The title of an abstract (up to its first ". "), cut to a button-sized label."""
    title = text.split(". ", 1)[0].rstrip(".")
    return title if len(title) <= MAX_LABEL_CHARS else title[: MAX_LABEL_CHARS - 1].rstrip() + "…"


def load_examples(directory: str | Path) -> list[Example]:
    """Every non-empty ``*.txt`` in ``directory``, sorted by file name; [] when there is none."""
    directory = Path(directory)
    texts = (path.read_text(encoding="utf-8").strip() for path in sorted(directory.glob("*.txt")))
    examples = [Example(label=example_label(text), text=text) for text in texts if text]
    if not examples:
        logger.warning("no example abstracts in %s", directory)
    return examples
