"""The Annotate tab: a text, a pruning setting -> entities, pruned tokens, recovery, speed vs dense.

A thin Gradio adapter: :func:`annotate_outputs` calls :func:`bioprune.app.annotate.compare` and the pure
views; :func:`build_annotate_tab` lays out the components and wires the button.
"""
from __future__ import annotations

import logging

import gradio as gr

from bioprune.app import views
from bioprune.app.annotate import compare, validate_text
from bioprune.app.context import AppContext
from bioprune.app.controls import api_inputs, pruning_controls, takes_settings
from bioprune.app.engines import PruningChoice, setting
from bioprune.app.errors import user_facing
from bioprune.app.examples import load_examples

logger = logging.getLogger(__name__)
HIGHLIGHT_CLASS = "bp-text"  # HighlightedText laid out as running text (bioprune.app.ui.APP_CSS)

# The /annotate endpoint's outputs, in order; each is also its component's label, so the API names them.
OUTPUT_NAMES = ("Summary", "Dense model", "Chosen setting", "Dense vs pruned entities",
                "Pruned tokens, on whole words", "Importance heat-map", "Tokens per layer", "Recovery events")


def annotate_outputs(ctx: AppContext, text: str, **values) -> tuple:
    """The eight output values of the tab, in the order of :data:`OUTPUT_NAMES` (plain values: the API's answer).

    ``values``: the pruning settings by key (:class:`~bioprune.app.engines.PruningChoice`).
    """
    choice = PruningChoice(**values)
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
            views.recovery_rows(trace, c.text, c.token_offsets, recovery=choice.config().recovery))


def pruned_legend_update(**values) -> dict:
    """The pruned-tokens legend for the chosen settings: the layers their config prunes after (none when dense).

    Sent right after each annotation (not in the /annotate answer, which stays plain values).
    """
    return gr.update(color_map=views.pruned_legend(PruningChoice(**values).config()))


def entities_answer(ctx: AppContext, text: str, **values) -> dict:
    """The ``/entities`` endpoint: one text through the chosen settings, as JSON (no dense comparison).

    A setting left out (or None) is its default; λ and the pruning layers then the controller's own.
    """
    text = validate_text(text, ctx.settings.max_text_chars)
    choice = PruningChoice(**values)
    [annotation] = ctx.hub.engine_for(choice).annotate([text])
    n_tokens = len(ctx.hub.dense.encode([text])[0].offsets)
    return views.entities_json(annotation, n_tokens, choice.describe())


def build_annotate_tab(ctx: AppContext) -> gr.Radio:
    """The tab's components and events, inside an open ``gr.Blocks``/``gr.Tab`` context.

    Returns the controller choice, whose help text :func:`controller_info` refreshes on page load.
    The pruning controls are the settings of bioprune.options (:mod:`bioprune.app.controls`).
    """
    examples = load_examples(ctx.settings.examples_dir)
    names = dict(zip(("summary", "dense", "entities", "diff", "pruned", "heatmap", "layers", "recovery"),
                     OUTPUT_NAMES))
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
            controls = pruning_controls(ctx.hub.exit_layers, "annotate")
            button = gr.Button("Annotate", variant="primary", elem_id="annotate-btn")
    summary = gr.Markdown(label=names["summary"], elem_id="summary")
    gr.Markdown("### Entities: dense vs the chosen setting")
    with gr.Row():
        dense_entities = gr.HighlightedText(label=names["dense"], color_map=views.ENTITY_COLORS, show_legend=True,
                                            show_inline_category=False, elem_id="entities-dense",
                                            elem_classes=[HIGHLIGHT_CLASS])
        entities = gr.HighlightedText(label=names["entities"], color_map=views.ENTITY_COLORS, show_legend=True,
                                      show_inline_category=False, elem_id="entities", elem_classes=[HIGHLIGHT_CLASS])
    diff = gr.Dataframe(headers=views.DIFF_HEADERS, datatype=views.DIFF_TYPES, label=names["diff"],
                        interactive=False, wrap=True, elem_id="diff")
    gr.Markdown("### What pruning did\nEach word with a pruned subword token is marked with the earliest layer "
                "after which one of its tokens left the sequence; the heat-map below shows single tokens.")
    pruned = gr.HighlightedText(label=names["pruned"], color_map=views.pruned_legend(PruningChoice().config()),
                                show_legend=True, show_inline_category=False, elem_id="pruned",
                                elem_classes=[HIGHLIGHT_CLASS])
    heatmap = gr.HTML(label=names["heatmap"], elem_id="heatmap")
    with gr.Row():
        layers = gr.Dataframe(headers=views.LAYER_HEADERS, label=names["layers"], interactive=False,
                              elem_id="layers")
        recovery_events = gr.Dataframe(headers=views.RECOVERY_HEADERS, label=names["recovery"],
                                       interactive=False, wrap=True, elem_id="recovery",
                                       column_widths=["20%", "14%", "30%", "18%", "18%"])

    # The /entities endpoint, for API users only: hidden components give its inputs and its answer names
    with gr.Column(visible=False):
        api_text = gr.Textbox(label="text")
        api_settings = api_inputs(ctx.hub.exit_layers)
        api_answer = gr.JSON(label="entities and trace summary")
        api_button = gr.Button("entities")

    @user_facing("annotating")
    @takes_settings
    def annotate(text, **values):
        return annotate_outputs(ctx, text, **values)

    @user_facing("annotating")
    @takes_settings
    def entities_endpoint(text, **values):
        """Entities of one text as JSON: {"entities": [{start, end, label, text, score, ids}], "trace": {...}}.

        Every setting may be left out: it is then its default (λ and the pruning layers: the controller's own).
        """
        return entities_answer(ctx, text, **values)

    outputs = [summary, dense_entities, entities, diff, pruned, heatmap, layers, recovery_events]
    button.click(annotate, inputs=[text], inputs_kwargs=controls, outputs=outputs,
                 api_name="annotate", concurrency_limit=ctx.settings.annotate_concurrency,
                 concurrency_id="annotate"
                 ).success(user_facing("showing the legend")(pruned_legend_update), inputs_kwargs=controls,
                           outputs=pruned, api_visibility="private", queue=False)
    api_button.click(entities_endpoint, inputs=[api_text], inputs_kwargs=api_settings,
                     outputs=api_answer, api_name="entities", concurrency_limit=ctx.settings.annotate_concurrency,
                     concurrency_id="annotate")
    return controls["controller"]


def controller_info(ctx: AppContext):
    """The controller's help with fresh MLP availability (the file may appear while the app runs)."""
    return gr.update(info=f"{setting('controller').help}. {ctx.hub.mlp_status()}")
