"""Errors and warnings of the ``bioprune_ner`` component, each one saying how to fix it."""
from __future__ import annotations

import json


class ConfigError(ValueError):
    """A ``bioprune_ner`` setting with a bad value; the message shows a working example."""

    def __init__(self, key: str, value, problem: str, example):
        self.key = key
        self.value = value
        self.example = example  # a value for ``key`` that works
        lines = [f"bioprune_ner: {key} {problem}, got {value!r}.", "A working example:",
                 f'    nlp.add_pipe("bioprune_ner", config={{"{key}": {_python(example)}}})', "or in a .cfg file:"]
        if isinstance(example, dict):
            lines += [f"    [components.bioprune_ner.{key}]"]
            lines += [f"    {k} = {json.dumps(v)}" for k, v in example.items()]
        else:
            lines += ["    [components.bioprune_ner]", f"    {key} = {json.dumps(example)}"]
        super().__init__("\n".join(lines))


def _python(value) -> str:
    """``value`` as Python source, with double-quoted strings like the rest of the example."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python(k)}: {_python(v)}" for k, v in value.items()) + "}"
    return json.dumps(value) if isinstance(value, str) else repr(value)


class AlignmentWarning(UserWarning):
    """Entities that could not be aligned to spaCy tokens were skipped (filter by this category)."""
