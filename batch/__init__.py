"""Batch annotation adapters that need optional dependencies, kept out of the ``bioprune`` core.

- ``batch.csv_output``: the CSV writer (pandas; ``pip install "bioprune[csv]"``).
- ``batch.ray_runner``: the same annotator on Ray Data, one model per actor, one input file per
  shard (``pip install "bioprune[ray]"``).

``bioprune annotate --format csv`` and ``bioprune annotate --ray`` import them lazily, so the core
(and every other command) runs without pandas or Ray installed.
"""
