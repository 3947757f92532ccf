"""spaCy component ``bioprune_ner``: chemicals and diseases as ``doc.ents``, pruning engine underneath.

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("bioprune_ner")          # found through the spacy_factories entry point
    doc = nlp("Famotidine-associated delirium.")
    [(ent.text, ent.label_, ent._.bioprune_confidence) for ent in doc.ents]

spaCy imports this package (through the entry point) for every pipeline it builds, so importing it
loads nothing beyond spaCy: bioprune and transformers are imported only when the component is created.
"""
from spacy_component.colors import DISPLACY_COLORS
from spacy_component.engine_source import EngineSource
from spacy_component.errors import AlignmentWarning, ConfigError
from spacy_component.extensions import EXTENSIONS
from spacy_component.factory import DEFAULT_CONFIG, ComponentSettings, make_bioprune_ner
from spacy_component.pipe import DEFAULT_LABELS, BioPruneNER

__all__ = ["BioPruneNER", "make_bioprune_ner", "ComponentSettings", "EngineSource", "ConfigError",
           "AlignmentWarning", "DEFAULT_CONFIG", "DEFAULT_LABELS", "DISPLACY_COLORS", "EXTENSIONS"]
