"""spaCy component ``bioprune_ner`` over the bioprune engine: arrives with its own issue (#5).

Nothing is registered yet; this package only reserves the place in the layout.
"""
