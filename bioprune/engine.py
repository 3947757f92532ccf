"""PruningEngine: text in, entities with character offsets out.

Tokenise once (fast tokenizer, offsets), cut long documents into overlapping windows, batch windows
of similar length, run the token classifier, merge window predictions deterministically, decode
word-level BIO tags back to character spans, apply the model's post-processing passes and, when
``config.link``, give each entity its MeSH IDs (:mod:`bioprune.linking`). Load once, annotate many
batches: the engine is what the CLI, the spaCy component, the Gradio app and Ray actors hold.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

from bioprune.allocator import keep_freed_memory
from bioprune.config import DEFAULT, PruningConfig, dense_twin, is_default
from bioprune.controllers import Controller, LearnedController, RuleController, load_controllers
from bioprune.encoding import DEFAULT_OVERLAP_TOKENS, MAX_POSITIONS, EncodedDocument, encode_texts, window_input_ids
from bioprune.labels import LABELS, decode_entities
from bioprune.linking import Linker, index_dir_for, load_linker
from bioprune.devices import resolve_device
from bioprune.exits import ExitHeads
from bioprune.int8 import load_calibration
from bioprune.model_files import copy_linker_index, copy_model_files, resolve_model_dir, share_like_new_files
from bioprune.postprocess import POSTPROCESS_FILE, Postprocess
from bioprune.pruned_layers import PrunedLayers
from bioprune.forward import ForwardResult, PrunedEncoder
from bioprune.types import Annotation, Document, PrunedToken, RecoveryEvent, Trace
from bioprune.windows import merge_windows, window_owners

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "bc5cdr-minilm-l6"
MODEL_CARD_FILE = "README.md"


def _one_thread_after_fork() -> None:
    """In a child made by ``fork``, run torch on one intra-op thread.

    GNU OpenMP's thread pool (torch's CPU parallel regions) does not survive ``fork``: after the
    parent ran one multi-threaded op (``nlp("x")`` before ``nlp.pipe(texts, n_process=2)``), the
    child's first one waits forever on threads that were not copied (reloading the model does not
    help: the pool is process state); one thread never enters the pool, as in PyTorch's DataLoader
    workers. N workers then use N cores; for more threads per worker use the "spawn" start method.
    """
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)


def load_model(path: str | Path, device: str = "cpu"):
    """Tokenizer and token classifier from a model folder or hub id (:func:`resolve_model_dir`),
    weights from safetensors only."""
    path = resolve_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForTokenClassification.from_pretrained(str(path), use_safetensors=True,
                                                            dtype=torch.float32)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if tuple(labels) != LABELS:
        raise ValueError(f"{path}: model labels {labels} are not bioprune's {list(LABELS)}")
    return tokenizer, model.to(device).eval()


@dataclass(frozen=True, eq=False)  # eq=False: identity, as for the modules it holds
class ModelBundle:
    """Everything read from one model folder, shared by every configuration of the engine.

    Args:
        model: a ``*ForTokenClassification`` model with bioprune's label set.
        tokenizer: its fast tokenizer.
        exit_heads: exit heads at the pruning layers (needed unless the config is dense).
        controllers: pruning controllers by name (default: the rule controller alone; ``from_pretrained``
            adds the learned "mlp" one when the folder has it).
        postprocess: the tag decoding and the document-level passes after the forward
            (:class:`bioprune.postprocess.Postprocess`; default none); ``from_pretrained`` reads the
            model's own choice (``postprocess.json``).
        device: "cpu" or "cuda" (or any torch device string).
        overlap_tokens: tokens shared by consecutive windows of a document longer than 510 tokens.
        source_dir: the model folder the weights were read from (``from_pretrained`` sets it);
            ``save_pretrained`` copies its files as they are rather than re-serialising the weights.
        linker_dir: the linker index folder; None: ``source_dir/linker``, else the shipped index
            (:func:`bioprune.linking.index_dir_for`). Loaded on the first linked annotation, once per process.
        int8_ranges: per-channel input ranges of the encoder's Linear layers (:mod:`bioprune.int8`).
        pruned_layers: upper layers trained for the pruned forward (:mod:`bioprune.pruned_layers`);
            ``from_pretrained`` reads them when the folder has them.

    The config-free encoder (:class:`~bioprune.forward.PrunedEncoder`), shared by every engine over
    this bundle, is built from these unless given (a benchmark's stand-in with the same ``forward``).
    """

    model: torch.nn.Module
    tokenizer: object
    exit_heads: ExitHeads | None = None
    controllers: Mapping[str, Controller] | None = None  # None: {"rule": RuleController()}
    postprocess: Postprocess = Postprocess()
    device: str = "cpu"
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    source_dir: Path | None = None
    linker_dir: Path | None = None
    int8_ranges: Mapping[str, torch.Tensor] | None = None
    pruned_layers: PrunedLayers | None = None
    encoder: PrunedEncoder | None = field(default=None, repr=False)  # None: built from the fields above

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the given values once, here
        set_(self, "controllers", {"rule": RuleController()} if self.controllers is None else dict(self.controllers))
        set_(self, "source_dir", None if self.source_dir is None else Path(self.source_dir))
        set_(self, "linker_dir", None if self.linker_dir is None else Path(self.linker_dir))
        if self.encoder is None:
            set_(self, "encoder", PrunedEncoder(self.model, self.exit_heads, self.controllers, self.int8_ranges,
                                                self.pruned_layers))

    def with_controllers(self, controllers: Mapping[str, Controller]) -> "ModelBundle":
        """This bundle with other controllers (a new encoder over the same weights)."""
        return replace(self, controllers=controllers, encoder=None)

    @cached_property
    def linker_index_dir(self) -> Path:
        """The linker index folder this bundle links with (see ``linker_dir``; resolved once)."""
        return self.linker_dir if self.linker_dir is not None else index_dir_for(self.source_dir)

    @cached_property
    def max_positions(self) -> int:
        return min(MAX_POSITIONS, self.model.config.max_position_embeddings)

    @cached_property
    def special_ids(self) -> torch.Tensor:
        """(2,) the ids of [CLS] and [SEP], which never leave; [UNK] and the rest are ordinary tokens."""
        return torch.tensor([self.tokenizer.cls_token_id, self.tokenizer.sep_token_id], device=self.device)


@dataclass(frozen=True, eq=False)
class PruningEngine:
    """Annotates documents with Chemical and Disease entities, pruning tokens as ``config`` says.

    A frozen pair: the loaded :class:`ModelBundle` and a :class:`~bioprune.config.PruningConfig`
    (how to prune and at which precision; default :data:`~bioprune.config.DEFAULT`, the MLP's
    operating point at the device's best precision, or dense on a model that lacks its controller
    or exit head; :data:`~bioprune.config.DENSE` is the exact fp32 model).
    :meth:`with_config` swaps the config and shares everything else.
    """

    bundle: ModelBundle
    config: PruningConfig = DEFAULT
    # the precision the forward runs at ("auto" resolved for this device; PrunedEncoder.forward resolves the same)
    precision: str = field(init=False, compare=False)

    def __post_init__(self):
        if is_default(self.config) and (problem := self.bundle.encoder.cannot_run(self.config)):
            # a model without what the default prunes with (its own training, a bare Hub model): dense
            logger.warning("%s: %s; the default runs dense on it", self.bundle.source_dir or "this model", problem)
            object.__setattr__(self, "config", dense_twin(self.config))
        self.bundle.encoder.check(self.config)
        object.__setattr__(self, "precision", self.bundle.encoder.precision_at(self.config, self.bundle.device))
        if self.bundle.device == "cpu":
            keep_freed_memory()  # once per process: the forward's temporaries stay in the heap (bioprune.allocator)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, config: PruningConfig | None = None,
                        device: str = "cpu", **kwargs) -> "PruningEngine":
        """The shipped model when ``path`` is None, else a model folder (training/, :meth:`save_pretrained`)
        or a Hugging Face Hub id (downloaded whole, see :func:`bioprune.model_files.resolve_model_dir`).

        Weights, tokenizer, exit heads, learned controller, ``postprocess.json`` and the int8
        calibration (:mod:`bioprune.int8`) all come from that one folder. ``config=None`` is
        :data:`~bioprune.config.DEFAULT` (pruning chosen for fidelity to dense fp32, docs/pruning.md
        "The default"; ``DENSE`` for exact fp32). ``kwargs`` are
        :class:`ModelBundle` fields; ``postprocess=None`` is the model's own ``postprocess.json``
        (chosen on the development set).
        """
        device = resolve_device(device)  # one line for "cuda" on a CPU-only torch, before anything loads
        path = resolve_model_dir(DEFAULT_MODEL_DIR if path is None else path)
        tokenizer, model = load_model(path, device)
        config = DEFAULT if config is None else config
        if kwargs.get("postprocess") is None:
            kwargs["postprocess"] = Postprocess.load(path)
        bundle = ModelBundle(model, tokenizer, exit_heads=ExitHeads.load(path, device), device=device,
                             controllers=load_controllers(path, device), source_dir=path,
                             int8_ranges=load_calibration(path), pruned_layers=PrunedLayers.load(path), **kwargs)
        engine = cls(bundle, config)
        logger.info("loaded %s on %s (%s, precision %s -> %s, postprocess %s, %s)", path, device, engine.config,
                    config.precision, engine.precision, kwargs["postprocess"].passes, kwargs["postprocess"].decoding)
        return engine

    def with_config(self, config: PruningConfig) -> "PruningEngine":
        """The same loaded model with another pruning configuration (nothing is copied)."""
        return replace(self, config=config)

    # --- the bundle's parts, read through the engine ---------------------------------------------
    model = property(lambda self: self.bundle.model)
    tokenizer = property(lambda self: self.bundle.tokenizer)
    exit_heads = property(lambda self: self.bundle.exit_heads)
    controllers = property(lambda self: self.bundle.controllers)
    postprocess = property(lambda self: self.bundle.postprocess)
    device = property(lambda self: self.bundle.device)
    overlap_tokens = property(lambda self: self.bundle.overlap_tokens)
    source_dir = property(lambda self: self.bundle.source_dir)
    encoder = property(lambda self: self.bundle.encoder)
    max_positions = property(lambda self: self.bundle.max_positions)
    linker_index_dir = property(lambda self: self.bundle.linker_index_dir)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write everything :meth:`from_pretrained` reads into ``directory``, so it round-trips exactly.

        Weights (safetensors) with their config, tokenizer, exit heads, learned controller,
        ``postprocess.json`` (this engine's passes), the linker index (``linker/``, so the IDs travel
        with the model) and a model card (``README.md``). When the source folder still holds exactly
        the weights in memory, its files are copied as they are (fp16 weights stay fp16; reports and
        model card come along); otherwise the modules are serialised, with a short generated model
        card. Returns ``directory``.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        if self._source_unchanged():
            copy_model_files(self.source_dir, target)
        else:
            self._save_modules(target)
        copy_linker_index(self.linker_index_dir, target)
        if Postprocess.load(target) != self.postprocess:
            (target / POSTPROCESS_FILE).write_text(json.dumps(self.postprocess.settings(), indent=2) + "\n")
        if not (target / MODEL_CARD_FILE).is_file():
            (target / MODEL_CARD_FILE).write_text(model_card(self), encoding="utf-8")
        logger.info("saved %s to %s", self.source_dir or "an in-memory model", target)
        return target

    def _source_unchanged(self) -> bool:
        """Whether ``source_dir`` still holds this engine's model, exit heads, learned controller and
        pruned layers, tensor for tensor (reading them costs well under a second for a MiniLM)."""
        source = self.source_dir
        if source is None or not (source / "config.json").is_file() or not (source / "model.safetensors").is_file():
            return False
        return (_same_tensors(self.model.state_dict(), load_file(str(source / "model.safetensors")))
                and _same_module(self.exit_heads, ExitHeads.load(source))
                and _same_module(self.controllers.get("mlp"), LearnedController.load(source))
                and _same_pruned_layers(self.bundle.pruned_layers, PrunedLayers.load(source)))

    def _save_modules(self, target: Path) -> None:
        """Serialise the model, tokenizer, exit heads, learned controller and pruned layers held in memory."""
        self.model.save_pretrained(str(target), safe_serialization=True)
        share_like_new_files(target)  # transformers' safetensors are owner-only otherwise
        self.tokenizer.save_pretrained(str(target))
        for part in (self.exit_heads, self.controllers.get("mlp"), self.bundle.pruned_layers):  # those it has
            if part is not None:
                part.save(target)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload bioprune model"):
        """Upload what :meth:`save_pretrained` writes to the Hub repository ``repo_id`` (created if new).

        Needs ``huggingface_hub`` and a token with write access (``hf auth login`` or ``token=``).
        ``from_pretrained(repo_id)`` then loads it, exit heads and controller included.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bioprune-push-") as folder:
            self.save_pretrained(folder)
            return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder,
                                     commit_message=commit_message)

    @property
    def linker(self) -> Linker:
        """The linker, loaded on first use and shared by every engine of the process (a few
        seconds once); :class:`~bioprune.linking.LinkerIndexError` if its index is missing or malformed."""
        return load_linker(str(self.linker_index_dir))

    def encode(self, texts: Sequence[str]) -> list[EncodedDocument]:
        return encode_texts(self.tokenizer, texts, self.max_positions, self.overlap_tokens)

    @torch.no_grad()
    def run(self, encoded: Sequence[EncodedDocument], batch_size: int = 16) -> list[tuple[np.ndarray, Trace | None]]:
        """Per document, (T, C) label probabilities over its content tokens and its pruning trace."""
        items = sorted(((d, w, end - start) for d, doc in enumerate(encoded)
                        for w, (start, end) in enumerate(doc.windows)), key=lambda item: item[2])  # length buckets
        results: dict[tuple[int, int], ForwardResult] = {}  # (document, window) -> its row, as numpy
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        for i in range(0, len(items), batch_size):
            batch = items[i:i + batch_size]
            seqs = [window_input_ids(encoded[d], encoded[d].windows[w], cls_id, sep_id) for d, w, _ in batch]
            out = self.encoder.forward(*self.batch_inputs(seqs), self.config).numpy()  # one copy per batch
            for row, ((d, w, _), seq) in enumerate(zip(batch, seqs)):
                results[(d, w)] = out.window(row, len(seq))
        parts = [[results[(d, w)] for w in range(len(doc.windows))] for d, doc in enumerate(encoded)]
        return [(merge_windows(len(doc.input_ids), list(doc.windows), [p.probs for p in doc_parts]),
                 _document_trace(doc, doc_parts, self.encoder.n_classes) if self.config.enabled else None)
                for doc, doc_parts in zip(encoded, parts)]

    def batch_inputs(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, special), each (B, T), for windows of token ids, right-padded;
        ``special`` marks the tokens that never leave: [CLS] and [SEP]."""
        input_ids, attention_mask = _pad(seqs, self.tokenizer.pad_token_id, self.device)
        return input_ids, attention_mask, torch.isin(input_ids, self.bundle.special_ids)

    def annotate(self, documents: Iterable[str | Document] | str | Document, batch_size: int = 16) -> list[Annotation]:
        """Annotate texts or :class:`Document` records; one Annotation per input, in order.

        A single str (or Document) is one document, not a sequence of one-character documents:
        ``engine.annotate("aspirin")`` returns one Annotation, like ``annotate(["aspirin"])``.
        """
        docs = _documents(documents)
        encoded = self.encode([d.text for d in docs])
        outputs = self.run(encoded, batch_size=batch_size)
        found = [self.postprocess.apply(doc.text, decode_entities(doc.text, enc.offsets, enc.word_ids, probs,
                                                                  self.postprocess.decoding))
                 for doc, enc, (probs, _) in zip(docs, encoded, outputs)]
        if self.config.link and any(found):  # all documents at once: one TF-IDF query per type for what look-ups miss
            linked = iter(self.linker.linked_documents([(doc.text, ents) for doc, ents in zip(docs, found) if ents]))
            found = [[e for e in next(linked) if self.postprocess.keeps(e)] if ents else ents for ents in found]
        return [Annotation(id=doc.id, text=doc.text, entities=tuple(ents), trace=trace)
                for doc, ents, (_, trace) in zip(docs, found, outputs)]


def _same_tensors(state: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> bool:
    """Every saved tensor is in ``state`` with the same values (compared at the in-memory precision)."""
    return all(key in state and state[key].shape == value.shape
               and torch.equal(value.to(state[key].dtype), state[key].detach().cpu()) for key, value in saved.items())


def _same_module(module: torch.nn.Module | None, saved: torch.nn.Module | None) -> bool:
    """Both absent, or both present with equal state (buffers included)."""
    if module is None or saved is None:
        return module is None and saved is None
    return set(module.state_dict()) == set(saved.state_dict()) and \
        _same_tensors(module.state_dict(), saved.state_dict())


def _same_pruned_layers(layers: PrunedLayers | None, saved: PrunedLayers | None) -> bool:
    """Both absent, or both present for the same point with equal tensors."""
    if layers is None or saved is None:
        return layers is None and saved is None
    return ((layers.first_layer, layers.frozen_context) == (saved.first_layer, saved.frozen_context)
            and set(layers.state) == set(saved.state) and _same_tensors(layers.state, saved.state))


def _documents(documents) -> list[Document]:
    """``annotate``'s input as Documents (ids "0", "1", ... for plain texts); TypeError for anything else."""
    if isinstance(documents, (str, Document)):
        documents = [documents]
    elif isinstance(documents, (bytes, bytearray)):
        raise TypeError("annotate takes str texts or Documents, got bytes; decode them first, e.g. "
                        "annotate([data.decode('utf-8')])")
    docs = []
    for i, d in enumerate(documents):
        if not isinstance(d, (str, Document)):
            raise TypeError(f"annotate takes str texts or Documents, got {type(d).__name__} at position {i}")
        docs.append(d if isinstance(d, Document) else Document(id=str(i), text=d))
    return docs


