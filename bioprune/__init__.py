"""bioprune: chemical and disease NER (BC5CDR types) with a BERT-family token classifier that prunes tokens.

    from bioprune import PruningEngine, PruningConfig
    engine = PruningEngine.from_pretrained()          # the shipped model, offline; pruning after layer 3
    engine = engine.with_config(PruningConfig(controller="none"))   # same weights, dense
    [ann] = engine.annotate(["Famotidine-associated delirium."])
    ann.entities                                       # (Entity(start=0, end=10, label='Chemical', ...), ...)
    ann.trace                                          # what pruning did: pruned tokens, recoveries, FLOPs

Everything a user of the engine touches is importable from here; ``__all__`` is that list (the
README and docs/ use nothing else from the core, and tests/test_docs.py runs their examples).
"""
from importlib.metadata import PackageNotFoundError, version

from bioprune.config import DEFAULT, DENSE, FAITHFUL, IgnoredSettingWarning, PruningConfig
from bioprune.errors import InputError
from bioprune.types import ENTITY_TYPES, Annotation, Document, Entity, PrunedToken, RecoveryEvent, Trace

try:  # pyproject.toml's version is the only one: read it from the installed package's metadata
    __version__ = version("bioprune")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "PruningEngine", "PruningConfig", "DEFAULT", "DENSE", "FAITHFUL", "DEFAULT_MODEL_DIR",
    "Annotation", "Document", "Entity", "Trace", "PrunedToken", "RecoveryEvent", "ENTITY_TYPES",
    "InputError", "IgnoredSettingWarning", "__version__",
]


def __getattr__(name: str):
    """The engine (torch, transformers) loads on first use, so ``bioprune.config`` and
    ``bioprune.options`` stay cheap to import (spaCy imports the component's factory, and with it
    the settings, whenever any pipeline is built)."""
    if name in ("PruningEngine", "DEFAULT_MODEL_DIR"):
        from bioprune import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'bioprune' has no attribute {name!r}")
