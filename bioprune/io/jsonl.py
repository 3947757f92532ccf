"""JSON Lines output: one ``{"id", "text", "entities": [{start, end, label, text, score}]}`` per line."""
from __future__ import annotations

import json

from bioprune.types import Annotation, Document


def format_jsonl(annotation: Annotation, document: Document) -> str:
    return json.dumps(annotation.to_dict(), ensure_ascii=False) + "\n"
