"""The Batch tab's job: uploaded files -> annotated PubTator, JSONL, CSV and BioC JSON, plus a summary.

Pure Python over bioprune's batch annotator: records come from :func:`bioprune.batch_run.iter_all_records`
(every reader in :mod:`bioprune.io`, format detected from the content), each chunk goes through
:func:`bioprune.batch_run.annotate_chunks`, and the writers are bioprune's own (``bioprune.io.csv_table``
for CSV). One annotation pass feeds every chosen output. Everything is written into one new folder
under the app's output directory; uploads are only read.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bioprune.batch_run import RunStats, annotate_chunks, iter_all_records
from bioprune.types import format_flops_saved
from bioprune.io.compression import GZIP_MAGIC, open_binary
from bioprune.io.outputs import OUTPUT_FORMATS, output_format
from bioprune.io.records import RecordError
from bioprune.types import Document

from bioprune.app.errors import UserError

logger = logging.getLogger(__name__)

# file names the Batch tab accepts (the content decides the format; gzip is recognised by its bytes)
ACCEPTED_SUFFIXES = (".txt", ".text", ".pubtator", ".xml", ".jsonl", ".ndjson", ".json", ".gz")
OUTPUT_STEM = "bioprune_annotated"
SNIFF_BYTES = 8192

ProgressCallback = Callable[[int, int], None]  # (documents done, documents to do)
# the output formats offered, as (label, name): every format the CLI writes (bioprune.io.outputs)
FORMAT_LABELS = {"pubtator": "PubTator", "jsonl": "JSONL", "csv": "CSV", "bioc": "BioC JSON"}
FORMAT_CHOICES: tuple[tuple[str, str], ...] = tuple((FORMAT_LABELS.get(name, name), name) for name in OUTPUT_FORMATS)


@dataclass
class BatchResult:
    """What one batch run produced: the files to download, totals, failed records and what was left out."""

    run_dir: Path
    outputs: list[Path]
    stats: RunStats
    files: list[str]  # the uploaded file names, in order
    errors: list[dict] = field(default_factory=list)  # {"file", "record_id", "line", "reason"}
    over_limit: bool = False  # more documents than the app's limit: only the first ones were annotated
    limit: int = 0
    dense: bool = True


def display_name(path: str | Path) -> str:
    """The uploaded file's own name (Gradio keeps it as the last path part), never the server path."""
    return Path(path).name


def check_uploads(paths: Sequence[str | Path] | None, max_files: int, max_file_bytes: int) -> list[Path]:
    """The uploaded files, or UserError naming the first one that is missing, too big or of a wrong type."""
    if not paths:
        raise UserError("Upload at least one file (PubTator, PubMed XML .xml/.xml.gz, JSONL or plain text).")
    if len(paths) > max_files:
        raise UserError(f"{len(paths)} files uploaded; the app takes at most {max_files} per run.")
    checked = []
    for raw in paths:
        path = Path(raw)
        name = display_name(path)
        if not path.is_file():
            raise UserError(f"{name}: the upload is missing on the server; upload it again.")
        if not name.lower().endswith(ACCEPTED_SUFFIXES):
            raise UserError(f"{name}: not a file type the app reads. Upload PubTator (.txt/.pubtator), PubMed "
                            "XML (.xml, .xml.gz), JSONL (.jsonl) or plain text (.txt, one document per line).")
        size = path.stat().st_size
        if size > max_file_bytes:
            raise UserError(f"{name}: {size / 2**20:,.1f} MiB; the app takes files up to "
                            f"{max_file_bytes / 2**20:,.0f} MiB. Use `bioprune annotate` for bigger ones.")
        if size == 0:
            raise UserError(f"{name}: the file is empty.")
        _check_content(path, name)
        checked.append(path)
    return checked


def _check_content(path: Path, name: str) -> None:
    """UserError for a broken gzip or a binary file (an image, a PDF, ...) under an accepted name."""
    try:
        with open_binary(path) as handle:
            head = handle.read(SNIFF_BYTES)
    except (OSError, EOFError) as err:
        raise UserError(f"{name}: cannot be read ({err}); is it a complete .gz file?") from None
    if not head:
        raise UserError(f"{name}: no content after decompression.")
    if b"\x00" in head or head.startswith((b"%PDF", b"\x89PNG", b"PK\x03\x04", GZIP_MAGIC)):
        raise UserError(f"{name}: looks like a binary file, not text or XML. Upload PubTator, PubMed XML, "
                        "JSONL or plain text.")


class _AllWriters:
    """Screens a document against every chosen writer (``OutputFormat.problem``): one that any of them
    cannot write (a PubTator id holding '|') becomes an error record, as in ``bioprune annotate``."""

    def __init__(self, writers: dict):
        self.writers = writers

    def problem(self, document: Document) -> str | None:
        return next((p for w in self.writers.values() if (p := w.problem(document)) is not None), None)


def count_documents(paths: Sequence[Path], limit: int, writers: dict | None = None) -> tuple[int, list[RecordError]]:
    """Documents in ``paths`` (reading stops after ``limit + 1``) and the read errors met on the way
    (also documents one of ``writers`` cannot write)."""
    documents, errors = 0, []
    for record in iter_all_records(paths, fmt=_AllWriters(writers or {})):
        if isinstance(record, Document):
            documents += 1
            if documents > limit:
                break
        elif isinstance(record, RecordError) and len(errors) < 20:
            errors.append(record)
    return documents, errors


