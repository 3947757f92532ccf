"""The Gradio app (a Hugging Face Space) over the bioprune engine; ``app.py`` at the repository root runs it.

    settings.py     AppSettings: limits, concurrency, where outputs go
    errors.py       UserError and the adapter that turns it into a message in the UI
    context.py      AppContext: the engines, settings and output directory the tabs share
    engines.py      EngineHub: the model loaded once; an engine per pruning choice; the MLP controller;
                    PruningChoice: the values of bioprune.options' settings, by key -> a PruningConfig
    examples.py     the example abstracts shown in the Annotate tab (``bioprune/app/abstracts/*.txt``, package data)
    annotate.py     one request: validate the text, run dense and pruned, time both (pure)
    views.py        Annotation/Trace -> HighlightedText segments, HTML heat-map, tables, /entities JSON (pure)
    batch_job.py    uploaded files -> annotated PubTator/JSONL/CSV/BioC JSON and a summary (pure, reuses bioprune.io)
    results.py      charts and scores from the evaluation suite: ``results/`` in a checkout, the copy
                    shipped in the package (``bioprune/app/shipped_results``, setup.py) when installed (pure)
    controls.py     one pruning control per setting of bioprune.options, for both tabs and the API
    annotate_tab.py, batch_tab.py, results_tab.py   thin Gradio adapters, one per tab
    ui.py           build_app(): the Blocks, the queue; launch() (with the app's CSS)

The API (``gradio_client``): ``/annotate`` (the tab's eight outputs), ``/entities`` (one text ->
entities and a trace summary as JSON), ``/annotate_files`` (the Batch tab), ``/reload_results``.
The first three take the text (the files) and one parameter per pruning setting, named by its key
(``controller``, ``lambda_``, ``min_keep_ratio``, ... : bioprune.options), best passed by name.

Only ``controls.py``, the ``*_tab.py`` modules and ``ui.py`` import Gradio; the rest is plain Python over bioprune.
"""
