"""The ``bioprune_ner`` factory: spaCy config → validated settings → engine source → pipe.

A factory function (config → objects) kept apart from the ``Pipe`` class (objects → behaviour), as
in spacy-huggingface-pipelines. spaCy checks each setting's type from the factory's signature;
this module checks the values and answers a bad one with an error that shows a working example.

The pruning and precision keys (``controller``, ``lambda_``, ``min_keep_ratio``, ``prune_layers``,
``recovery``, ``frozen_context``, ``precision``) are not written here: they are PruningConfig's
face settings (:mod:`bioprune.options`), so a new one reaches the component with no change to it.
spaCy reads a factory's settings from its signature, so the signature is built from them
(:func:`_signature`).

This module is imported by spaCy through the ``spacy_factories`` entry point whenever *any*
pipeline is created, so it must stay cheap to import: ``bioprune.options`` is (no torch); the
engine (torch, transformers) is imported only when the factory actually runs.
"""
from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Optional

from spacy.language import Language

from bioprune.options import DEFAULT_SETTINGS, SETTINGS
from spacy_component.engine_source import EngineSource
from spacy_component.errors import ConfigError
from spacy_component.pipe import DEFAULT_LABELS, MODEL_DIR, BioPruneNER

logger = logging.getLogger(__name__)

# nlp.meta[META_KEY]["model_files"]: pipe name -> its model folder inside a saved pipeline. Written
# when the component is added, so a pipeline saved with it says its model travels with it.
META_KEY = "bioprune"

# "default" is what pipelines saved before the settings came from bioprune.options wrote: the engine's default
LEGACY_CONTROLLER = "default"
AlignmentMode = Literal["strict", "contract", "expand"]
ALIGNMENT_MODES: tuple[str, ...] = ("strict", "contract", "expand")

COMPONENT_DEFAULTS = {
    "model": None,  # a model directory (training/, save_pretrained) or Hub id; None (null in a .cfg): the shipped model
    "batch_size": 16,  # sequences (≤512-token windows) per forward pass
    "device": "cpu",  # torch device string: "cpu", "cuda", "cuda:1", ...
    "labels": dict(DEFAULT_LABELS),  # engine type -> spaCy label, as in scispaCy's BC5CDR model
    "alignment_mode": "expand",  # how character spans snap to spaCy tokens (Doc.char_span)
    "overwrite_ents": False,  # True: our entities replace overlapping doc.ents; False: existing win
}
# The pruning/precision settings, defaults as every face has them (bioprune.config.DEFAULT: dense at the
# device's best precision; lambda_ and prune_layers null: the controller's operating point).
DEFAULT_CONFIG = {"model": None, **DEFAULT_SETTINGS,
                  **{k: v for k, v in COMPONENT_DEFAULTS.items() if k != "model"}}


@dataclass(frozen=True)
class ComponentSettings:
    """Every ``bioprune_ner`` setting, checked on construction (see :data:`DEFAULT_CONFIG`).

    ``pruning``: the face settings of :mod:`bioprune.options` by key (``controller``, ``lambda_``,
    ``precision``, ...); missing ones at their defaults.
    """

    model: Optional[str] = None
    pruning: Mapping[str, object] = field(default_factory=dict)
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
        pruning = {**DEFAULT_SETTINGS, **self.pruning}
        if pruning["controller"] == LEGACY_CONTROLLER:
            pruning["controller"] = DEFAULT_SETTINGS["controller"]
        for setting in SETTINGS:
            _check_setting(setting, pruning[setting.key])
        object.__setattr__(self, "pruning", pruning)
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

    def engine_source(self) -> EngineSource:
        """Where and how the engine will be loaded (it loads when first needed)."""
        from bioprune.options import config_from_values

        return EngineSource(model_dir=self.model, device=self.device, config=config_from_values(self.pruning))


