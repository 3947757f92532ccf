"""spaCy component ``bioprune_ner``: chemicals and diseases as ``doc.ents``, the pruning engine underneath.

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("bioprune_ner")          # found through the spacy_factories entry point
    doc = nlp("Famotidine-associated delirium.")
    [(ent.text, ent.label_, ent._.bioprune_confidence, ent.kb_id_) for ent in doc.ents]

One module, read top to bottom (as spacy-huggingface-pipelines keeps factory and pipe together):
errors and warnings; displaCy colours; the ``._.bioprune_*`` extensions; :class:`EngineSource`
(where the engine comes from); :class:`BioPruneNER` (objects -> behaviour: batches docs through the
engine, aligns its character spans to spaCy tokens with :mod:`bioprune.spacy_alignment`);
:func:`make_bioprune_ner` (config -> validated settings -> engine source -> pipe).

spaCy imports this module through the entry point for *every* pipeline it builds, so importing it
loads nothing beyond spaCy and ``bioprune.options`` (no torch): bioprune's engine and transformers
are imported only when the component is created.
"""
from __future__ import annotations

import inspect
import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Union

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc, Span
from spacy.util import make_tempdir, minibatch
from spacy.vocab import Vocab

from bioprune.config import DEFAULT, DENSE, PruningConfig, is_default
from bioprune.errors import InputError
from bioprune.options import DEFAULT_SETTINGS, SETTINGS, config_from_values
from bioprune.spacy_alignment import align_entities, merge_entities
from bioprune.types import ENTITY_TYPES, Annotation

if TYPE_CHECKING:  # bioprune's engine imports torch and transformers: only when an engine is really needed
    from bioprune.engine import PruningEngine

logger = logging.getLogger(__name__)

__all__ = ["BioPruneNER", "make_bioprune_ner", "ComponentSettings", "EngineSource", "ConfigError",
           "AlignmentWarning", "DEFAULT_CONFIG", "DEFAULT_LABELS", "DISPLACY_COLORS", "EXTENSIONS"]

# --- Errors and warnings: each says how to fix it -----------------------------------------------

class ConfigError(ValueError):
    """A ``bioprune_ner`` setting with a bad value; the message shows a working example."""

    def __init__(self, key: str, value, problem: str, example):
        self.key, self.value, self.example = key, value, example  # example: a value for ``key`` that works
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


# --- displaCy colours, registered by the ``spacy_displacy_colors`` entry point ------------------
# displaCy looks colours up by upper-cased label, so these also cover the engine's own "Chemical"
# and "Disease". With other labels (``labels`` in the component config), pass
# ``options={"colors": {...}}`` to ``displacy.render``.

DISPLACY_COLORS: dict[str, str] = {
    "CHEMICAL": "#a6e3a1",  # green
    "DISEASE": "#f5a97f",  # orange
}


# --- The ``._.bioprune_*`` extensions ---------------------------------------------------------
# Plain data only (str, int, float, bool, list, dict; never a bioprune dataclass): spaCy serialises
# them with msgpack (``Doc.to_bytes``, ``DocBin``, ``nlp.pipe(n_process=...)``). The component
# writes lists; a DocBin round trip gives them back as tuples (msgpack's ``use_list=False``).
# name -> (Doc or Span, what it holds); the component docstring lists the same with types.
EXTENSIONS: dict[str, tuple[type, str]] = {
    "bioprune_pruned_tokens": (Doc, "list[dict]: one per pruned subword token"),
    "bioprune_recovery_events": (Doc, "list[dict]: one per recovery"),
    "bioprune_keep_ratio": (Doc, "float: fraction of tokens that ran the last layer"),
    "bioprune_flops_saved_ratio": (Doc, "float: 1 - FLOPs spent / dense FLOPs"),
    "bioprune_skipped_count": (Doc, "int: entities skipped because they could not be aligned"),
    "bioprune_confidence": (Span, "float: the engine's score for the entity"),
    "bioprune_ids": (Span, "list[str]: the entity's bare MeSH IDs (kb_id_ joins them), [] when none"),
    "bioprune_candidates": (Span, "list[[str, float]]: the concepts the linker scored, best first "
                                  "([\"D1|D2\", score]; near misses when unlinked), [] with link off"),
}


