"""training/benchmark_allocator.py runs end to end on a tiny input (the real timing is run on a quiet machine)."""
from __future__ import annotations

import json

from training.benchmark_allocator import AllocatorArgs, main


def test_benchmark_allocator_times_both_modes_in_processes_of_their_own(tiny_model_dir, sample_path, tmp_path):
    out = tmp_path / "benchmark_allocator.json"
    result = main(AllocatorArgs(data=str(sample_path), model=str(tiny_model_dir), output=str(out), limit_docs=50,
                                warmup_docs=1, rounds=1, threads=1))
    assert json.loads(out.read_text())["batch"] == result["batch"]
    assert result["n_abstracts"] == 2  # the sample holds 3 abstracts, one of them the warm-up
    for batch in ("1", "16"):
        entry = result["batch"][batch]
        for mode in ("glibc default", "fixed"):
            assert entry[mode]["ms_per_abstract"] > 0 and entry[mode]["page_faults_per_abstract"] >= 0
            assert len(entry[mode]["seconds_per_round"]) == 1
        assert entry["speedup_median"] > 0
