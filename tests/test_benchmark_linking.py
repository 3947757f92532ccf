"""training/benchmark_linking.py runs end to end on a tiny input (the real timing is run on a quiet machine)."""
from __future__ import annotations

import json

from training.benchmark_linking import main


def test_benchmark_linking_runs_on_a_tiny_input(tiny_model_dir, sample_path, tmp_path):
    out = tmp_path / "benchmark_linking.json"
    result = main(["--data", str(sample_path), "--model", str(tiny_model_dir), "--output", str(out), "--threads", "1",
                   "--rounds", "1", "--warmup-docs", "1", "--batch-sizes", "16"])
    assert json.loads(out.read_text())["command"].startswith("python -m training.benchmark_linking")
    linker = result["linker"]
    assert linker["index"] == str(tiny_model_dir / "linker") and linker["load_tables_s"] >= 0
    assert linker["rss_before_mb"] > 0 and linker["rss_after_tfidf_mb"] > 0
    assert result["entities_only_dropped"] and result["gene_products_dropped"] == 0 and result["n_abstracts"] == 3
    entry = result["batch"]["16"]
    assert {"link", "no_link", "slowdown_median", "linking_ms_per_abstract"} <= set(entry)
