"""The batch annotator's loop: stream records from files, annotate in chunks, write each chunk atomically.

    stats = annotate_files(engine, ["medline.xml.gz"], "out.pubtator", output_format("pubtator"))

Records are read lazily (one chunk in memory at a time, so memory does not grow with the input),
the documents of a chunk go through ``engine.annotate`` (which sorts their windows by length into
batches), and the chunk's output, error-report lines and deletion lines are committed together
(:mod:`bioprune.io.checkpoint`). Malformed records go to the error report and the run goes on;
every record lands in exactly one of the output, the error report or the deletion report, in input
order. Duplicate ids are kept: each occurrence is annotated and written once, in order (PubMed
update files legitimately repeat a PMID with a revised citation; the last one wins downstream).
``resume=True`` continues an interrupted run from its journal and writes the same bytes an
uninterrupted run would. Output to a stream (``output=None``, ``-`` or ``/dev/stdout``) has no
journal and no resume. :func:`annotate_files` says how the output is claimed and records screened.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from bioprune.allocator import mark_set_up
from bioprune.io.checkpoint import CheckpointedOutput, completed_state
from bioprune.io.inputs import iter_records
from bioprune.io.output_target import claim_output, is_stdout
from bioprune.io.outputs import OutputFormat
from bioprune.io.records import DeletedRecord, Record, RecordError
from bioprune.types import Annotation, Document, flops_saved_ratio, format_flops_saved

logger = logging.getLogger(__name__)
DEFAULT_CHUNK_DOCS = 256  # records read, annotated and committed together: bounds memory, sets resume granularity
# Longest document annotated (characters): far above a PubMed abstract (a few thousand) and most
# full-text articles, low enough that one pathological record (a whole file on one line: a 2 MB line
# ran for over 10 minutes) cannot stall a run. Longer ones are failed records; --max-doc-chars.
DEFAULT_MAX_DOC_CHARS = 200_000


@dataclass
class RunStats:
    """Totals of one run (summed over resumed sessions); what the summary line and JSON report."""

    records: int = 0  # input records consumed: documents + errors + deletions
    documents: int = 0  # documents annotated and written
    errors: int = 0  # malformed records, in the error report
    deleted: int = 0  # DeleteCitation PMIDs, in the deletion report
    entities: dict[str, int] = field(default_factory=dict)  # entity label -> count
    tokens: int = 0  # tokens the first layer ran on (pruned runs only; special tokens included)
    tokens_pruned: int = 0  # tokens that left before the last layer (pruned runs only)
    flops: float = 0.0  # FLOPs spent (pruned runs only)
    dense_flops: float = 0.0  # FLOPs the dense model would spend on the same windows (pruned runs only)
    recovered_documents: int = 0  # documents where recovery re-inserted pruned tokens
    wall_s: float = 0.0  # seconds reading, annotating and writing (model loading excluded)
    chunks: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "RunStats":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)

    def add(self, other: "RunStats") -> None:
        for name in self.__dataclass_fields__:
            if name == "entities":
                self.entities = dict(sorted((Counter(self.entities) + Counter(other.entities)).items()))
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def tokens_pruned_ratio(self) -> float:
        return self.tokens_pruned / self.tokens if self.tokens else 0.0

    @property
    def flops_saved_ratio(self) -> float:
        return flops_saved_ratio(self.flops, self.dense_flops)

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.wall_s if self.wall_s else 0.0

    def summary_line(self, wall_s: float | None = None, controller: str | None = None) -> str:
        """One line for the end of a run; ``wall_s`` overrides the summed time (Ray: elapsed time).

        ``controller`` is the run's configured controller ("none": dense). Pruning figures come from
        the totals; when there are none (no tokens seen, e.g. no document read) the line says what
        was configured, or nothing about pruning when that is not given, never a guess.
        """
        wall_s = self.wall_s if wall_s is None else wall_s
        rate = self.documents / wall_s if wall_s else 0.0
        entities = ", ".join(f"{label}: {n}" for label, n in sorted(self.entities.items())) or "no entities"
        if self.dense_flops:
            pruning = (f"; tokens pruned {self.tokens_pruned_ratio:.1%}, "
                       f"FLOPs saved {format_flops_saved(self.flops_saved_ratio)}")
        elif controller == "none":
            pruning = "; dense (no pruning)"
        elif controller:
            pruning = f"; pruning with the {controller} controller (no tokens seen)"
        else:
            pruning = ""
        return (f"annotated {self.documents} documents ({self.errors} failed, {self.deleted} deleted) in "
                f"{wall_s:.1f} s, {rate:.1f} docs/s; {entities}{pruning}")


def record_line(record: RecordError | DeletedRecord) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False) + "\n"


def screen_record(record: Record, source: str, fmt: OutputFormat | None = None,
                  max_doc_chars: int | None = DEFAULT_MAX_DOC_CHARS) -> Record:
    """A document that must not be annotated, as a RecordError (anything else passes through).

    A document longer than ``max_doc_chars`` (None: no limit) would hold the run for minutes with no
    way to tell it from a hang; a document ``fmt`` cannot write (:meth:`OutputFormat.problem`, e.g. a
    PubTator id holding ``|``) would make a file that does not read back. Both are reported, and the
    run goes on.
    """
    if not isinstance(record, Document):
        return record
    if max_doc_chars is not None and len(record.text) > max_doc_chars:
        return RecordError(source, f"document of {len(record.text):,} characters is longer than the limit of "
                           f"{max_doc_chars:,} (raise it with --max-doc-chars)", record.id)
    if fmt is not None and (problem := fmt.problem(record)) is not None:
        return RecordError(source, problem, record.id)
    return record


def iter_all_records(paths: Sequence[str | Path], input_format: str = "auto", *, fmt: OutputFormat | None = None,
                     max_doc_chars: int | None = DEFAULT_MAX_DOC_CHARS) -> Iterator[Record]:
    """Every record of every file, in order, each screened by :func:`screen_record`."""
    for path in paths:
        for record in iter_records(path, input_format):
            yield screen_record(record, str(path), fmt, max_doc_chars)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -3, -4, -8  # glibc mallopt parameters
MMAP_THRESHOLD_BYTES = 1 << 20  # in "flat" mode, allocations from 1 MiB up (tensors) get their own mapping
KEEP_HEAP_BYTES = (1 << 31) - 1  # in "fast" mode, free heap at the top is given back only past this (mallopt's int max)
MEMORY_MODES = ("fast", "flat")  # the first is the default


def limit_malloc_growth(mode: str = MEMORY_MODES[0], arenas: int = 2) -> bool:
    """Set glibc malloc up for a long batch run; call before torch or the tokenizer start threads.

    Both modes cap the arenas at ``arenas`` (like ``MALLOC_ARENA_MAX``), which bounds the
    per-thread heaps. ``"fast"`` (the default) keeps every tensor in the heap and the heap at its
    high-water mark (``mallopt`` M_MMAP_MAX 0 and a 2 GiB trim threshold, like
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``): a forward's freed buffers serve the next
    one, so no page is faulted in twice. glibc's own strategy mapped every tensor over its mmap
    threshold (up to 32 MiB) afresh and unmapped it when freed, and on 2 cores the page faults took
    about half of a bf16 run's time. The peak is the largest working set plus the heap's holes; it
    stays bounded because the batches' shapes repeat (:mod:`bioprune.shapes`). ``"flat"`` fixes the
    threshold at 1 MiB instead (like ``MALLOC_MMAP_THRESHOLD_``): every tensor gets its own mapping,
    returned to the OS when freed, for the lowest peak, at the price of those page faults.
    results/benchmark_batch.json measures both at 1x and 16x the MEDLINE slice. False where there
    is no glibc.
    """
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory mode must be one of {MEMORY_MODES}, got {mode!r}")
    name = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    except OSError:
        return False
    if mallopt is None:
        return False
    settings = [(M_ARENA_MAX, arenas)] + ([(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP_HEAP_BYTES)] if mode == "fast"
                                          else [(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)])
    mark_set_up()  # the engine's own thresholds (bioprune.allocator) must not undo these
    return all([bool(mallopt(param, value)) for param, value in settings])


@contextmanager
def _token_progress(engine, on_tokens: Callable[[int], object] | None) -> Iterator[None]:
    """Call ``on_tokens(n)`` as each batch of windows enters the model, ``n`` its tokens (special
    tokens in, padding out): progress within one long document, which is many windows.

    A forward hook on the model's embeddings, removed on the way out; nothing else changes.
    """
    embeddings = getattr(getattr(getattr(engine, "model", None), "base_model", None), "embeddings", None)
    if on_tokens is None or embeddings is None:
        yield
        return
    pad_id = engine.tokenizer.pad_token_id

    def count(module, args, kwargs, output) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        on_tokens(int((ids != pad_id).sum()) if ids is not None else int(output.shape[0] * output.shape[1]))

    handle = embeddings.register_forward_hook(count, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class AnnotatedChunk:
    """One chunk of records after annotation, typed once for every writer and report.

    ``pairs``: the chunk's documents with their annotations, in input order; ``failed`` and
    ``deleted``: its other records; ``first_index``: the position of its first document in the
    whole output (formats with separators or a header need it); ``stats``: its totals.
    """

    pairs: tuple[tuple[Annotation, Document], ...]
    failed: tuple[RecordError, ...]
    deleted: tuple[DeletedRecord, ...]
    first_index: int
    stats: RunStats

    def texts(self, fmt: OutputFormat) -> dict[str, str]:
        """What one output file and its side files get: keyed "output", "errors", "deleted"."""
        return {"output": fmt.format(self.pairs, self.first_index),
                "errors": "".join(record_line(r) for r in self.failed),
                "deleted": "".join(record_line(r) for r in self.deleted)}


def annotate_chunk(engine, chunk: list[Record], first_index: int, batch_size: int,
                   on_tokens: Callable[[int], object] | None = None) -> AnnotatedChunk:
    """Annotate the documents of one chunk of records. ``on_tokens(n)``, when given, is called as each
    batch of ``n`` tokens enters the model."""
    docs = [r for r in chunk if isinstance(r, Document)]
    with _token_progress(engine, on_tokens):
        annotations = engine.annotate(docs, batch_size=batch_size) if docs else []
    failed = tuple(r for r in chunk if isinstance(r, RecordError))
    deleted = tuple(r for r in chunk if isinstance(r, DeletedRecord))
    traces = [a.trace for a in annotations if a.trace is not None]
    stats = RunStats(records=len(chunk), documents=len(docs), chunks=1, errors=len(failed), deleted=len(deleted),
                     entities=dict(sorted(Counter(e.label for a in annotations for e in a.entities).items())),
                     tokens=sum(t.tokens_per_layer[0] for t in traces if t.tokens_per_layer),
                     tokens_pruned=sum(len(t.pruned_tokens) for t in traces),
                     flops=sum((t.flops for t in traces), 0.0), dense_flops=sum((t.dense_flops for t in traces), 0.0),
                     recovered_documents=sum(bool(t.recovery_events) for t in traces))
    return AnnotatedChunk(pairs=tuple(zip(annotations, docs)), failed=failed, deleted=deleted,
                          first_index=first_index, stats=stats)


def annotate_chunks(engine, records: Iterable[Record], chunk_size: int, batch_size: int, first_index: int = 0,
                    on_tokens: Callable[[int], object] | None = None) -> Iterator[AnnotatedChunk]:
    """The batch loop, written once (the CLI, Ray actors and the app's Batch tab all run it): read
    ``chunk_size`` records at a time, annotate them, and yield each chunk with its wall time (the time
    since the previous chunk was handed over, so the caller's writing counts too)."""
    started, records = time.perf_counter(), iter(records)
    while chunk := list(itertools.islice(records, chunk_size)):
        result = annotate_chunk(engine, chunk, first_index, batch_size, on_tokens)
        now = time.perf_counter()
        result.stats.wall_s = now - started
        started = now
        first_index += result.stats.documents
        yield result


def annotate_files(engine, inputs: Sequence[str | Path], output: str | Path | None, fmt: OutputFormat, *,
                   input_format: str = "auto", chunk_size: int = DEFAULT_CHUNK_DOCS, batch_size: int = 16,
                   resume: bool = False, fingerprint: dict | None = None, progress: bool = False,
                   stream: TextIO | None = None, report: TextIO | None = None,
                   max_doc_chars: int | None = DEFAULT_MAX_DOC_CHARS) -> RunStats:
    """Annotate every record of ``inputs`` into ``output`` (a path) or ``stream`` (when output is None,
    ``-`` or ``/dev/stdout``).

    A path is claimed first (:func:`bioprune.io.output_target.claim_output`): refused with
    InputError, before anything is written, when it or one of its side files is an input or not a
    regular file, or another run holds its lock; the lock is held until the run ends.
    ``fingerprint`` identifies the job for ``resume`` (see :class:`CheckpointedOutput`); errors and
    deletions go to the side files of ``output``, or as lines to ``report`` (default stderr) when
    writing to a stream. Documents longer than ``max_doc_chars`` (None: no limit) and documents the
    format cannot hold are failed records (:func:`screen_record`). ``progress`` shows a bar that
    counts tokens as they enter the model, so it moves within a long document too.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if output is None or is_stdout(output):
        stream = stream or sys.stdout
        report = report or sys.stderr
        stream.write(fmt.header())
        stats = _annotate_records(engine, inputs, fmt, RunStats(), _StreamSink(stream, report), input_format,
                                  chunk_size, batch_size, progress, max_doc_chars)
        stream.write(fmt.footer())
        stream.flush()
        return stats
    fingerprint = fingerprint or {}
    with claim_output(output, inputs):
        if resume and (done := completed_state(output, fingerprint)) is not None:
            logger.info("%s is complete: nothing to resume", output)
            return RunStats.from_dict(done)
        checkpoint = CheckpointedOutput(output, fingerprint, resume, header=fmt.header())
        stats = RunStats.from_dict(checkpoint.state)
        if checkpoint.done:
            return stats
        stats = _annotate_records(engine, inputs, fmt, stats, checkpoint, input_format, chunk_size, batch_size,
                                  progress, max_doc_chars)
        checkpoint.finish(fmt.footer(), stats.to_dict())
        return stats


class _StreamSink:
    """Where chunks go when the output is a stream: the text to it, report lines to ``report``."""

    def __init__(self, stream: TextIO, report: TextIO):
        self.stream, self.report = stream, report

    def commit(self, texts: dict[str, str], state: dict) -> None:
        self.stream.write(texts["output"])
        self.stream.flush()
        for key in ("errors", "deleted"):
            for line in texts[key].splitlines():
                self.report.write(f"bioprune: {key}: {line}\n")


def _annotate_records(engine, inputs: Sequence[str | Path], fmt: OutputFormat, stats: RunStats, sink,
                      input_format: str, chunk_size: int, batch_size: int, progress: bool,
                      max_doc_chars: int | None) -> RunStats:
    """The loop: read (skipping the ``stats.records`` already done), annotate and commit chunk by chunk."""
    from tqdm import tqdm

    records = itertools.islice(iter_all_records(inputs, input_format, fmt=fmt, max_doc_chars=max_doc_chars),
                               stats.records, None)
    with tqdm(desc="annotate", unit="tok", unit_scale=True, file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        bar.set_postfix(docs=stats.documents, failed=stats.errors, refresh=False)
        for chunk in annotate_chunks(engine, records, chunk_size, batch_size, stats.documents,
                                     on_tokens=bar.update if progress else None):
            stats.add(chunk.stats)
            sink.commit(chunk.texts(fmt), stats.to_dict())
            bar.set_postfix(docs=stats.documents, failed=stats.errors)
    return stats