def register_extensions() -> None:
    """Register every extension that is not registered yet (default None: not annotated)."""
    for name, (cls, _) in EXTENSIONS.items():
        if not cls.has_extension(name):
            cls.set_extension(name, default=None)


def trace_records(trace) -> dict:
    """Doc extension values for a :class:`bioprune.types.Trace` (None: the dense model, nothing pruned)."""
    if trace is None:
        return {"bioprune_pruned_tokens": [], "bioprune_recovery_events": [],
                "bioprune_keep_ratio": 1.0, "bioprune_flops_saved_ratio": 0.0}
    return {
        "bioprune_pruned_tokens": [dict(vars(token)) for token in trace.pruned_tokens],
        "bioprune_recovery_events": [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(e).items()}
                                     for e in trace.recovery_events],
        "bioprune_keep_ratio": float(trace.keep_ratio),
        "bioprune_flops_saved_ratio": float(trace.flops_saved_ratio),
    }


# --- Where the engine comes from: a recipe, checked cheaply, loaded when first needed ------------

@dataclass(frozen=True)
class EngineSource:
    """A model (directory or Hub id) plus the PruningConfig and device to load it with."""

    model_dir: Optional[Union[str, Path]] = None  # None: the shipped model; else a directory or Hub id
    device: str = "cpu"
    config: Optional[PruningConfig] = None  # None: bioprune.config.DEFAULT, what every face runs

    @property
    def controller(self) -> str:
        return self.pruning_config().controller

    @property
    def path(self) -> Path:
        if self.model_dir is not None:
            return Path(self.model_dir)
        from bioprune.engine import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR

    def pruning_config(self) -> PruningConfig:
        """The PruningConfig the engine runs with."""
        return DEFAULT if self.config is None else self.config

    def checked(self) -> "EngineSource":
        """This source with its model resolved to a local model folder, or a ConfigError showing the fix.

        Cheap: no weights are read. A directory must hold ``config.json``; any other name must be a
        Hub id that ``snapshot_download`` can fetch (or find in the cache), so it is fetched here,
        once. A pruning controller also needs the exit heads (and "mlp" its learned controller).
        """
        from bioprune.controllers import CONTROLLER_FILE
        from bioprune.exits import EXIT_HEADS_FILE
        from bioprune.model_files import ModelNotFoundError, resolve_model_dir

        if self.model_dir is None and not (self.path / "config.json").is_file():
            raise ConfigError("model", None, f"null means the shipped model, which is not in this install "
                              f"({self.path})", "path/to/model-directory")
        try:
            path = resolve_model_dir(self.path)
        except ModelNotFoundError as e:
            raise ConfigError("model", str(self.model_dir), f"is wrong: {e.reason}", None) from None
        needed = {"rule": [EXIT_HEADS_FILE], "mlp": [EXIT_HEADS_FILE, CONTROLLER_FILE]}.get(self.controller, [])
        what = {EXIT_HEADS_FILE: "exit heads", CONTROLLER_FILE: "a learned controller"}
        missing = [f"{what[name]} ({name})" for name in needed if not (path / name).is_file()]
        if missing and not is_default(self.config):  # the default runs dense on such a model (PruningEngine)
            raise ConfigError("controller", self.controller,
                              f"needs {' and '.join(missing)}, which {path} does not have", "none")
        return replace(self, model_dir=path)

    def load(self) -> "PruningEngine":
        """Read the model and build the engine (seconds for a small model)."""
        from bioprune.engine import PruningEngine

        path = self.checked().path
        engine = PruningEngine.from_pretrained(path, config=DENSE, device=self.device)  # valid on any model
        try:
            return engine.with_config(self.pruning_config())
        except ValueError as e:
            raise ConfigError("controller", self.controller, f"cannot run on {path}: {e}", "none") from None


