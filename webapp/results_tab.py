"""The Results tab: the evaluation suite's charts (``results/*.png``) and the dense scores.

A thin Gradio adapter over :mod:`webapp.results`; *Reload* picks up charts written after start-up.
"""
from __future__ import annotations

import gradio as gr

from webapp.context import AppContext
from webapp.results import (SCORE_HEADERS, charts_note, dense_score_rows, find_charts, scores_note,
                            stage_charts)


def results_values(ctx: AppContext) -> tuple:
    """(charts note, gallery items, scores note, score rows) as they are on disk now."""
    results_dir = ctx.settings.results_dir
    charts = stage_charts(find_charts(results_dir), ctx.charts_dir)
    rows = dense_score_rows(results_dir)
    return (charts_note(results_dir, charts), [(str(c.path), c.caption) for c in charts],
            scores_note(results_dir, rows), rows or [])


def build_results_tab(ctx: AppContext) -> None:
    note, items, score_note, rows = results_values(ctx)  # globbed once at start-up
    charts_md = gr.Markdown(note, elem_id="charts-note")
    gallery = gr.Gallery(value=items, label="Charts", columns=2, height="auto", object_fit="contain",
                         visible=True, elem_id="charts")
    scores_md = gr.Markdown(score_note)
    scores = gr.Dataframe(value=rows, headers=SCORE_HEADERS, label="Dense F1 per type", interactive=False,
                          elem_id="scores")
    reload = gr.Button("Reload", size="sm")
    reload.click(lambda: results_values(ctx), outputs=[charts_md, gallery, scores_md, scores],
                 api_name="reload_results")
