"""The Annotate tab: a text, a pruning setting -> entities, pruned tokens, recovery, speed vs dense.

A thin Gradio adapter: :func:`annotate_outputs` calls :func:`webapp.annotate.compare` and the pure
views; :func:`build_annotate_tab` lays out the components and wires the button.
"""
from __future__ import annotations

import logging

import gradio as gr

from webapp import views
from webapp.annotate import compare
from webapp.context import AppContext
from webapp.engines import CONTROLLER_CHOICES, MAX_LAMBDA, PruningChoice, default_lambda
from webapp.errors import user_facing
from webapp.examples import load_examples

DEFAULTS = PruningChoice()  # the engine's pruning defaults, as the controls start
logger = logging.getLogger(__name__)


def annotate_outputs(ctx: AppContext, text: str, controller: str, aggressiveness: float, min_keep_ratio: float,
                     recovery: bool) -> tuple:
    """The eight output values of the tab, in the order of :data:`OUTPUT_NAMES`."""
    choice = PruningChoice(controller=controller, aggressiveness=aggressiveness, min_keep_ratio=min_keep_ratio,
                           recovery=recovery)
    c = compare(ctx.hub, text, choice, ctx.settings.max_text_chars)
    result = c.result
    trace = result.trace
    return (views.summary_markdown(c),
            views.entity_highlights(c.dense),
            views.entity_highlights(result),
            views.diff_rows(c.dense, c.pruned),
            views.pruned_highlights(result),
            views.importance_heatmap_html(result),
            views.layer_rows(trace, c.dense_tokens, c.n_layers),
            views.recovery_rows(trace, c.text, c.token_offsets))


OUTPUT_NAMES = ("summary", "dense entities", "entities", "dense vs pruned", "pruned tokens", "heat-map",
                "tokens per layer", "recovery events")


def build_annotate_tab(ctx: AppContext) -> gr.Radio:
    """The tab's components and events, inside an open ``gr.Blocks``/``gr.Tab`` context.

    Returns the controller choice, whose help text :func:`controller_info` refreshes on page load.
    """
    examples = load_examples(ctx.settings.examples_dir)
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Abstract", lines=9, max_lines=20, elem_id="text",
                              value=examples[0].text if examples else "",
                              placeholder="Paste a PubMed title and abstract …",
                              info=f"Up to {ctx.settings.max_text_chars:,} characters.")
            if examples:
                gr.Examples(examples=[[e.text] for e in examples], inputs=[text], label="Example abstracts",
                            example_labels=[e.label for e in examples], cache_examples=False,
                            elem_id="examples")
        with gr.Column(scale=2):
            controller = gr.Radio(choices=list(CONTROLLER_CHOICES), value="rule", label="Controller",
                                  info=ctx.hub.mlp_status(), elem_id="controller")
            aggressiveness = gr.Slider(0.0, MAX_LAMBDA, value=DEFAULTS.aggressiveness, step=0.1,
                                       label="λ (aggressiveness)", elem_id="lambda",
                                       info="Higher prunes tokens the exit head is less sure about; picking a "
                                            "controller sets its default.")
            min_keep = gr.Slider(0.05, 1.0, value=DEFAULTS.min_keep_ratio, step=0.05, label="min_keep_ratio",
                                 info="At least this fraction of each sequence's tokens runs every layer.")
            recovery = gr.Checkbox(value=DEFAULTS.recovery, label="Recovery",
                                   info="Re-insert pruned tokens and re-run later layers when the result looks unsafe.")
            button = gr.Button("Annotate", variant="primary", elem_id="annotate-btn")
    summary = gr.Markdown(elem_id="summary")
    gr.Markdown("### Entities: dense vs the chosen setting")
    with gr.Row():
        dense_entities = gr.HighlightedText(label="Dense model", color_map=views.ENTITY_COLORS, show_legend=True,
                                            elem_id="entities-dense")
        entities = gr.HighlightedText(label="Chosen setting", color_map=views.ENTITY_COLORS, show_legend=True,
                                      elem_id="entities")
    diff = gr.Dataframe(headers=views.DIFF_HEADERS, label="Dense vs pruned entities (✗ marks a difference)",
                        interactive=False, wrap=True, elem_id="diff")
    gr.Markdown("### What pruning did")
    pruned = gr.HighlightedText(label="Pruned tokens, by the layer after which they left the sequence",
                                color_map=views.pruned_color_map(ctx.hub.prune_points), show_legend=True,
                                show_inline_category=False, elem_id="pruned")
    heatmap = gr.HTML(label="Importance heat-map", elem_id="heatmap")
    with gr.Row():
        layers = gr.Dataframe(headers=views.LAYER_HEADERS, label="Tokens per layer", interactive=False,
                              elem_id="layers")
        recovery_events = gr.Dataframe(headers=views.RECOVERY_HEADERS, label="Recovery events",
                                       interactive=False, wrap=True, elem_id="recovery")

    @user_facing("annotating")
    def annotate(text_value, controller_value, lam, keep, recover):
        return annotate_outputs(ctx, text_value, controller_value, lam, keep, recover)

    outputs = [summary, dense_entities, entities, diff, pruned, heatmap, layers, recovery_events]
    button.click(annotate, inputs=[text, controller, aggressiveness, min_keep, recovery], outputs=outputs,
                 api_name="annotate", concurrency_limit=ctx.settings.annotate_concurrency,
                 concurrency_id="annotate")
    controller.change(default_lambda, inputs=controller, outputs=aggressiveness, api_visibility="private")
    return controller


def controller_info(ctx: AppContext):
    """Fresh MLP availability for the controller's help text (the file may appear while the app runs)."""
    return gr.update(info=ctx.hub.mlp_status())
