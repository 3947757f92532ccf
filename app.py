"""Gradio app (a Hugging Face Space) over the bioprune engine: highlighted entities for a text.

    python app.py

Minimal until its own issue (#7) adds pruning views, the batch tab and browser tests. Needs
``pip install gradio``.
"""
from __future__ import annotations

from bioprune import PruningEngine

EXAMPLE = open("examples/abstract.txt", encoding="utf-8").read().strip()


def build_app(engine: PruningEngine):
    import gradio as gr

    def annotate(text: str):
        [ann] = engine.annotate([text])
        return {"text": text, "entities": [{"start": e.start, "end": e.end, "entity": e.label}
                                            for e in ann.entities]}

    return gr.Interface(fn=annotate, inputs=gr.Textbox(lines=8, value=EXAMPLE, label="Abstract"),
                        outputs=gr.HighlightedText(label="Entities"), title="bioprune")


if __name__ == "__main__":
    build_app(PruningEngine.from_pretrained()).launch()
