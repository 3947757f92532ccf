"""build_app(): the Blocks with the Annotate, Batch and Results tabs; launch(): serve it with the app's limits.

    engine = PruningEngine.from_pretrained()         # once, at start
    demo = build_app(engine)                         # no server yet
    launch(demo)                                     # python app.py

Files: the app writes only into its own temporary directory (removed at exit; ``app.py`` puts
Gradio's upload/cache directory there too). Gradio serves uploads, files the handlers return
(copied into its cache) and nothing else: no ``allowed_paths`` are given, so the repository and the
rest of the disk stay private.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no calls home

import gradio as gr  # noqa: E402

from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine  # noqa: E402

from bioprune.app.annotate_tab import HIGHLIGHT_CLASS, build_annotate_tab, controller_info  # noqa: E402
from bioprune.app.batch_tab import build_batch_tab  # noqa: E402
from bioprune.app.context import AppContext  # noqa: E402
from bioprune.app.engines import EngineHub  # noqa: E402
from bioprune.app.results_tab import build_results_tab  # noqa: E402
from bioprune.app.settings import AppSettings, make_output_dir  # noqa: E402

logger = logging.getLogger(__name__)
LAUNCH_ATTEMPTS = 3

# Gradio lays HighlightedText out as a wrapping flex row of boxes with side margins: a word cut into
# segments then looks split ("Electroencephalog raphy"), an entity gets a space after it ("Valproate
# -associated") and lines break inside words. Ours read as running text: the segments flow inline
# with the original spacing (the segments hold it), boxes get no margins, and the whitespace nodes
# of Gradio's markup take no room (font-size 0 around the text; a highlighted box is an inline-block
# sized by its text, so its colour shows).
APP_CSS = f"""
.{HIGHLIGHT_CLASS} .textfield {{ display: block !important; word-break: normal !important;
    overflow-wrap: break-word; font-size: 0; line-height: 1.9; }}
.{HIGHLIGHT_CLASS} .textfield .token-container, .{HIGHLIGHT_CLASS} .textfield .token {{ display: inline; font-size: 0; }}
.{HIGHLIGHT_CLASS} .textfield .text {{ font-size: var(--text-md); white-space: pre-wrap; }}
.{HIGHLIGHT_CLASS} .textfield .token.highlighted {{ display: inline-block; margin: 0 !important;
    padding: 0 !important; line-height: 1.5; border-radius: 3px; }}
.{HIGHLIGHT_CLASS} .textfield .line-break {{ display: block; height: 0; }}
"""

INTRO = """# bioprune: chemical and disease NER with adaptive token pruning
Entities of the BC5CDR types (**Chemical**, **Disease**) found by a BERT token classifier that lets tokens
leave the sequence after the first layers. See which tokens were pruned, when recovery re-inserted them,
and what it saved against the dense model on the same text."""


def build_app(engine: PruningEngine, settings: AppSettings | None = None, *, model_dir: str | Path | None = DEFAULT_MODEL_DIR,
              output_dir: str | Path | None = None) -> gr.Blocks:
    """The app over a loaded ``engine`` (its weights are shared by every tab and request).

    ``model_dir`` is where the MLP controller file may appear (the shipped model's directory by
    default); ``output_dir`` the only directory the app writes to (default: a new temporary one,
    removed at exit). The queue is set up; nothing is launched.
    """
    settings = settings or AppSettings()
    out = Path(output_dir) if output_dir is not None else make_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    ctx = AppContext(hub=EngineHub(engine, model_dir), settings=settings, output_dir=out)
    with gr.Blocks(title="bioprune: NER with adaptive token pruning", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Annotate", id="annotate"):
            controllers = [build_annotate_tab(ctx)]
        with gr.Tab("Batch", id="batch"):
            controllers.append(build_batch_tab(ctx))
        with gr.Tab("Results", id="results"):
            build_results_tab(ctx)
        for controller in controllers:
            demo.load(lambda: controller_info(ctx), outputs=controller, api_visibility="private")
    demo.queue(default_concurrency_limit=settings.annotate_concurrency, max_size=settings.queue_max_size)
    demo.bioprune_context = ctx  # for tests and the load script
    logger.info("app built; outputs in %s", out)
    return demo


def launch(demo: gr.Blocks, settings: AppSettings | None = None, **kwargs):
    """``demo.launch`` with the app's upload limit and no extra served paths; kwargs override (port, ...)."""
    settings = settings or AppSettings()
    options = dict(max_file_size=settings.max_file_bytes, show_error=False, ssr_mode=False,
                   footer_links=["api", "gradio"], css=APP_CSS) | kwargs
    if options.get("allowed_paths"):
        raise ValueError("the app serves only its own outputs: do not pass allowed_paths")
    for attempt in range(1, LAUNCH_ATTEMPTS + 1):
        try:
            return demo.launch(**options)
        except ValueError as err:
            # Gradio checks that the started server answers on localhost within 3 s (one HEAD request);
            # on a saturated CPU that check can time out although the server is fine: start again.
            if "localhost is not accessible" not in str(err) or attempt == LAUNCH_ATTEMPTS:
                raise
            logger.warning("Gradio's start-up check of localhost timed out (busy CPU?); retrying (%d/%d)",
                           attempt, LAUNCH_ATTEMPTS)
            demo.close()