# --- The pipe: objects -> behaviour -------------------------------------------------------------

DEFAULT_LABELS = {"Chemical": "CHEMICAL", "Disease": "DISEASE"}  # scispaCy's en_ner_bc5cdr_md labels
MODEL_DIR = "model"  # the model files' folder inside the component's folder of a saved pipeline


class BioPruneNER(Pipe):
    """Chemical and disease entities from bioprune's pruning engine, as ``doc.ents``.

    Sets ``doc.ents`` (labels mapped through ``labels``; existing entities are kept where they
    overlap ours unless ``overwrite_ents``) and these extensions (None until a doc is processed):

    - ``Doc._.bioprune_pruned_tokens: list[dict]`` — one per pruned subword token: ``position``
      (int, index among the doc's subword tokens), ``start``/``end`` (int, character offsets),
      ``layer`` (int, layers run before it left), ``score`` (float, importance), ``label`` (str, BIO tag).
    - ``Doc._.bioprune_recovery_events: list[dict]`` — one per recovery: ``trigger`` (str),
      ``positions`` (list[int]), ``layer`` (int), ``labels_before``/``labels_after`` (list[str]).
    - ``Doc._.bioprune_keep_ratio: float`` — fraction of tokens that ran the last layer (1.0 dense).
    - ``Doc._.bioprune_flops_saved_ratio: float`` — 1 − FLOPs spent / dense FLOPs (0.0 dense).
    - ``Doc._.bioprune_skipped_count: int`` — entities skipped because they could not be aligned
      to tokens (each doc with one also raises an :class:`AlignmentWarning`).
    - ``Span._.bioprune_confidence: float`` — the engine's score for an entity it found
      (None on entities from other components).
    - ``Span._.bioprune_ids: list[str]`` — its bare MeSH IDs (``[]`` when none or ``link`` is off);
      ``span.kb_id_`` holds them PubTator3-style, ``"MESH:D1|MESH:D2"`` (empty when none).
    - ``Span._.bioprune_candidates: list[list]`` — the concepts the linker scored for it, best first,
      as ``[ids, score]`` (``ids`` bare and ``|``-joined; score 1.0 for a dictionary hit, else the
      TF-IDF cosine), at most five (scispaCy's ``kb_ents``); an unlinked entity keeps its near
      misses; ``[]`` when ``link`` is off.

    Args:
        vocab: the pipeline's vocab.
        engine: a loaded :class:`~bioprune.PruningEngine`, or an :class:`EngineSource` to load
            when first needed.
        name: the component's name in the pipeline.
        labels: engine entity type ("Chemical", "Disease") -> spaCy label.
        batch_size: sequences per forward pass (and docs per engine call when ``pipe`` gets none).
        alignment_mode: ``Doc.char_span`` mode: "strict", "contract" or "expand".
        overwrite_ents: whether our entities replace existing ones they overlap.
    """

    def __init__(self, vocab: Vocab, engine: Union["PruningEngine", EngineSource], name: str = "bioprune_ner", *,
                 labels: Mapping[str, str] = DEFAULT_LABELS, batch_size: int = 16,
                 alignment_mode: str = "expand", overwrite_ents: bool = False):
        self.vocab = vocab
        self.name = name
        self._source: Optional[EngineSource] = engine if isinstance(engine, EngineSource) else None
        self._engine: Optional["PruningEngine"] = None if isinstance(engine, EngineSource) else engine
        self.label_map = dict(labels)
        self.batch_size = batch_size
        self.alignment_mode = alignment_mode
        self.overwrite_ents = overwrite_ents
        self.skipped_count = 0  # entities skipped in this process (each doc has its own count too)
        register_extensions()

    @property
    def engine(self) -> "PruningEngine":
        """The engine, loaded from its source on first use."""
        if self._engine is None:
            self._engine = self._source.load()
        return self._engine

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.label_map.values()))

    def initialize(self, get_examples=None, *, nlp=None) -> None:
        """Load the engine now (``nlp.initialize()``) rather than on the first doc."""
        self.engine  # noqa: B018 -- loading is the point

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc], batch_size=1), doc)  # doc as is if an error handler swallowed an error

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Annotate docs ``batch_size`` at a time (one engine call, one forward per ``self.batch_size`` windows)."""
        register_extensions()  # idempotent; covers workers that unpickled the pipe
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as e:  # handed to spaCy's error handler, which re-raises by default
                error_handler(self.name, self, docs, e)

    def predict(self, docs: Iterable[Doc]) -> list["Annotation"]:
        """The engine's annotations for ``docs``' texts, in order."""
        return self.engine.annotate([doc.text for doc in docs], batch_size=self.batch_size)

    def set_annotations(self, docs: Iterable[Doc], annotations: Iterable["Annotation"]) -> None:
        """Write entities and extensions onto each doc; unalignable entities are skipped and counted."""
        for doc, annotation in zip(docs, annotations):
            aligned, skipped = align_entities(doc, annotation.entities, self.label_map, self.alignment_mode)
            ents, added = merge_entities(doc.ents, [span for span, _ in aligned], self.overwrite_ents)
            doc.ents = ents
            found = {(span.start, span.end): entity for span, entity in aligned}
            entities = [found[span.start, span.end] for span in added]
            # the linker's candidates: linking again answers from its memo (annotate just linked these)
            links = self.engine.linker.link(doc.text, [(e.text, e.label) for e in entities]) \
                if self.engine.config.link and entities else [None] * len(entities)
            for span, entity, link in zip(added, entities, links):
                span._.bioprune_confidence = float(entity.score)
                span._.bioprune_ids = list(entity.ids)
                span._.bioprune_candidates = [] if link is None else [[c, float(s)] for c, s in link.candidates]
            for key, value in trace_records(annotation.trace).items():
                doc._.set(key, value)
            doc._.bioprune_skipped_count = len(skipped)
            if len(added) < len(aligned):
                logger.debug("%d entities overlapped existing doc.ents and were left out",
                             len(aligned) - len(added))
            if skipped:
                self.skipped_count += len(skipped)
                self._warn_skipped(annotation, skipped)

    def _warn_skipped(self, annotation: "Annotation", skipped: list) -> None:
        """One warning text per mode, so Python shows it once, not once per doc; details go to the log."""
        first = skipped[0]
        logger.info("skipped %d of %d entities in a doc, e.g. %r at characters %d-%d", len(skipped),
                    len(annotation.entities), first.text, first.start, first.end)
        hint = ("they overlap the entity before them once expanded to whole tokens"
                if self.alignment_mode == "expand" else "alignment_mode='expand' keeps more of them")
        warnings.warn(AlignmentWarning(
            f"bioprune_ner skipped entities that do not align to spaCy tokens with alignment_mode="
            f"{self.alignment_mode!r} ({hint}); doc._.bioprune_skipped_count counts them per doc"), stacklevel=4)

    def score(self, examples, **kwargs) -> dict:
        """Entity precision, recall and F1, overall and per label (spaCy's NER scorer)."""
        return get_ner_prf(examples)

    # --- serialisation: the model files travel with the pipeline -----------------------------

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the model into ``path/model`` with ``PruningEngine.save_pretrained`` (loading it first if
        needed): the files are copied as they are when they came from a folder, else serialised."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.engine.save_pretrained(path / MODEL_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "BioPruneNER":
        """Load the engine from the model files ``to_disk`` saved (settings stay this pipe's own)."""
        model_dir = Path(path) / MODEL_DIR
        if self._source is not None:
            self._source = replace(self._source, model_dir=model_dir)
            self._engine = self._source.load()
        else:
            from bioprune.engine import PruningEngine

            old = self._engine
            self._engine = PruningEngine.from_pretrained(model_dir, config=DENSE, device=old.device,
                                                         overlap_tokens=old.overlap_tokens).with_config(old.config)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """The ``to_disk`` folder as one msgpack blob (``nlp.to_bytes()``)."""
        with make_tempdir() as tmp:
            self.to_disk(tmp, exclude=exclude)
            files = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file()}
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "BioPruneNER":
        with make_tempdir() as tmp:
            for name, data in srsly.msgpack_loads(bytes_data).items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            self.from_disk(tmp, exclude=exclude)
        # the folder is gone: the engine's source_dir no longer holds a model, so a later to_disk
        # serialises the engine from memory (save_pretrained)
        self._source = None
        return self


