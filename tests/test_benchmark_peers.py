"""The peers benchmark (training/benchmark_peers.py): its systems run the same model as dense fp32,
and its chart and README block come from a results file.

ONNX Runtime and the HF pipeline are checked on the tiny random model of conftest.py: same
entities as the engine's dense fp32, so any difference in the real table is the system's, not a
bug in how it is called or read back.
"""
from __future__ import annotations

import json

import pytest

from training.benchmark_peers import export_onnx, hf_annotator, hf_pipeline, ort_engine
from training.plot_results import main, peers_points, plot_peers
from training.render_readme import peers_table


def _spans(annotations):
    return [[(e.start, e.end, e.label) for e in a.entities] for a in annotations]


def test_onnx_runtime_peer_matches_the_dense_model(tiny_engine, texts, tmp_path):
    pytest.importorskip("onnxruntime")
    files = export_onnx(tiny_engine, tmp_path)
    fp32 = ort_engine(tiny_engine, files["fp32"], threads=1)
    int8 = ort_engine(tiny_engine, files["int8"], threads=1)
    dense = tiny_engine.annotate(texts)

    assert _spans(fp32.annotate(texts)) == _spans(dense)  # same model, same pipeline: only the forward differs
    assert len(int8.annotate(texts)) == len(texts)
    assert files["int8"].stat().st_size < files["fp32"].stat().st_size / 2  # int8 weights


@pytest.mark.parametrize("batch_size", [1, 16])
def test_hf_pipeline_peer_matches_the_dense_model(tiny_model_dir, tiny_engine, texts, batch_size):
    """aggregation "average" is the engine's word-level decoding: on the same fp32 weights the
    pipeline's entity groups are the engine's entities, span for span, at word boundaries."""
    pipe = hf_pipeline(tiny_model_dir)
    assert pipe.model.dtype.is_floating_point and str(pipe.model.dtype) == "torch.float32"
    spans = hf_annotator(pipe)(texts, batch_size)
    dense = tiny_engine.annotate(texts)

    assert sum(map(len, spans)) > 0  # the random model does tag words: the comparison is not vacuous
    assert spans == _spans(dense)
    for text, doc_spans, annotation in zip(texts, spans, dense):
        for (start, end, _), entity in zip(doc_spans, annotation.entities):
            piece = text[start:end]
            assert piece == entity.text and piece == piece.strip() and piece
            for cut in (start, end):  # at word boundaries (BERT's words: runs of letters and digits, punctuation)
                assert cut in (0, len(text)) or not (text[cut - 1].isalnum() and text[cut].isalnum())


def test_hf_pipeline_peer_reads_long_abstracts_whole(per_word_engine, tmp_path):
    """Over 512 tokens the pipeline chunks with the engine's overlap instead of truncating: with a
    model that tags every word as its own Disease, every word comes back once, the last included."""
    per_word_engine.model.save_pretrained(str(tmp_path), safe_serialization=True)
    per_word_engine.tokenizer.save_pretrained(str(tmp_path))
    text = " ".join(["Cisplatin nephrotoxicity and haloperidol-induced seizures in rats."] * 80)  # ~900 tokens
    [encoded] = per_word_engine.encode([text])
    assert len(encoded.windows) > 1

    [spans] = hf_annotator(hf_pipeline(tmp_path))([text], 16)
    [dense] = per_word_engine.annotate([text])

    assert spans == _spans([dense])[0]
    assert spans[-1][1] == len(text)  # the last word ("."), far past 512 tokens
    [truncated] = hf_annotator(hf_pipeline(tmp_path, stride=None))([text], 16)
    assert truncated[-1][1] == encoded.offsets[509][1]  # what stride avoids: without it, 510 tokens and no more


PEERS = {
    "command": "python -m training.benchmark_peers --data test.txt", "threads": 2, "n_abstracts_timed": 3,
    "n_abstracts_scored": 5, "onnxruntime": "1.0", "transformers": "5.0",
    "hf_pipeline": {"system": "HF pipeline (transformers, fp32)", "aggregation_strategy": "average", "stride": 128},
    "bioprune_postprocess": ["abbreviations"],
    "systems": {name: {"f1": {"Chemical": f1 + 0.04, "Disease": f1 - 0.05, "micro": f1}, "agreement_with_dense_fp32": a,
                       "batch": {"1": {"abstracts_per_s": 10.0 * s1, "ms_per_abstract": 100 / s1,
                                       "speedup_vs_dense_fp32": s1},
                                 "16": {"abstracts_per_s": 10.0 * s16, "ms_per_abstract": 100 / s16,
                                        "speedup_vs_dense_fp32": s16}}}
                for name, f1, a, s1, s16 in (("bioprune dense fp32", 0.85, 1.0, 1.0, 1.0),
                                             ("ORT int8", 0.849, 0.96, 1.9, 2.1),
                                             ("HF pipeline (transformers, fp32)", 0.846, 0.995, 0.8, 0.7))},
}


