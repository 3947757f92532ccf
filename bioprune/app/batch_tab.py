"""The Batch tab: upload files -> download annotated PubTator / JSONL / CSV / BioC JSON, with progress and a summary.

A thin Gradio adapter over :mod:`bioprune.app.batch_job`.
"""
from __future__ import annotations

import logging
import shutil

import gradio as gr

from bioprune.app.batch_job import (ACCEPTED_SUFFIXES, FORMAT_CHOICES, check_uploads, error_rows, new_run_dir, run_batch,
                              summary_rows)
from bioprune.app.context import AppContext
from bioprune.app.controls import pruning_controls, takes_settings
from bioprune.app.engines import PruningChoice
from bioprune.app.errors import user_facing

logger = logging.getLogger(__name__)
SAMPLE_FILE = "batch_sample.pubtator"


def batch_outputs(ctx: AppContext, files, formats=None, progress: gr.Progress | None = None, **values) -> tuple:
    """(download paths, summary rows, error rows) for one run; UserError for a bad upload.

    ``formats``: output format names (:data:`FORMAT_CHOICES`); None is every one. ``values``: the
    pruning settings by key (:class:`~bioprune.app.engines.PruningChoice`).
    """
    s = ctx.settings
    all_formats = [name for _, name in FORMAT_CHOICES]
    paths = check_uploads(files, s.max_files, s.max_file_bytes)
    engine = ctx.hub.engine_for(PruningChoice(**values))

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc=f"annotating: {done:,} of {total:,} documents", unit="documents")

    run_dir = new_run_dir(ctx.batch_dir, s.keep_batch_runs)
    try:
        result = run_batch(engine, paths, run_dir, limit=s.max_batch_documents, chunk_docs=s.batch_chunk_docs,
                           on_progress=on_progress, formats=all_formats if formats is None else formats)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing to download from a failed run
        raise
    if result.stats.errors:
        gr.Warning(f"{result.stats.errors:,} record(s) could not be read; they are listed below and in "
                   "bioprune_errors.jsonl. Everything else was annotated.")
    if result.over_limit:
        gr.Warning(f"Only the first {result.limit:,} documents were annotated (the app's limit). "
                   "Use `bioprune annotate` for the rest.")
    return [str(p) for p in result.outputs], summary_rows(result), error_rows(result)


def sample_file(ctx: AppContext) -> list[str] | None:
    """A copy of the example PubTator file in the app's output directory, as the upload box's value.

    A list: the box takes several files, and Gradio refuses a bare path there when the run starts.
    """
    source = ctx.settings.examples_dir / SAMPLE_FILE
    if not source.is_file():
        gr.Warning("The sample file is not available in this installation.")
        return None
    target = ctx.output_dir / "sample" / SAMPLE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return [str(target)]


def build_batch_tab(ctx: AppContext) -> gr.Radio:
    """The tab's components and events, inside an open ``gr.Blocks``/``gr.Tab`` context.

    Returns the controller choice, whose help text :func:`bioprune.app.annotate_tab.controller_info`
    refreshes on page load. The pruning controls are the settings of bioprune.options, as in the
    Annotate tab (:mod:`bioprune.app.controls`).
    """
    s = ctx.settings
    gr.Markdown(f"Upload up to {s.max_files} files (each up to {s.max_file_bytes // 2**20} MiB): PubTator, PubMed "
                "XML (`.xml`, `.xml.gz`), JSONL or plain text (each non-blank line is a document). The format is "
                f"detected from the content. At most {s.max_batch_documents:,} documents per run; "
                "`bioprune annotate` has no limit.")
    with gr.Row():
        with gr.Column(scale=3):
            files = gr.File(label="Input files", file_count="multiple", file_types=list(ACCEPTED_SUFFIXES),
                            elem_id="batch-files")
            sample = gr.Button("Load a sample PubTator file", size="sm", elem_id="batch-sample")
        with gr.Column(scale=2):
            controls = pruning_controls(ctx.hub.exit_layers, "batch")
            formats = gr.CheckboxGroup(choices=list(FORMAT_CHOICES), value=[name for _, name in FORMAT_CHOICES],
                                       label="Output formats", elem_id="batch-formats")
            button = gr.Button("Annotate files", variant="primary", elem_id="batch-btn")
    downloads = gr.File(label="Annotated files (the chosen formats; errors if any)", file_count="multiple",
                        interactive=False, elem_id="batch-downloads")
    summary = gr.Dataframe(headers=["measure", "value"], label="Summary", interactive=False, wrap=True,
                           elem_id="batch-summary")
    errors = gr.Dataframe(headers=["file", "record id", "line", "reason"], label="Records that failed (first 50)",
                          interactive=False, wrap=True, elem_id="batch-errors")

    @user_facing("running the batch")
    @takes_settings
    def annotate_files(files, formats=None, progress=gr.Progress(), **values):
        return batch_outputs(ctx, files, formats, progress, **values)

    button.click(annotate_files, inputs=[files], inputs_kwargs={**controls, "formats": formats},
                 outputs=[downloads, summary, errors], api_name="annotate_files", show_progress_on=downloads,
                 concurrency_limit=s.batch_concurrency, concurrency_id="batch")
    sample.click(lambda: sample_file(ctx), outputs=files, api_visibility="private")
    return controls["controller"]