# --- The factory: spaCy config -> validated settings -> engine source -> pipe --------------------
# spaCy checks each setting's type from the factory's signature; this module checks the values. The
# pruning and precision keys are PruningConfig's face settings (:mod:`bioprune.options`), not
# written here: the signature is built from them (:func:`_signature`), so a new one needs no change.

# nlp.meta[META_KEY]["model_files"]: pipe name -> its model folder inside a saved pipeline. Written
# when the component is added, so a pipeline saved with it says its model travels with it.
META_KEY = "bioprune"

# "default" is what pipelines saved before the settings came from bioprune.options wrote: the engine's default
LEGACY_CONTROLLER = "default"
AlignmentMode = Literal["strict", "contract", "expand"]
ALIGNMENT_MODES: tuple[str, ...] = ("strict", "contract", "expand")

@dataclass(frozen=True)
class ComponentSettings:
    """Every ``bioprune_ner`` setting, checked on construction (see :data:`DEFAULT_CONFIG`).

    ``pruning``: the face settings of :mod:`bioprune.options` by key (``controller``, ``lambda_``,
    ``precision``, ...); missing ones at their defaults.
    """

    model: Optional[str] = None  # a model directory (training/, save_pretrained) or Hub id; None: the shipped model
    pruning: Mapping[str, object] = field(default_factory=dict)
    batch_size: int = 16  # sequences (≤512-token windows) per forward pass
    device: str = "cpu"  # torch device string: "cpu", "cuda", "cuda:1", ...
    # engine type -> spaCy label, as in scispaCy's BC5CDR model
    labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    alignment_mode: AlignmentMode = "expand"  # how character spans snap to spaCy tokens (Doc.char_span)
    overwrite_ents: bool = False  # True: our entities replace overlapping doc.ents; False: existing win

    def __post_init__(self):
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
        return EngineSource(model_dir=self.model, device=self.device, config=config_from_values(self.pruning))