def test_peers_points_select_f1_agreement_and_speed():
    points = peers_points(PEERS)
    assert [p["name"] for p in points] == list(PEERS["systems"])
    assert points[1] == {"name": "ORT int8", "f1": 0.849, "agreement": 0.96, "speed": {"1": 1.9, "16": 2.1}}


def test_peers_chart_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    plot_peers(PEERS, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "benchmark_peers.json").write_text(json.dumps(PEERS))
    written = main(["--results-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    assert written == [tmp_path / "out" / "benchmark_peers.png"] and written[0].stat().st_size > 0


def test_peers_readme_block_shows_the_hf_row_and_the_chart_when_present():
    block = peers_table(PEERS, chart=True)
    assert "| HF pipeline (transformers, fp32) | 0.8460 | 0.9950 | **0.80×** (8.0) | **0.70×** (7.0) |" in block
    assert "![" in block and "(results/benchmark_peers.png)" in block and "python -m training.plot_results" in block
    assert 'aggregation_strategy="average"' in block and "abbreviations" in block

    older = {k: v for k, v in PEERS.items() if k not in ("hf_pipeline", "transformers", "bioprune_postprocess")}
    older["systems"] = {k: v for k, v in PEERS["systems"].items() if not k.startswith("HF")}
    block = peers_table(older, chart=False)  # a results file from before the HF row: no HF note, no chart
    assert "HF pipeline" not in block and "benchmark_peers.png" not in block


def test_peers_readme_block_shows_held_out_medline_agreement_when_measured():
    measured = {**PEERS, "medline": {"file": "medline.xml.gz", "half": "second", "n_abstracts": 302},
                "systems": {name: {**e, "medline_agreement_with_dense_fp32": {"micro": a, "Chemical": a, "Disease": a}}
                            for (name, e), a in zip(PEERS["systems"].items(), (1.0, 0.9612, 0.93))}}
    block = peers_table(measured)
    assert "| agreement on held-out MEDLINE |" in block
    assert "| ORT int8 | 0.8490 | 0.9600 | 0.9612 | **1.90×** (19.0) | **2.10×** (21.0) |" in block
    assert "302 abstracts of the second half of `medline.xml.gz`" in block
    assert "held-out MEDLINE" not in peers_table(PEERS)  # a results file without it: no empty column


def test_peers_readme_block_names_what_auto_ran_at():
    """A bioprune row records the precision "auto" resolved to; the table names it where the row's
    name does not already say it."""
    systems = dict(PEERS["systems"])
    systems["bioprune default"] = {**systems["bioprune dense fp32"], "runs_at": "mixed"}
    systems["bioprune dense fp32"] = {**systems["bioprune dense fp32"], "runs_at": "fp32"}
    block = peers_table({**PEERS, "systems": systems})
    assert "| bioprune default (mixed) | 0.8500 |" in block
    assert "| bioprune dense fp32 | 0.8500 |" in block  # not "dense fp32 (fp32)"


def test_agreement_with_scores_each_system_against_the_baseline(tiny_engine, texts):
    from bioprune.types import Document
    from training.benchmark_peers import agreement_with

    documents = [Document(id=str(i), text=t) for i, t in enumerate(texts)]
    dense = lambda docs, bs: tiny_engine.annotate(docs, batch_size=bs)  # noqa: E731
    half = lambda docs, bs: [a if i % 2 else [] for i, a in enumerate(dense(docs, bs))]  # noqa: E731
    scores = agreement_with({"dense": dense, "half": half}, documents, "dense")
    kept = sum(len(a.entities) for i, a in enumerate(dense(documents, 16)) if i % 2)
    total = sum(len(a.entities) for a in dense(documents, 16))
    assert 0 < kept < total  # the check below is not vacuous
    assert scores["dense"]["micro"] == 1.0
    assert scores["half"]["micro"] == pytest.approx(2 * kept / (kept + total))
