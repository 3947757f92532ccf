"""The Gradio app (a Hugging Face Space) over the bioprune engine; ``app.py`` at the repository root runs it.

    settings.py     AppSettings: limits, concurrency, where outputs go
    errors.py       UserError and the adapter that turns it into a message in the UI
    context.py      AppContext: the engines, settings and output directory the tabs share
    engines.py      EngineHub: the model loaded once; an engine per pruning choice; the MLP controller
    examples.py     the example abstracts shown in the Annotate tab (``examples/app/*.txt``)
    annotate.py     one request: validate the text, run dense and pruned, time both (pure)
    views.py        Annotation/Trace -> HighlightedText values, HTML heat-map, tables (pure)
    batch_job.py    uploaded files -> annotated PubTator/JSONL/CSV and a summary (pure, reuses bioprune.io)
    results.py      charts and scores from the evaluation suite in ``results/`` (pure)
    annotate_tab.py, batch_tab.py, results_tab.py   thin Gradio adapters, one per tab
    ui.py           build_app(): the Blocks, the queue; launch()

Only the ``*_tab.py`` modules and ``ui.py`` import Gradio; the rest is plain Python over bioprune.
"""