# The component's own settings (every field but ``pruning``) and their defaults; DEFAULT_CONFIG puts the
# pruning/precision settings after the model, defaults as every face has them (bioprune.config.DEFAULT;
# lambda_, prune_layers and frozen_context null: the controller's operating point).
COMPONENT_DEFAULTS = {f.name: f.default if f.default is not MISSING else f.default_factory()
                      for f in fields(ComponentSettings) if f.name != "pruning"}
DEFAULT_CONFIG = {"model": None, **DEFAULT_SETTINGS, **{k: v for k, v in COMPONENT_DEFAULTS.items() if k != "model"}}


def _check_setting(setting, value) -> None:
    """A ConfigError with a working example when ``value`` is not a valid ``setting``
    (PruningConfig's own checks, made on that setting alone)."""
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
             **{s.key: Optional[bool] if (s.kind, s.default) == ("bool", None) else kinds[s.kind] for s in SETTINGS},
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
    names = [re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0].lower() for r in requirements]  # "bioprune>=0.1" -> "bioprune"
    if installed and "bioprune" not in names:
        requirements.append(f"bioprune>={installed}")
    meta.setdefault(META_KEY, {}).setdefault("model_files", {})[name] = f"{name}/{MODEL_DIR}"


def _check_device(device) -> None:
    """The engine's own device rule (bioprune.devices.resolve_device), as a ConfigError with a working example."""
    from bioprune.devices import resolve_device

    try:
        resolve_device(device)
    except InputError as e:
        raise ConfigError("device", device, f'must be a torch device string such as "cpu" or "cuda" that this '
                          f"machine can use ({e.reason})", "cpu") from None


def _quoted(values) -> str:
    return ", ".join(repr(v) for v in values)
