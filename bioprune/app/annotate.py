"""One Annotate-tab request: check the text, run the chosen engine and the dense one, time both.

Pure Python over bioprune (no Gradio): :func:`compare` returns a :class:`Comparison` that
:mod:`bioprune.app.views` turns into what the tab shows.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bioprune.types import Annotation

from bioprune.app.engines import EngineHub, PruningChoice
from bioprune.app.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """The dense and the chosen (pruned) annotation of one text, with their latencies."""

    text: str
    choice: PruningChoice
    dense: Annotation
    dense_s: float
    pruned: Annotation | None  # None when the choice is the dense model
    pruned_s: float | None
    token_offsets: tuple[tuple[int, int], ...]  # character offsets of the document's subword tokens
    dense_tokens: int  # tokens each layer runs on in the dense model ([CLS]/[SEP] of each window included)
    n_layers: int

    @property
    def result(self) -> Annotation:
        """What the chosen setting produced (the dense annotation when it is dense)."""
        return self.pruned if self.pruned is not None else self.dense


def validate_text(text: str | None, max_chars: int) -> str:
    """The text to annotate, or UserError: empty, or longer than ``max_chars``."""
    if text is None or not text.strip():
        raise UserError("Enter some text to annotate (or pick one of the examples).")
    if len(text) > max_chars:
        raise UserError(f"The text is {len(text):,} characters long; this tab accepts at most {max_chars:,} "
                        "(a few abstracts). Upload longer text as a file in the Batch tab, or use "
                        "`bioprune annotate` on the command line.")
    return text


def _timed(engine, text: str) -> tuple[Annotation, float]:
    started = time.perf_counter()
    [annotation] = engine.annotate([text])
    return annotation, time.perf_counter() - started


def compare(hub: EngineHub, text: str, choice: PruningChoice, max_chars: int) -> Comparison:
    """Annotate ``text`` with ``choice`` and with the dense model (same weights), timing each call."""
    text = validate_text(text, max_chars)
    engine = hub.engine_for(choice)  # refuses a bad choice before any work
    pruned, pruned_s = (None, None) if choice.exact else _timed(engine, text)
    dense, dense_s = _timed(hub.dense, text)
    encoded = hub.dense.encode([text])[0]
    dense_tokens = sum(end - start + 2 for start, end in encoded.windows)
    logger.info("annotated %d chars: %s in %.3f s, dense in %.3f s", len(text), choice.describe(),
                pruned_s if pruned_s is not None else dense_s, dense_s)
    return Comparison(text=text, choice=choice, dense=dense, dense_s=dense_s, pruned=pruned, pruned_s=pruned_s,
                      token_offsets=tuple(tuple(o) for o in encoded.offsets), dense_tokens=dense_tokens,
                      n_layers=hub.n_layers)
