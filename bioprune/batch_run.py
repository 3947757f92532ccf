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
uninterrupted run would. Output to a stream (``output=None``) has no journal and no resume.
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from bioprune.io.checkpoint import CheckpointedOutput, completed_state
from bioprune.io.inputs import iter_records
from bioprune.io.outputs import OutputFormat
from bioprune.io.records import DeletedRecord, Record, RecordError
from bioprune.types import Document

logger = logging.getLogger(__name__)
DEFAULT_CHUNK_DOCS = 256  # records read, annotated and committed together: bounds memory, sets resume granularity


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
        return 1.0 - self.flops / self.dense_flops if self.dense_flops else 0.0

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.wall_s if self.wall_s else 0.0

    def summary_line(self, wall_s: float | None = None) -> str:
        """One line for the end of a run; ``wall_s`` overrides the summed time (Ray: elapsed time)."""
        wall_s = self.wall_s if wall_s is None else wall_s
        rate = self.documents / wall_s if wall_s else 0.0
        entities = ", ".join(f"{label}: {n}" for label, n in sorted(self.entities.items())) or "no entities"
        pruning = (f"; tokens pruned {self.tokens_pruned_ratio:.1%}, FLOPs saved {self.flops_saved_ratio:.1%}"
                   if self.dense_flops else "; dense (no pruning)")
        return (f"annotated {self.documents} documents ({self.errors} failed, {self.deleted} deleted) in "
                f"{wall_s:.1f} s, {rate:.1f} docs/s; {entities}{pruning}")


def record_line(record: RecordError | DeletedRecord) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False) + "\n"


def iter_all_records(paths: Sequence[str | Path], input_format: str = "auto") -> Iterator[Record]:
    for path in paths:
        yield from iter_records(path, input_format)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameters
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20  # in "flat" mode, allocations from 1 MiB up (tensors) get their own mapping
MEMORY_MODES = ("flat", "fast")


def limit_malloc_growth(mode: str = "flat", arenas: int = 2) -> bool:
    """Set glibc malloc up for a long batch run; call before torch or the tokenizer start threads.

    A batch run allocates tensors of ever-new shapes (batches are as long as their documents). glibc
    raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so after warm-up
    tensors live in the heap, and freed holes of different sizes pile up: the peak RSS grows with
    the input although the working set does not. Both modes cap the arenas at ``arenas`` (like
    ``MALLOC_ARENA_MAX``), which bounds the per-thread heaps. ``"flat"`` also fixes the threshold at
    1 MiB (like ``MALLOC_MMAP_THRESHOLD_``): every tensor gets its own mapping, returned to the OS
    when freed, so the peak stays flat however long the input (MEDLINE slice given 1x, 4x, 16x:
    results/benchmark_batch.json) — but fresh mappings are page-faulted in for every tensor, which
    cost about 30% of throughput on a 2-core machine. ``"fast"`` keeps glibc's adaptive threshold.
    False where there is no glibc.
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
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    return ok and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) if mode == "flat" else ok


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def annotate_chunk(engine, chunk: list[Record], fmt: OutputFormat, first_index: int,
                   batch_size: int) -> tuple[dict[str, str], RunStats]:
    """Annotate one chunk of records: its texts keyed "output"/"errors"/"deleted", and its stats."""
    docs = [r for r in chunk if isinstance(r, Document)]
    annotations = engine.annotate(docs, batch_size=batch_size) if docs else []
    stats = RunStats(records=len(chunk), documents=len(docs), chunks=1)
    stats.errors = sum(isinstance(r, RecordError) for r in chunk)
    stats.deleted = sum(isinstance(r, DeletedRecord) for r in chunk)
    stats.entities = dict(sorted(Counter(e.label for a in annotations for e in a.entities).items()))
    for a in annotations:
        if a.trace is not None:
            stats.tokens += a.trace.tokens_per_layer[0] if a.trace.tokens_per_layer else 0
            stats.tokens_pruned += len(a.trace.pruned_tokens)
            stats.flops += a.trace.flops
            stats.dense_flops += a.trace.dense_flops
            stats.recovered_documents += bool(a.trace.recovery_events)
    texts = {"output": fmt.format(zip(annotations, docs), first_index),
             "errors": "".join(record_line(r) for r in chunk if isinstance(r, RecordError)),
             "deleted": "".join(record_line(r) for r in chunk if isinstance(r, DeletedRecord))}
    return texts, stats


def annotate_files(engine, inputs: Sequence[str | Path], output: str | Path | None, fmt: OutputFormat, *,
                   input_format: str = "auto", chunk_size: int = DEFAULT_CHUNK_DOCS, batch_size: int = 16,
                   resume: bool = False, fingerprint: dict | None = None, progress: bool = False,
                   stream: TextIO | None = None, report: TextIO | None = None) -> RunStats:
    """Annotate every record of ``inputs`` into ``output`` (a path) or ``stream`` (when output is None).

    ``fingerprint`` identifies the job for ``resume`` (see :class:`CheckpointedOutput`); errors and
    deletions go to the side files of ``output``, or as lines to ``report`` (default stderr) when
    writing to a stream.
    """
    from tqdm import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    fingerprint = fingerprint or {}
    checkpoint = None
    stats = RunStats()
    if output is not None:
        if resume and (done := completed_state(output, fingerprint)) is not None:
            logger.info("%s is complete: nothing to resume", output)
            return RunStats.from_dict(done)
        checkpoint = CheckpointedOutput(output, fingerprint, resume, header=fmt.header())
        stats = RunStats.from_dict(checkpoint.state)
        if checkpoint.done:
            return stats
    else:
        stream = stream or sys.stdout
        report = report or sys.stderr
        stream.write(fmt.header())
    records = itertools.islice(iter_all_records(inputs, input_format), stats.records, None)
    with tqdm(desc="annotate", unit="doc", initial=stats.records, file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        started = time.perf_counter()
        for chunk in _chunks(records, chunk_size):
            texts, chunk_stats = annotate_chunk(engine, chunk, fmt, stats.documents, batch_size)
            stats.add(chunk_stats)
            now = time.perf_counter()
            stats.wall_s += now - started
            started = now
            if checkpoint is not None:
                checkpoint.commit(texts, stats.to_dict())
            else:
                stream.write(texts["output"])
                stream.flush()
                for key in ("errors", "deleted"):
                    for line in texts[key].splitlines():
                        report.write(f"bioprune: {key}: {line}\n")
            bar.update(len(chunk))
            bar.set_postfix(failed=stats.errors, refresh=False)
    if checkpoint is not None:
        checkpoint.finish(fmt.footer(), stats.to_dict())
    else:
        stream.write(fmt.footer())
        stream.flush()
    return stats
