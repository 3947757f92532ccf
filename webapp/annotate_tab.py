"""The Annotate tab: a text, a pruning setting -> entities, pruned tokens, recovery, speed vs dense.

A thin Gradio adapter: :func:`annotate_outputs` calls :func:`webapp.annotate.compare` and the pure
views; :func:`build_annotate_tab` lays out the components and wires the button.
"""
from __future__ import annotations

import logging

import gradio as gr

from webapp import views
from webapp.annotate import compare, validate_text
from webapp.context import AppContext
from webapp.engines import CONTROLLER_CHOICES, MAX_LAMBDA, PRECISION_CHOICES, PruningChoice, default_lambda
from webapp.errors import user_facing
from webapp.examples import load_examples

DEFAULTS = PruningChoice()  # where the controls start: the engine's (and the CLI's) default, dense
logger = logging.getLogger(__name__)
HIGHLIGHT_CLASS = "bp-text"  # HighlightedText laid out as running text (webapp.ui.APP_CSS)

# The /annotate endpoint's outputs, in order; each is also its component's label, so the API names them.
OUTPUT_NAMES = ("Summary", "Dense model", "Chosen setting", "Dense vs pruned entities",
                "Pruned tokens, on whole words", "Importance heat-map", "Tokens per layer", "Recovery events")


def annotate_outputs(ctx: AppContext, text: str, controller: str, aggressiveness: float, min_keep_ratio: float,
                     recovery: bool, precision: str = DEFAULTS.precision) -> tuple:
    """The eight output values of the tab, in the order of :data:`OUTPUT_NAMES` (plain values: the API's answer)."""
    choice = PruningChoice(controller=controller, aggressiveness=aggressiveness, min_keep_ratio=min_keep_ratio,
                           recovery=recovery, precision=precision)
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


def pruned_legend_update(controller: str) -> dict:
    """The pruned-tokens legend for ``controller``: the layers its config prunes after (none when dense).

    Sent right after each annotation (not in the /annotate answer, which stays plain values).
    """
    return gr.update(color_map=views.pruned_legend(PruningChoice(controller=controller).config()))


def entities_answer(ctx: AppContext, text: str, controller: str = DEFAULTS.controller,
                    aggressiveness: float | None = None, min_keep_ratio: float = DEFAULTS.min_keep_ratio,
                    recovery: bool = DEFAULTS.recovery, precision: str = DEFAULTS.precision) -> dict:
    """The ``/entities`` endpoint: one text through the chosen setting, as JSON (no dense comparison).

    ``aggressiveness=None`` is the controller's own default λ.
    """
    text = validate_text(text, ctx.settings.max_text_chars)
    lam = default_lambda(controller) if aggressiveness is None else aggressiveness
    choice = PruningChoice(controller=controller, aggressiveness=lam, min_keep_ratio=min_keep_ratio,
                           recovery=recovery, precision=precision)
    engine = ctx.hub.engine_for(choice)
    [annotation] = engine.annotate([text])
    n_tokens = len(ctx.hub.dense.encode([text])[0].offsets)
    return views.entities_json(annotation, n_tokens, choice.describe())


def precision_control(elem_id: str = "precision") -> gr.Radio:
    """The precision choice (bioprune.options' choices and default), shared by both tabs."""
    return gr.Radio(choices=list(PRECISION_CHOICES), value=DEFAULTS.precision, label="Precision",
                    elem_id=elem_id, info="auto: bf16 where the CPU/GPU has native bf16, else fp32; "
                                              "fp32 with the dense model is the exact reference.")


