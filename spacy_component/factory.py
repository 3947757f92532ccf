"""The ``bioprune_ner`` factory: spaCy config → validated settings → engine source → pipe.

A factory function (config → objects) kept apart from the ``Pipe`` class (objects → behaviour), as
in spacy-huggingface-pipelines. spaCy checks each setting's type from the signature below; this
module checks the values and answers a bad one with an error that shows a working example.

This module is imported by spaCy through the ``spacy_factories`` entry point whenever *any*
pipeline is created, so it must stay cheap to import: bioprune (torch, transformers) is imported
only when the factory actually runs.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Optional

from spacy.language import Language

from spacy_component.engine_source import EngineSource
from spacy_component.errors import ConfigError
from spacy_component.pipe import DEFAULT_LABELS, MODEL_DIR, BioPruneNER

logger = logging.getLogger(__name__)

# nlp.meta[META_KEY]["model_files"]: pipe name -> its model folder inside a saved pipeline. Written
# when the component is added, so a pipeline saved with it says its model travels with it.
META_KEY = "bioprune"

Controller = Literal["default", "none", "rule", "mlp"]
CONTROLLERS: tuple[str, ...] = ("default", "none", "rule", "mlp")
AlignmentMode = Literal["strict", "contract", "expand"]
ALIGNMENT_MODES: tuple[str, ...] = ("strict", "contract", "expand")

# spaCy needs the defaults when this module is imported, before bioprune is; min_keep_ratio and
# recovery mirror PruningConfig's defaults (a test keeps them in step).
DEFAULT_CONFIG = {
    "model": None,  # a model directory (training/, save_pretrained) or Hub id; None (null in a .cfg): the shipped model
    "controller": "default",  # "default": the engine's default (dense; pruning is opt-in)
    # pruning aggressiveness λ (`lambda` is a Python keyword, so spaCy cannot take it);
    # None (null in a .cfg): the controller's operating point (rule 2, mlp 6; bioprune.config.OPERATING_POINTS)
    "lambda_": None,
    "min_keep_ratio": 0.3,  # at least this fraction of each sequence's tokens runs every layer
    "recovery": False,  # re-insert pruned tokens and re-run when the pruned result looks unsafe
    "batch_size": 16,  # sequences (≤512-token windows) per forward pass
    "device": "cpu",  # torch device string: "cpu", "cuda", "cuda:1", ...
    "labels": dict(DEFAULT_LABELS),  # engine type -> spaCy label, as in scispaCy's BC5CDR model
    "alignment_mode": "expand",  # how character spans snap to spaCy tokens (Doc.char_span)
    "overwrite_ents": False,  # True: our entities replace overlapping doc.ents; False: existing win
}


@dataclass(frozen=True)
class ComponentSettings:
    """Every ``bioprune_ner`` setting, checked on construction (see :data:`DEFAULT_CONFIG`)."""

    model: Optional[str] = None
    controller: Controller = "default"
    lambda_: Optional[float] = None
    min_keep_ratio: float = 0.3
    recovery: bool = False
    batch_size: int = 16
    device: str = "cpu"
    labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    alignment_mode: AlignmentMode = "expand"
    overwrite_ents: bool = False

    def __post_init__(self):
        from bioprune.types import ENTITY_TYPES

        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError("model", self.model, "must be a model directory, a Hub id or None (the shipped model)",
                              None)
        if self.controller not in CONTROLLERS:
            raise ConfigError("controller", self.controller, f"must be one of {_quoted(CONTROLLERS)}", "default")
        if self.lambda_ is not None and (isinstance(self.lambda_, bool) or not isinstance(self.lambda_, (int, float))
                                         or not self.lambda_ >= 0):
            raise ConfigError("lambda_", self.lambda_, "(pruning aggressiveness λ) must be a number >= 0", 1.0)
        if isinstance(self.min_keep_ratio, bool) or not isinstance(self.min_keep_ratio, (int, float)) \
                or not 0.0 <= self.min_keep_ratio <= 1.0:
            raise ConfigError("min_keep_ratio", self.min_keep_ratio, "must be a fraction in [0, 1]", 0.3)
        if not isinstance(self.recovery, bool):
            raise ConfigError("recovery", self.recovery, "must be true or false", True)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("batch_size", self.batch_size, "must be a whole number >= 1", 16)
        _check_device(self.device)
        if not isinstance(self.labels, Mapping) or set(self.labels) != set(ENTITY_TYPES) \
                or not all(isinstance(v, str) and v.strip() for v in self.labels.values()):
            raise ConfigError("labels", dict(self.labels) if isinstance(self.labels, Mapping) else self.labels,
                              f"must map each of {_quoted(ENTITY_TYPES)} to a non-empty spaCy label",
                              dict(DEFAULT_LABELS))
        if self.alignment_mode not in ALIGNMENT_MODES:
            raise ConfigError("alignment_mode", self.alignment_mode, f"must be one of {_quoted(ALIGNMENT_MODES)}",
                              "expand")
        if not isinstance(self.overwrite_ents, bool):
            raise ConfigError("overwrite_ents", self.overwrite_ents, "must be true or false", False)
        object.__setattr__(self, "labels", dict(self.labels))
        self.engine_source()  # the pruning settings must make a valid PruningConfig

    def engine_source(self) -> EngineSource:
        """Where and how the engine will be loaded (it loads when first needed)."""
        return EngineSource(model_dir=self.model, device=self.device, controller=self.controller,
                            aggressiveness=None if self.lambda_ is None else float(self.lambda_),
                            min_keep_ratio=float(self.min_keep_ratio),
                            recovery=self.recovery)


@Language.factory(
    "bioprune_ner",
    default_config=DEFAULT_CONFIG,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bioprune_ner(nlp: Language, name: str, model: Optional[str], controller: str, lambda_: Optional[float],
                      min_keep_ratio: float, recovery: bool, batch_size: int, device: str,
                      labels: dict[str, str], alignment_mode: str, overwrite_ents: bool) -> BioPruneNER:
    """Validate the config and build the pipe over a lazily loaded engine.

    The choices (``controller``, ``alignment_mode``) are plain ``str`` here and ``Literal`` in
    :class:`ComponentSettings`, so a wrong choice reaches our error, with its working example,
    rather than spaCy's generic type error.

    ``model`` is checked here, cheaply (:meth:`EngineSource.checked`: the directory and its
    config.json, or the Hub id, fetched once), so a wrong value stops ``add_pipe``. The weights are
    read on first use (or by ``nlp.initialize()``). When ``spacy.load`` rebuilds a saved pipeline
    (its meta lists this component under :data:`META_KEY`), ``model`` is not checked: ``from_disk``
    then reads the copy saved beside the pipeline and never the original, which need not exist on
    the loading machine.

    Also records in ``nlp.meta`` that the pipeline needs bioprune (``requirements``), as spaCy
    records spaCy's own version, so the saved ``meta.json`` says what to install.
    """
    settings = ComponentSettings(model=model, controller=controller, lambda_=lambda_,
                                 min_keep_ratio=min_keep_ratio, recovery=recovery, batch_size=batch_size,
                                 device=device, labels=labels, alignment_mode=alignment_mode,
                                 overwrite_ents=overwrite_ents)
    source = settings.engine_source()
    if name in nlp.meta.get(META_KEY, {}).get("model_files", {}):
        logger.debug("%s: model files come from the saved pipeline (from_disk), %r is not read", name, model)
    else:
        source = source.checked()
    _record_in_meta(nlp.meta, name)
    return BioPruneNER(nlp.vocab, source, name=name, labels=settings.labels,
                       batch_size=settings.batch_size, alignment_mode=settings.alignment_mode,
                       overwrite_ents=settings.overwrite_ents)


def _record_in_meta(meta: dict, name: str) -> None:
    """Add ``bioprune>=<version>`` to ``meta["requirements"]`` and this pipe's saved model folder under
    :data:`META_KEY` (both idempotent; an existing bioprune requirement is kept as it is)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("bioprune")
    except PackageNotFoundError:  # a source tree that was never installed
        installed = None
    requirements = meta.setdefault("requirements", [])
    if installed and not any(_requirement_name(r) == "bioprune" for r in requirements):
        requirements.append(f"bioprune>={installed}")
    meta.setdefault(META_KEY, {}).setdefault("model_files", {})[name] = f"{name}/{MODEL_DIR}"


def _check_device(device) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError("device", device, 'must be a torch device string such as "cpu" or "cuda"', "cpu") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "asks for CUDA, which this torch cannot use", "cpu")


def _requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string ("bioprune>=0.1" -> "bioprune")."""
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def _quoted(values) -> str:
    return ", ".join(repr(v) for v in values)
