"""The Results tab: the evaluation suite's charts, one full-width image with a caption each, and the dense scores.

A thin Gradio adapter over :mod:`bioprune.app.results`; *Reload* picks up charts written after start-up.
The list of charts travels as a JSON value ({"name", "caption"} per chart: no server paths), and
:func:`gr.render` draws one ``gr.Image`` per entry, so a new chart gets its own image too.
"""
from __future__ import annotations

import gradio as gr

from bioprune.app.context import AppContext
from bioprune.app.results import (SCORE_HEADERS, charts_note, dense_score_rows, find_charts, scores_note,
                            stage_charts)

CHART_CLASS = "bp-chart"


def results_values(ctx: AppContext) -> tuple:
    """(charts note, chart list, scores note, score rows) as they are on disk now; charts staged in the app's dir."""
    results_dir = ctx.settings.results_dir
    charts = stage_charts(find_charts(results_dir), ctx.charts_dir)
    rows = dense_score_rows(results_dir)
    return (charts_note(results_dir, charts), [{"name": c.path.name, "caption": c.caption} for c in charts],
            scores_note(results_dir, rows), rows or [])


def build_results_tab(ctx: AppContext) -> None:
    note, charts, score_note, rows = results_values(ctx)  # globbed once at start-up
    charts_md = gr.Markdown(note, label="Charts note", elem_id="charts-note")
    listing = gr.JSON(value=charts, label="Charts", visible=False, elem_id="charts-list")
    with gr.Column(elem_id="charts"):
        @gr.render(inputs=listing)
        def show_charts(items):
            for number, item in enumerate(items or [], start=1):
                path = ctx.charts_dir / item["name"]
                if not path.is_file():  # a Reload replaced the staged copies since this list was made
                    continue
                gr.Image(value=str(path), label=f"Figure {number}", show_label=True, interactive=False,
                         buttons=["download", "fullscreen"], elem_classes=[CHART_CLASS])
                gr.Markdown(f"**Figure {number}.** {item['caption']}", elem_classes=[f"{CHART_CLASS}-caption"])
    scores_md = gr.Markdown(score_note, label="Scores note")
    scores = gr.Dataframe(value=rows, headers=SCORE_HEADERS, label="Dense F1 per type", interactive=False,
                          elem_id="scores")
    reload = gr.Button("Reload", size="sm")
    reload.click(lambda: results_values(ctx), outputs=[charts_md, listing, scores_md, scores],
                 api_name="reload_results")
