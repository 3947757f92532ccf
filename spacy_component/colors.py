"""displaCy colours for bioprune's entity labels, registered by the ``spacy_displacy_colors`` entry point.

displaCy looks colours up by upper-cased label, so these also cover the engine's own "Chemical"
and "Disease". With other labels (``labels`` in the component config), pass
``options={"colors": {...}}`` to ``displacy.render``.
"""
from __future__ import annotations

DISPLACY_COLORS: dict[str, str] = {
    "CHEMICAL": "#a6e3a1",  # green
    "DISEASE": "#f5a97f",  # orange
}