def build_annotate_tab(ctx: AppContext) -> gr.Radio:
    """The tab's components and events, inside an open ``gr.Blocks``/``gr.Tab`` context.

    Returns the controller choice, whose help text :func:`controller_info` refreshes on page load.
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
            controller = gr.Radio(choices=list(CONTROLLER_CHOICES), value=DEFAULTS.controller, label="Controller",
                                  info=ctx.hub.mlp_status(), elem_id="controller")
            aggressiveness = gr.Slider(0.0, MAX_LAMBDA, value=DEFAULTS.aggressiveness, step=0.1,
                                       label="λ (aggressiveness)", elem_id="lambda",
                                       info="Higher prunes tokens the exit head is less sure about; picking a "
                                            "controller sets its default.")
            min_keep = gr.Slider(0.05, 1.0, value=DEFAULTS.min_keep_ratio, step=0.05, label="min_keep_ratio",
                                 info="At least this fraction of each sequence's tokens runs every layer.")
            recovery = gr.Checkbox(value=DEFAULTS.recovery, label="Recovery", elem_id="recovery-on",
                                   info="Re-insert pruned tokens and re-run later layers when the result looks unsafe.")
            precision = precision_control()
            button = gr.Button("Annotate", variant="primary", elem_id="annotate-btn")
    summary = gr.Markdown(label=names["summary"], elem_id="summary")
    gr.Markdown("### Entities: dense vs the chosen setting")
    with gr.Row():
        dense_entities = gr.HighlightedText(label=names["dense"], color_map=views.ENTITY_COLORS, show_legend=True,
                                            show_inline_category=False, elem_id="entities-dense",
                                            elem_classes=[HIGHLIGHT_CLASS])
        entities = gr.HighlightedText(label=names["entities"], color_map=views.ENTITY_COLORS, show_legend=True,
                                      show_inline_category=False, elem_id="entities", elem_classes=[HIGHLIGHT_CLASS])
    diff = gr.Dataframe(headers=views.DIFF_HEADERS, label=names["diff"], interactive=False, wrap=True,
                        elem_id="diff")
    gr.Markdown("### What pruning did\nEach word with a pruned subword token is marked with the earliest layer "
                "after which one of its tokens left the sequence; the heat-map below shows single tokens.")
    pruned = gr.HighlightedText(label=names["pruned"], color_map=views.pruned_legend(DEFAULTS.config()),
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
        api_controller = gr.Radio(choices=list(CONTROLLER_CHOICES), value=DEFAULTS.controller, label="controller")
        api_lambda = gr.Number(value=None, label="aggressiveness (λ; empty: the controller's default)")
        api_keep = gr.Number(value=DEFAULTS.min_keep_ratio, label="min_keep_ratio")
        api_recovery = gr.Checkbox(value=DEFAULTS.recovery, label="recovery")
        api_precision = gr.Radio(choices=list(PRECISION_CHOICES), value=DEFAULTS.precision, label="precision")
        api_answer = gr.JSON(label="entities and trace summary")
        api_button = gr.Button("entities")

    @user_facing("annotating")
    def annotate(text, controller, aggressiveness, min_keep_ratio, recovery, precision=DEFAULTS.precision):
        return annotate_outputs(ctx, text, controller, aggressiveness, min_keep_ratio, recovery, precision)

    @user_facing("annotating")
    def entities_endpoint(text, controller, aggressiveness=None, min_keep_ratio=None, recovery=None, precision=None):
        """Entities of one text as JSON: {"entities": [{start, end, label, text, score}], "trace": {...}}.

        The None defaults make those parameters optional for gradio_client (the hidden inputs'
        values fill them in); λ None is the controller's own default.
        """
        return entities_answer(ctx, text, controller, aggressiveness,
                               DEFAULTS.min_keep_ratio if min_keep_ratio is None else min_keep_ratio,
                               DEFAULTS.recovery if recovery is None else recovery,
                               DEFAULTS.precision if precision is None else precision)

    outputs = [summary, dense_entities, entities, diff, pruned, heatmap, layers, recovery_events]
    button.click(annotate, inputs=[text, controller, aggressiveness, min_keep, recovery, precision], outputs=outputs,
                 api_name="annotate", concurrency_limit=ctx.settings.annotate_concurrency,
                 concurrency_id="annotate"
                 ).success(user_facing("showing the legend")(pruned_legend_update), inputs=controller, outputs=pruned,
                           api_visibility="private", queue=False)
    api_button.click(entities_endpoint, inputs=[api_text, api_controller, api_lambda, api_keep, api_recovery,
                                                api_precision],
                     outputs=api_answer, api_name="entities", concurrency_limit=ctx.settings.annotate_concurrency,
                     concurrency_id="annotate")
    controller.change(default_lambda, inputs=controller, outputs=aggressiveness, api_visibility="private")
    return controller


def controller_info(ctx: AppContext):
    """Fresh MLP availability for the controller's help text (the file may appear while the app runs)."""
    return gr.update(info=ctx.hub.mlp_status())
