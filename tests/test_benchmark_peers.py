"""The ONNX Runtime peer (training/benchmark_peers.py) runs the same model: same entities as dense fp32."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")


def test_onnx_runtime_peer_matches_the_dense_model(tiny_engine, sample_path, tmp_path):
    from bioprune.io.pubtator import read_pubtator
    from training.benchmark_peers import export_onnx, ort_engine

    texts = [d.text for d in read_pubtator(sample_path)]
    files = export_onnx(tiny_engine, tmp_path)
    fp32 = ort_engine(tiny_engine, files["fp32"], threads=1)
    int8 = ort_engine(tiny_engine, files["int8"], threads=1)
    dense = tiny_engine.annotate(texts)

    def spans(annotations):
        return [[(e.start, e.end, e.label) for e in a.entities] for a in annotations]

    assert spans(fp32.annotate(texts)) == spans(dense)  # same model, same pipeline: only the forward differs
    assert len(int8.annotate(texts)) == len(texts)
    assert files["int8"].stat().st_size < files["fp32"].stat().st_size / 2  # int8 weights