def _check_setting(setting, value) -> None:
    """A ConfigError with a working example when ``value`` is not a valid ``setting``
    (PruningConfig's own checks, made on that setting alone)."""
    from bioprune.config import PruningConfig
    from bioprune.options import config_from_values

    example = setting.default if setting.default is not None else getattr(PruningConfig(controller="rule"),
                                                                           setting.field)
    example = list(example) if isinstance(example, tuple) else example
    if setting.kind == "choice":
        if value not in setting.choices:
            raise ConfigError(setting.key, value, f"must be one of {_quoted(setting.choices)}", example)
        return
    if value is None and setting.default is None:
        return
    wrong_type = {"bool": not isinstance(value, bool),
                  "float": isinstance(value, bool) or not isinstance(value, (int, float)),
                  "layers": not isinstance(value, (list, tuple)) or not all(isinstance(k, int) for k in value)}
    if wrong_type[setting.kind]:
        what = {"bool": "true or false", "float": "a number", "layers": "a list of layer counts"}[setting.kind]
        raise ConfigError(setting.key, value, f"({setting.help}) must be {what}", example)
    try:
        config_from_values({"controller": "rule", setting.key: value})
    except ValueError as e:
        raise ConfigError(setting.key, value, f"({setting.help}) is invalid: {e}", example) from None


def make_bioprune_ner(nlp: Language, name: str, **config) -> BioPruneNER:
    """Validate the config and build the pipe over a lazily loaded engine.

    ``config`` holds :data:`DEFAULT_CONFIG`'s keys (spaCy fills in the defaults and checks the types
    the signature gives, :func:`_signature`). The choices (``controller``, ``alignment_mode``) are
    plain ``str`` there, so a wrong choice reaches our error, with its working example, rather than
    spaCy's generic type error.

    ``model`` is checked here, cheaply (:meth:`EngineSource.checked`: the directory and its
    config.json, or the Hub id, fetched once), so a wrong value stops ``add_pipe``. The weights are
    read on first use (or by ``nlp.initialize()``). When ``spacy.load`` rebuilds a saved pipeline
    (its meta lists this component under :data:`META_KEY`), ``model`` is not checked: ``from_disk``
    then reads the copy saved beside the pipeline and never the original, which need not exist on
    the loading machine.

    Also records in ``nlp.meta`` that the pipeline needs bioprune (``requirements``), as spaCy
    records spaCy's own version, so the saved ``meta.json`` says what to install.
    """
    settings = ComponentSettings(model=config["model"], pruning={k: config[k] for k in DEFAULT_SETTINGS},
                                 **{k: config[k] for k in COMPONENT_DEFAULTS if k != "model"})
    source = settings.engine_source()
    if name in nlp.meta.get(META_KEY, {}).get("model_files", {}):
        logger.debug("%s: model files come from the saved pipeline (from_disk), %r is not read", name, config["model"])
    else:
        source = source.checked()
    _record_in_meta(nlp.meta, name)
    return BioPruneNER(nlp.vocab, source, name=name, labels=settings.labels,
                       batch_size=settings.batch_size, alignment_mode=settings.alignment_mode,
                       overwrite_ents=settings.overwrite_ents)


def _signature() -> tuple[inspect.Signature, dict]:
    """``make_bioprune_ner``'s signature and annotations: nlp, name, then one keyword per key of
    :data:`DEFAULT_CONFIG`, typed (spaCy validates a config against them and rejects other keys)."""
    kinds = {"choice": str, "float": Optional[float], "bool": bool, "layers": Optional[list[int]]}
    types = {"nlp": Language, "name": str, "model": Optional[str],
             **{s.key: kinds[s.kind] for s in SETTINGS},
             "batch_size": int, "device": str, "labels": dict[str, str], "alignment_mode": str,
             "overwrite_ents": bool}
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t) for n, t in types.items()]
    return inspect.Signature(params, return_annotation=BioPruneNER), {**types, "return": BioPruneNER}


make_bioprune_ner.__signature__, make_bioprune_ner.__annotations__ = _signature()
make_bioprune_ner = Language.factory(
    "bioprune_ner",
    default_config=DEFAULT_CONFIG,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)(make_bioprune_ner)


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
    """The engine's own device rule (bioprune.devices.resolve_device), as a ConfigError with a working example."""
    from bioprune.devices import resolve_device
    from bioprune.errors import InputError

    try:
        resolve_device(device)
    except InputError as e:
        raise ConfigError("device", device, f'must be a torch device string such as "cpu" or "cuda" that this '
                          f"machine can use ({e.reason})", "cpu") from None


def _requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string ("bioprune>=0.1" -> "bioprune")."""
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def _quoted(values) -> str:
    return ", ".join(repr(v) for v in values)
