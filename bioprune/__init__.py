"""bioprune: chemical and disease NER (BC5CDR types) with a BERT-family token classifier.

    from bioprune import PruningEngine
    engine = PruningEngine.from_pretrained()          # the shipped model, offline
    [ann] = engine.annotate(["Famotidine-associated delirium."])
    ann.entities                                       # (Entity(start=0, end=10, label='Chemical', ...), ...)
"""
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.errors import InputError
from bioprune.types import ENTITY_TYPES, Annotation, Document, Entity

__all__ = ["PruningEngine", "DEFAULT_MODEL_DIR", "InputError", "Annotation", "Document", "Entity", "ENTITY_TYPES"]
__version__ = "0.1.0"
