"""The ``bioprune_ner`` pipe: runs the pruning engine over batches of docs and writes ``doc.ents``.

Objects → behaviour: the factory (factory.py) turns the config into an engine source and labels;
this class batches docs through the engine, aligns its character spans to spaCy tokens
(alignment.py) and stores what pruning did as plain-data extensions (extensions.py).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import srsly
from spacy.pipeline import Pipe
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.util import make_tempdir, minibatch
from spacy.vocab import Vocab

from spacy_component.alignment import align_entities, merge_entities
from spacy_component.engine_source import EngineSource
from spacy_component.errors import AlignmentWarning
from spacy_component.extensions import register_extensions, trace_records

if TYPE_CHECKING:
    from bioprune.engine import PruningEngine
    from bioprune.types import Annotation

logger = logging.getLogger(__name__)

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
            for span in added:
                span._.bioprune_confidence = float(found[span.start, span.end].score)
                span._.bioprune_ids = list(found[span.start, span.end].ids)
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
            from bioprune.config import DENSE
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