def model_card(engine: PruningEngine) -> str:
    """A short model card (``README.md``) for a model saved from memory."""
    config = engine.model.config
    heads = f"after layers {list(engine.exit_heads.layers)}" if engine.exit_heads is not None else "none (dense only)"
    controllers = ", ".join(sorted(engine.controllers))
    layers = engine.bundle.pruned_layers
    pruned = ("none" if layers is None else f"layers {layers.first_layer}.. and the classifier, for pruning after layer "
              f"{layers.first_layer}{' with frozen context' if layers.frozen_context else ''}")
    return f"""---
library_name: bioprune
pipeline_tag: token-classification
tags: [biomedical, ner, bc5cdr, token-pruning]
---

# bioprune model

A {config.model_type} token classifier ({config.num_hidden_layers} layers, hidden {config.hidden_size}) for
Chemical and Disease mentions (BC5CDR types), saved by `PruningEngine.save_pretrained`.

- labels: {", ".join(LABELS)}
- exit heads: {heads}
- controllers: {controllers}
- layers trained for pruning: {pruned}
- postprocess passes: {", ".join(engine.postprocess.passes) or "none"}
- tag decoding: {engine.postprocess.decoding}

```python
from bioprune import PruningEngine, PruningConfig
engine = PruningEngine.from_pretrained("<this folder or hub id>", config=PruningConfig(controller="rule"))
[ann] = engine.annotate(["Famotidine-associated delirium."])
```
"""