def output_formats(names: Sequence[str] | None) -> dict:
    """The writers for the chosen format ``names`` (in :data:`FORMAT_CHOICES` order); UserError when none
    or an unknown one is chosen."""
    chosen = list(dict.fromkeys(names or ()))
    if not chosen:
        raise UserError("Choose at least one output format (PubTator, JSONL, CSV or BioC JSON).")
    if unknown := [n for n in chosen if n not in OUTPUT_FORMATS]:
        raise UserError(f"Unknown output format {unknown[0]!r}: choose from {', '.join(OUTPUT_FORMATS)}.")
    return {name: output_format(name) for name in OUTPUT_FORMATS if name in chosen}


def _limited(records: Iterable, limit: int) -> Iterable:
    """Records up to and including the ``limit``-th document (errors and deletions pass through)."""
    documents = 0
    for record in records:
        if isinstance(record, Document):
            if documents == limit:
                return
            documents += 1
        yield record


def new_run_dir(out_root: Path, keep: int) -> Path:
    """A fresh folder for one run under ``out_root``; older runs beyond the newest ``keep`` are removed."""
    out_root.mkdir(parents=True, exist_ok=True)
    runs = sorted((p for p in out_root.glob("run-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    run_dir = out_root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    return run_dir


def run_batch(engine, paths: Sequence[Path], run_dir: Path, *, limit: int, chunk_docs: int = 32,
              batch_size: int = 16, on_progress: ProgressCallback | None = None,
              formats: Sequence[str] = OUTPUT_FORMATS) -> BatchResult:
    """Annotate every document of ``paths`` (at most ``limit``) into each of ``formats`` in ``run_dir``.

    Failed records (a broken PubTator block, bad XML, invalid UTF-8, ...) go to
    ``bioprune_errors.jsonl`` and the run goes on; PubMed DeleteCitations to ``bioprune_deleted.jsonl``.
    UserError when no document at all could be read.
    """
    writers = output_formats(formats)  # a bad choice is refused before any reading
    names = {str(p): display_name(p) for p in paths}
    total, early_errors = count_documents(paths, limit, writers)
    if total == 0:
        reasons = "; ".join(f"{display_name(e.source)}: {e.reason}" for e in early_errors[:3])
        raise UserError("No documents could be read from the upload" + (f" ({reasons})." if reasons else "."))
    over_limit = total > limit
    total = min(total, limit)
    stats, errors, deleted = RunStats(), [], []
    outputs = {name: run_dir / f"{OUTPUT_STEM}{fmt.extension}" for name, fmt in writers.items()}
    with contextlib.ExitStack() as stack:
        handles = {name: stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
                   for name, path in outputs.items()}
        for name, fmt in writers.items():
            handles[name].write(fmt.header())
        if on_progress:
            on_progress(0, total)
        records = _limited(iter_all_records(paths, fmt=_AllWriters(writers)), limit)
        for chunk in annotate_chunks(engine, records, chunk_docs, batch_size):  # one pass feeds every format
            for name, fmt in writers.items():
                handles[name].write(fmt.format(chunk.pairs, chunk.first_index))
            errors += [{**r.to_dict(), "file": display_name(r.source)} for r in chunk.failed]
            deleted += [{**r.to_dict(), "file": display_name(r.source)} for r in chunk.deleted]
            stats.add(chunk.stats)
            if on_progress:
                on_progress(stats.documents, total)
        for name, fmt in writers.items():
            handles[name].write(fmt.footer())
    files = list(outputs.values())
    for kind, entries in (("errors", errors), ("deleted", deleted)):
        if entries:
            path = run_dir / f"bioprune_{kind}.jsonl"
            path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
            files.append(path)
    logger.info("batch run %s: %s", run_dir.name, stats.summary_line())
    return BatchResult(run_dir=run_dir, outputs=files, stats=stats, files=list(names.values()), errors=errors,
                       over_limit=over_limit, limit=limit, dense=not engine.config.enabled)


def summary_rows(result: BatchResult) -> list[list[str]]:
    """The summary table: [measure, value] rows."""
    s = result.stats
    rows = [["files", ", ".join(result.files)],
            ["documents annotated", f"{s.documents:,}"]]
    labels = ["Chemical", "Disease", *sorted(set(s.entities) - {"Chemical", "Disease"})]  # the two types always
    rows += [[f"entities: {label}", f"{s.entities.get(label, 0):,}"] for label in labels]
    rows.append(["records that failed (see bioprune_errors.jsonl)", f"{s.errors:,}"])
    if s.deleted:
        rows.append(["deleted citations (PubMed DeleteCitation)", f"{s.deleted:,}"])
    rows.append(["documents over the app's limit", f"more than {result.limit:,}: only the first {result.limit:,} "
                 "were annotated" if result.over_limit else "none"])
    if result.dense:
        rows += [["tokens pruned", "– (dense model)"], ["FLOPs saved", "– (dense model)"]]
    else:
        rows += [["tokens pruned", f"{s.tokens_pruned:,} of {s.tokens:,} ({s.tokens_pruned_ratio:.1%})"],
                 ["FLOPs saved", format_flops_saved(s.flops_saved_ratio)],
                 ["documents with recovery", f"{s.recovered_documents:,}"]]
    rows.append(["time", f"{s.wall_s:.1f} s ({s.docs_per_s:.1f} documents/s)"])
    return rows


def error_rows(result: BatchResult, limit: int = 50) -> list[list]:
    """The first ``limit`` failed records: [file, record id, line, reason]."""
    return [[e["file"], e.get("record_id") or "", e.get("line") or "", e["reason"]] for e in result.errors[:limit]]
