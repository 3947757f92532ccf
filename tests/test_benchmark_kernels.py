"""training/benchmark_kernels.py runs end to end on a tiny input (the real timing is run on a quiet machine)."""
import json

import pytest

from bioprune import cpu_kernels
from training.benchmark_kernels import KernelBenchArgs, main


@pytest.mark.skipif(cpu_kernels.library() is None, reason="no CPU kernels on this machine: nothing to compare")
def test_benchmark_kernels_compares_both_paths_per_precision(tiny_model_dir, sample_path, tmp_path, monkeypatch):
    quantized = []  # the int8 rows run the int8 kernel, and only with the kernels on
    real = cpu_kernels.int8_linear
    monkeypatch.setattr(cpu_kernels, "int8_linear", lambda *a: quantized.append(cpu_kernels.library()) or real(*a))
    out = tmp_path / "benchmark_kernels.json"
    result = main(["--data", str(sample_path), "--model", str(tiny_model_dir), "--output", str(out),
                   "--rounds", "1", "--warmup-docs", "1", "--repeats", "2", "--threads", "1"])
    assert json.loads(out.read_text())["precisions"] == result["precisions"]
    assert quantized and all(lib is not None for lib in quantized)
    assert set(result["kernels"]) == {"attention 16x256 tokens", "attention 1x352 tokens",
                                      "int8 linear 4096x384x1536 + GELU", "int8 linear 300x384x1152",
                                      "add + layer norm 4096x384"}
    for precision in ("bf16", "int8"):
        entry = result["precisions"][precision]
        assert entry["abstracts_with_other_entities"] == 0  # the tiny model's heads (8) stay on the torch ops
        for batch in ("1", "16"):
            assert entry["batch"][batch]["speedup_median"] > 0
            assert {"torch ops", "kernels"} <= set(entry["batch"][batch])
