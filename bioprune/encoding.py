"""Tokenise documents once, with character offsets and word ids, and cut them into windows.

Pure functions over a Hugging Face *fast* tokenizer; shared by the engine (inference) and
``training/multicorpus.py`` (training), so both see exactly the same tokens and windows.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bioprune.windows import plan_windows

MAX_POSITIONS = 512  # BERT's position limit, [CLS] and [SEP] included
DEFAULT_OVERLAP_TOKENS = 128  # context shared by consecutive windows of a long document


@dataclass(frozen=True)
class EncodedDocument:
    """A document's content tokens (no special tokens) and the windows that cover them."""

    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # character (start, end) per token
    word_ids: tuple[int, ...]  # pre-tokenizer word index per token
    windows: tuple[tuple[int, int], ...]  # half-open token ranges, each <= MAX_POSITIONS - 2


def encode_texts(tokenizer, texts: Sequence[str], max_positions: int = MAX_POSITIONS,
                 overlap_tokens: int = DEFAULT_OVERLAP_TOKENS) -> list[EncodedDocument]:
    """Tokenise ``texts`` (batched, fast tokenizer) and plan each document's windows."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("bioprune needs a fast (Rust) tokenizer for character offsets")
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                    return_attention_mask=False, verbose=False)
    return [EncodedDocument(input_ids=tuple(ids), offsets=tuple(tuple(o) for o in enc["offset_mapping"][i]),
                            word_ids=tuple(-1 if w is None else w for w in enc.word_ids(i)),
                            windows=tuple(plan_windows(len(ids), max_positions - 2, overlap_tokens)))
            for i, ids in enumerate(enc["input_ids"])]


def window_input_ids(doc: EncodedDocument, window: tuple[int, int], cls_id: int, sep_id: int) -> list[int]:
    """Model input for one window: ``[CLS] tokens [SEP]``."""
    start, end = window
    return [cls_id, *doc.input_ids[start:end], sep_id]
