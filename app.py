"""bioprune's Gradio app (the Hugging Face Space entry point): entities, pruned tokens, recovery, speed.

    python app.py                      # http://127.0.0.1:7860, the shipped model, offline

Tabs: Annotate (a text, dense vs pruned), Batch (files in, PubTator/JSONL/CSV/BioC JSON out), Results (the
evaluation suite's charts). The logic lives in the ``bioprune.app`` package; this file only loads the
model once and launches. Environment: ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` as usual.
"""
from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the shipped model is on disk: never reach for the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    import signal
    import sys

    from bioprune.batch_run import limit_malloc_growth

    limit_malloc_growth()  # before torch starts threads: tensors reuse the heap (docs/batch_annotation.md)
    import torch

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a normal exit, so the temp directory is removed

    from bioprune import PruningEngine
    from bioprune.app.settings import AppSettings, make_output_dir

    output_dir = make_output_dir(gradio_cache=True)  # before Gradio is imported: its uploads land here too
    from bioprune.app.ui import build_app, launch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AppSettings()
    torch.set_num_threads(settings.torch_threads())  # concurrent requests must not oversubscribe the CPUs
    engine = PruningEngine.from_pretrained()  # loaded once; every tab and request shares the weights
    engine.linker  # noqa: B018 -- the MeSH linker too (linking is on by default), not in the first request
    launch(build_app(engine, settings, output_dir=output_dir), settings)


if __name__ == "__main__":
    main()