def _document_trace(doc: EncodedDocument, parts: list[ForwardResult], n_classes: int) -> Trace:
    """Sum window traces into document coordinates; a token counts in the window that owns it."""
    owners = window_owners(len(doc.input_ids), list(doc.windows))
    pruned, events = [], []
    for w, ((start, end), part) in enumerate(zip(doc.windows, parts)):
        mine = owners[start:end] == w  # (n,)
        final = part.probs.argmax(axis=1)
        left = np.nonzero(mine & (part.pruned_layer > 0))[0]  # one numpy -> Python conversion per field
        for j, layer, score, label in zip(left.tolist(), part.pruned_layer[left].tolist(),
                                          part.pruned_score[left].tolist(), final[left].tolist()):
            pos = start + j
            pruned.append(PrunedToken(position=pos, start=doc.offsets[pos][0], end=doc.offsets[pos][1],
                                      layer=layer, score=score, label=LABELS[label]))
        for trigger, mask in part.recovery.items():
            idx = np.nonzero(mine & mask)[0]
            if idx.size:
                events.append(RecoveryEvent(
                    trigger=trigger, positions=tuple(int(start + j) for j in idx),
                    layer=int(part.pruned_layer[idx].min()),
                    labels_before=tuple(LABELS[part.labels_before[j]] for j in idx),
                    labels_after=tuple(LABELS[final[j]] for j in idx)))
    pruned.sort(key=lambda p: p.position)
    return Trace(pruned_tokens=tuple(pruned), recovery_events=tuple(events),
                 tokens_per_layer=tuple(int(x) for x in np.sum([p.tokens_per_layer for p in parts], axis=0)),
                 flops=float(sum(p.flops for p in parts)), dense_flops=float(sum(p.dense_flops for p in parts)))


def _pad(seqs: list[list[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) input ids right-padded with ``pad_id`` and the matching attention mask."""
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(s, dtype=torch.long) for s in seqs], batch_first=True,
                                          padding_value=pad_id)
    mask = (torch.arange(ids.size(1)) < torch.tensor([len(s) for s in seqs])[:, None]).long()
    return ids.to(device), mask.to(device)
