"""The app's pure parts, without a model or a server: views, input checks, batch job, results, engine hub."""
from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bioprune.config import DEFAULT, DENSE, PruningConfig, dense_twin
from bioprune.controllers import LearnedController
from bioprune.engine import PruningEngine
from bioprune.io.outputs import OUTPUT_FORMATS
from bioprune.options import config_from_values
from bioprune.types import Annotation, Entity, PrunedToken, RecoveryEvent, Trace

from bioprune.app import views
from bioprune.app.annotate import Comparison, validate_text
from bioprune.app.batch_job import (FORMAT_CHOICES, check_uploads, count_documents, display_name, new_run_dir,
                                    output_formats, run_batch)
from bioprune.app.engines import EngineHub, PruningChoice, operating_point, setting, start_values
from bioprune.app.errors import UserError
from bioprune.app.examples import example_label, load_examples
from bioprune.app.results import caption_for, charts_note, dense_score_rows, find_charts, stage_charts
from bioprune.app.settings import REPO_ROOT, AppSettings

from conftest import entity_tuples, write_jsonl

TEXT = "Cisplatin caused <b>renal</b> failure & seizures."


def _entity(text: str, start: int, end: int, label: str) -> Entity:
    return Entity(start=start, end=end, label=label, text=text[start:end])


def _annotations():
    dense = Annotation(id="0", text=TEXT, entities=(
        _entity(TEXT, 0, 9, "Chemical"), _entity(TEXT, 17, 37, "Disease"), _entity(TEXT, 40, 48, "Disease")))
    trace = Trace(
        pruned_tokens=(PrunedToken(position=1, start=10, end=16, layer=2, score=0.002, label="O"),
                       PrunedToken(position=8, start=38, end=39, layer=2, score=0.0001, label="O")),
        recovery_events=(RecoveryEvent(trigger="entropy_spike", positions=(1,), layer=2, labels_before=("O",),
                                       labels_after=("B-Disease",)),),
        tokens_per_layer=(12, 12, 10, 10), flops=80.0, dense_flops=100.0)
    pruned = Annotation(id="0", text=TEXT, trace=trace, entities=(
        _entity(TEXT, 0, 9, "Disease"), _entity(TEXT, 17, 37, "Disease"), _entity(TEXT, 10, 16, "Disease")))
    return dense, pruned


def _segments(value) -> list[tuple[str, str | None]]:
    """The (segment, category) pairs Gradio's HighlightedText sends to the browser for ``value``."""
    gr = pytest.importorskip("gradio")
    data = gr.HighlightedText().postprocess(value)
    return [(t.token, t.class_or_confidence) for t in data.root]


def _split_words(text: str, segments) -> list[str]:
    """Words cut by a segment boundary (a letter or digit on both sides of it)."""
    cuts, at = [], 0
    for token, _ in segments[:-1]:
        at += len(token)
        if text[at - 1].isalnum() and text[at].isalnum():
            cuts.append(text[max(0, at - 8):at] + "|" + text[at:at + 8])
    return cuts


def test_entity_and_pruned_highlights_use_character_offsets():
    dense, pruned = _annotations()
    segments = _segments(views.entity_highlights(dense))
    assert "".join(t for t, _ in segments) == TEXT
    assert [(t, c) for t, c in segments if c] == [
        ("Cisplatin", "Chemical"), ("<b>renal</b> failure", "Disease"), ("seizures", "Disease")]
    marks = [(t, c) for t, c in _segments(views.pruned_highlights(pruned)) if c]
    assert marks == [("caused", "pruned after layer 2"), ("&", "pruned after layer 2")]
    assert list(views.pruned_color_map((2, 1))) == ["pruned after layer 1", "pruned after layer 2"]
    assert _segments(views.pruned_highlights(dense)) == [(TEXT, None)]  # dense: no trace, nothing pruned


WORDY = "Electroencephalography showed unexplained lethargy; 24-year-old woman.\n\nValproate-associated  coma"


def _piece(position: int, word: str, piece: str, layer: int) -> PrunedToken:
    start = WORDY.index(word) + word.index(piece)
    return PrunedToken(position=position, start=start, end=start + len(piece), layer=layer, score=0.01, label="O")


def test_pruned_tokens_show_on_whole_words_and_segments_are_the_text_byte_for_byte():
    # subword pieces pruned at different layers, some words only partly: each word is marked whole
    pieces = (_piece(1, "Electroencephalography", "raphy", 2), _piece(2, "unexplained", "ex", 2),
              _piece(3, "unexplained", "aine", 1), _piece(4, "24-year-old", "year", 2),
              _piece(5, "24-year-old", "old", 2), _piece(6, "Valproate", "ate", 1))
    pruned = Annotation(id="0", text=WORDY, trace=Trace(pruned_tokens=pieces, tokens_per_layer=(20, 20, 14)),
                        entities=(_entity(WORDY, WORDY.index("Valproate"), WORDY.index("Valproate") + 9, "Chemical"),
                                  _entity(WORDY, WORDY.index("coma"), len(WORDY), "Disease")))
    segments = _segments(views.pruned_highlights(pruned))
    assert "".join(t for t, _ in segments).encode() == WORDY.encode()  # original spacing, newlines kept
    assert _split_words(WORDY, segments) == []
    assert [(t, c) for t, c in segments if c] == [
        ("Electroencephalography", "pruned after layer 2"), ("unexplained", "pruned after layer 1"),
        ("year", "pruned after layer 2"), ("old", "pruned after layer 2"), ("Valproate", "pruned after layer 1")]
    entity_segments = _segments(views.entity_highlights(pruned))
    assert "".join(t for t, _ in entity_segments) == WORDY and _split_words(WORDY, entity_segments) == []
    assert views.widen_to_words("a b", [(0, 3, 2)]) == [(0, 1, 2), (2, 3, 2)]  # a span over two words


def test_highlight_segments_merge_touching_marks_and_drop_overlaps():
    text = "24-year-old woman"
    assert views.highlight_segments(text, [(0, 2, "x"), (2, 3, "x"), (3, 7, "x"), (12, 17, "y"), (13, 15, "z")]) == [
        ("24-year", "x"), ("-old ", None), ("woman", "y")]
    assert views.highlight_segments("", []) == [("", None)]


def test_the_pruned_legend_lists_the_layers_the_active_config_prunes_after():
    assert list(views.pruned_legend(PruningConfig(controller="rule"))) == ["pruned after layer 2"]
    assert list(views.pruned_legend(PruningConfig(controller="mlp"))) == ["pruned after layer 3"]
    assert list(views.pruned_legend(PruningConfig(controller="mlp", prune_layers=(1, 2)))) == [
        "pruned after layer 1", "pruned after layer 2"]
    assert list(views.pruned_legend(PruningConfig(controller="rule", prune_layers=(1, 3)))) == [
        "pruned after layer 1", "pruned after layer 3"]
    assert views.pruned_legend(DENSE) == {}


def test_an_empty_recovery_table_says_why():
    quiet = Trace(tokens_per_layer=(12, 12, 10), flops=80.0, dense_flops=100.0)
    assert views.recovery_rows(quiet, TEXT, [], recovery=True)[0][0].startswith("not triggered")
    assert views.recovery_rows(quiet, TEXT, [], recovery=False)[0][0].startswith("recovery off")
    assert views.recovery_rows(None, TEXT, [])[0][0].startswith("dense model")
    assert all(len(row) == len(views.RECOVERY_HEADERS) for row in views.recovery_rows(quiet, TEXT, []))


def test_recovery_rows_show_reinserted_tokens_on_whole_words_and_count_tags():
    text = "AKT activation in keratinocytes, mouse skin"
    offsets = [(0, 2), (2, 3), (4, 14), (15, 17), (18, 25), (25, 31), (31, 32), (33, 38), (39, 43)]
    event = RecoveryEvent(trigger="entropy_spike", positions=(0, 1, 2, 5, 7), layer=1,
                          labels_before=("O",) * 5, labels_after=("B-Chemical", "I-Chemical", "O", "O", "O"))
    [row] = views.recovery_rows(Trace(recovery_events=(event,)), text, offsets)
    assert row == ["entropy_spike", 1, "5 tokens: AKT activation … keratinocytes … mouse", "O ×5",
                   "O ×3, B-Chemical, I-Chemical"]


def test_entities_json_has_offsets_scores_and_the_trace_summary():
    dense, pruned = _annotations()
    answer = views.entities_json(pruned, 12, "rule controller")
    json.dumps(answer)  # plain JSON types only
    assert [(e["start"], e["end"], e["label"], e["text"]) for e in answer["entities"]] == entity_tuples(pruned)
    assert all(isinstance(e["score"], float) for e in answer["entities"])
    trace = answer["trace"]
    assert trace["tokens_pruned"] == 2 and trace["tokens"] == 12 and trace["flops_saved_ratio"] == pytest.approx(0.2)
    assert trace["recovery_events"] == [{"trigger": "entropy_spike", "layer": 2, "tokens_reinserted": 1,
                                         "positions": [1]}]
    assert views.entities_json(dense, 12, "dense")["trace"]["tokens_pruned"] == 0


def test_heatmap_escapes_the_text_and_shades_pruned_tokens():
    dense, pruned = _annotations()
    html = views.importance_heatmap_html(pruned)
    assert "<b>" not in html and "&lt;b&gt;renal&lt;/b&gt;" in html  # user text never becomes markup
    assert html.count('class="bp-pruned"') == 2 and 'data-layer="2"' in html
    assert ">&amp;</span>" in html and "importance 0.002" in html
    assert "nothing is pruned" in views.importance_heatmap_html(dense)


def test_diff_rows_mark_every_difference():
    dense, pruned = _annotations()
    rows = views.diff_rows(dense, pruned)
    status = {row[0]: row[-1] for row in rows}
    assert status == {"Cisplatin": views.LABEL_DIFFERS, "<b>renal</b> failure": views.SAME,
                      "caused": views.PRUNED_ONLY, "seizures": views.DENSE_ONLY}
    assert views.count_differences(rows) == 3
    assert views.count_differences(views.diff_rows(dense, None)) == 0  # dense against itself


def test_the_entity_table_links_each_id_to_its_mesh_page_and_the_api_gives_the_ids():
    dense, pruned = _annotations()
    linked = replace(pruned, entities=(replace(pruned.entities[0], ids=("D002945",)),
                                       replace(pruned.entities[1], ids=("D051437", "D058186")), pruned.entities[2]))
    rows = {row[0]: row for row in views.diff_rows(dense, linked)}
    assert views.DIFF_HEADERS[5] == "MeSH" and views.DIFF_TYPES[5] == "markdown"
    assert rows["Cisplatin"][5] == "[D002945](https://meshb.nlm.nih.gov/record/ui?ui=D002945)"
    assert rows["<b>renal</b> failure"][5].count("](https://meshb.nlm.nih.gov/record/ui?ui=D0") == 2
    assert rows["caused"][5] == "" and rows["seizures"][5] == ""  # no ID; the dense-only entity was not linked
    assert [e["ids"] for e in views.entities_json(linked, 12, "rule")["entities"]] == [["D002945"], ["D051437",
                                                                                       "D058186"], []]


def test_layer_recovery_rows_and_summary():
    dense, pruned = _annotations()
    assert views.layer_rows(pruned.trace, 12, 4) == [[1, 12, 12, "100%"], [2, 12, 12, "100%"],
                                                     [3, 12, 10, "83%"], [4, 12, 10, "83%"]]
    assert views.layer_rows(None, 12, 2) == [[1, 12, 12, "100%"], [2, 12, 12, "100%"]]
    offsets = [(0, 9), (10, 16)]
    assert views.recovery_rows(pruned.trace, TEXT, offsets) == [["entropy_spike", 2, "1 token: caused", "O",
                                                                 "B-Disease"]]
    comparison = Comparison(text=TEXT, choice=PruningChoice(controller="rule"), dense=dense, dense_s=0.05,
                            pruned=pruned, pruned_s=0.04, token_offsets=tuple(offsets), dense_tokens=12, n_layers=4)
    md = views.summary_markdown(comparison)
    assert "20.0% saved" in md and "50 ms" in md and "40 ms" in md and "1.25× dense: faster" in md
    assert "3 differ" in md and "entropy_spike (1 tokens)" in md
    worse = Trace(tokens_per_layer=(12, 12), flops=120.0, dense_flops=100.0)
    comparison = replace(comparison, pruned=Annotation(id="0", text=TEXT, trace=worse), pruned_s=0.06, n_layers=2)
    assert "20.0% more** than dense" in views.summary_markdown(comparison)


def test_text_limits_are_clear_messages():
    assert validate_text("Aspirin.", 100) == "Aspirin."
    with pytest.raises(UserError, match="Enter some text"):
        validate_text("   \n", 100)
    with pytest.raises(UserError, match="at most 100"):
        validate_text("x" * 101, 100)


@pytest.mark.parametrize("name", ["max_files", "keep_batch_runs", "queue_max_size"])
def test_app_limits_below_one_are_refused(name):
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        AppSettings(**{name: 0})


def test_both_tabs_start_at_the_engines_default_controller():
    # the engine's own default: tests/test_options.py::test_the_default_is_the_same_config_in_every_face
    assert config_from_values(start_values()) == DEFAULT == PruningChoice(**start_values()).config()  # the controls
    # the pruning settings do not apply to dense, the precision does
    pruning = {"lambda_": 9.0, "min_keep_ratio": 0.9, "prune_layers": [1], "recovery": True, "frozen_context": True}
    assert PruningChoice(controller="none", **pruning).config() == dense_twin(DEFAULT)
    assert PruningChoice(controller="none", **pruning, precision="fp32").config() == DENSE
    assert PruningChoice(controller="none", precision="fp32").exact and not PruningChoice().exact
    assert not PruningChoice(precision="fp32").exact  # the default prunes: fp32 alone is not exact dense
    assert PruningChoice(controller="rule", precision="bf16").config().precision == "bf16"


def test_batch_offers_every_output_format_bioc_included():
    assert [name for _, name in FORMAT_CHOICES] == list(OUTPUT_FORMATS) and ("BioC JSON", "bioc") in FORMAT_CHOICES
    assert list(output_formats(["bioc", "pubtator"])) == ["pubtator", "bioc"]
    assert output_formats(["bioc"])["bioc"].extension == ".bioc.json"
    with pytest.raises(UserError, match="at least one output format"):
        output_formats([])
    with pytest.raises(UserError, match="Unknown output format 'xml'"):
        output_formats(["xml"])


def test_pruning_choice_validates_and_describes():
    assert PruningChoice(controller="none").dense and not PruningChoice(controller="rule").dense
    assert PruningChoice(controller="rule", lambda_=2.0, min_keep_ratio=0.5).config().min_keep_ratio == 0.5
    # an empty value is the setting's default: λ and the layers the controller's own
    empty = PruningChoice(controller="mlp", lambda_=None, prune_layers=[], min_keep_ratio=None)
    assert empty.config() == PruningConfig(controller="mlp")
    assert PruningChoice(controller="rule", lambda_=2.0).describe() == (
        "rule controller, λ 2.0, min_keep_ratio 0.30, prune_layers 2, recovery off, frozen_context off, precision auto, "
        "link on")
    assert PruningChoice(controller="none", precision="bf16", link=False).describe() == (
        "dense model (no pruning), precision bf16, link off")
    with pytest.raises(UserError, match=r"^Invalid setting: min_keep_ratio must be in \[0, 1\], got 1.5.$"):
        PruningChoice(controller="rule", lambda_=1.0, min_keep_ratio=1.5).config()
    with pytest.raises(UserError, match="prune_layers must be increasing"):
        PruningChoice(controller="rule", prune_layers=[2, 1]).config()
    with pytest.raises(UserError, match="Unknown controller 'magic': choose one of none, rule, mlp"):
        PruningChoice(controller="magic").config()
    with pytest.raises(TypeError, match="unknown setting.*'lambda'"):
        PruningChoice(controller="rule", **{"lambda": 2.0})  # keys are bioprune.options' (lambda_)


def test_picking_a_controller_sets_its_operating_point():
    low, high, _ = setting("lambda_").ui
    for controller in ("rule", "mlp"):
        config = PruningConfig(controller=controller)
        point = operating_point(controller)
        assert point == {"lambda_": config.aggressiveness, "prune_layers": list(config.prune_layers),
                         "frozen_context": config.frozen_context}
        assert low <= point["lambda_"] <= high  # the slider can reach every default
        # the values picking a controller puts in the controls give its operating point
        assert PruningChoice(controller=controller, **point).config() == config


def test_examples_are_our_own_pubmed_style_abstracts():
    examples = load_examples(AppSettings().examples_dir)
    assert len(examples) >= 4
    assert all(60 >= len(e.label) > 10 and len(e.text) > 300 for e in examples)
    assert example_label("A short title. Body text.") == "A short title"
    assert load_examples(REPO_ROOT / "no-such-dir") == []
    # package data: inside the bioprune.app package, so an installed app has them (tests/test_app_install.py)
    assert AppSettings().examples_dir.parent == Path(views.__file__).parent


@pytest.mark.parametrize("name, content, message", [
    ("photo.png", b"\x89PNG\r\n", "photo.png: not a file type"),
    ("data.txt", b"\x00\x01\x02 binary", "data.txt: looks like a binary file"),
    ("medline.xml.gz", b"\x1f\x8b\x08\x00broken", "medline.xml.gz: cannot be read"),
    ("big.txt", b"x" * 1001, "big.txt: 0.0 MiB; the app takes files up to 0 MiB"),
    ("empty.txt", b"", "empty.txt: the file is empty"),
])
def test_uploads_are_checked_by_name_size_and_content(tmp_path, name, content, message):
    good = tmp_path / "a.pubtator"
    good.write_text("1|t|Aspirin.\n1|a|Pain.\n\n")
    assert check_uploads([str(good)], 3, 1000) == [good]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message):
        check_uploads([tmp_path / name], 3, 1000)


def test_upload_count_and_names():
    with pytest.raises(UserError, match="Upload at least one file"):
        check_uploads([], 3, 1000)
    with pytest.raises(UserError, match="at most 1 per run"):
        check_uploads(["a.txt", "b.txt"], 1, 1000)
    assert display_name("/tmp/gradio/abc123/notes.txt") == "notes.txt"


def test_count_documents_stops_after_the_limit(tmp_path):
    text = tmp_path / "lines.txt"
    text.write_text("one\ntwo\nthree\n")
    assert count_documents([text], 10) == (3, [])
    assert count_documents([text], 1)[0] == 2  # limit + 1: enough to know it is over
    gz = tmp_path / "lines.txt.gz"
    gz.write_bytes(gzip.compress(b"alpha\nbeta\n"))
    assert count_documents([gz], 10)[0] == 2


def test_new_run_dir_keeps_the_newest_runs(tmp_path):
    made = [new_run_dir(tmp_path, keep=2) for _ in range(4)]
    assert all(p.parent == tmp_path for p in made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made[-2:])


def test_results_charts_captions_and_scores(tmp_path):
    assert find_charts(tmp_path / "missing") == []
    assert "No charts yet" in charts_note(tmp_path, [])
    for name in ("ablation_min_keep_ratio.png", "pareto_f1_latency.png", "zz_other.png"):
        (tmp_path / name).write_bytes(b"\x89PNG fake")
    charts = find_charts(tmp_path)
    assert [c.path.name for c in charts] == ["pareto_f1_latency.png", "ablation_min_keep_ratio.png", "zz_other.png"]
    assert caption_for("ablation_min_keep_ratio.png").startswith("Ablation: min keep ratio")
    assert caption_for("ablation_f1_vs_flops.png") == "Ablation: F1 vs FLOPs"
    assert caption_for("pareto_f1_latency.png").startswith("F1 vs latency")
    staged = stage_charts(charts, tmp_path / "out" / "charts")
    assert [c.path.parent for c in staged] == [tmp_path / "out" / "charts"] * 3
    assert dense_score_rows(tmp_path) is None
    (tmp_path / "evaluate_test.json").write_text(json.dumps(
        {"mention": {"Chemical": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "n_gold": 5, "n_pred": 4}}}))
    assert dense_score_rows(tmp_path) == [["Chemical", 0.9, 0.8, 0.847, 5, 4]]
    (tmp_path / "evaluate_test.json").write_text("{broken")
    assert dense_score_rows(tmp_path) is None


def test_the_repository_results_give_dense_scores():
    rows = dense_score_rows(Path(REPO_ROOT, "results"))
    if rows is None:
        pytest.skip("results/evaluate_test.json not present")
    assert {row[0] for row in rows} >= {"Chemical", "Disease"}


def test_engine_hub_loads_the_mlp_controller_when_it_appears(pruning_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(pruning_model_dir, model_dir)
    (model_dir / "postprocess.json").write_text('{"passes": ["abbreviations"]}')
    shutil.copytree(model_dir / "linker", tmp_path / "index")
    loaded = PruningEngine.from_pretrained(model_dir, linker_dir=tmp_path / "index")  # an index of its own
    hub = EngineHub(loaded, model_dir)
    assert hub.dense.postprocess.passes == ("abbreviations",)
    assert hub.exit_layers == (1, 2)  # the pruning layers the app offers: where the model has exit heads
    choice = PruningChoice(controller="mlp", lambda_=1.0, prune_layers=[1, 2], recovery=True)
    assert not hub.mlp_available() and "not trained yet" in hub.mlp_status()
    with pytest.raises(UserError, match="MLP controller is not trained yet"):
        hub.engine_for(choice)
    (model_dir / "controller.safetensors").write_bytes(b"half-written")
    with pytest.raises(UserError, match="could not be loaded"):
        hub.engine_for(choice)
    n_features = hub.dense.encoder.n_classes + 8  # controller_features: exit probabilities + 8 signals
    LearnedController(n_features).save(model_dir)  # the training job finishes: no restart needed
    engine = hub.engine_for(PruningChoice(controller="mlp", lambda_=1.0, prune_layers=[1, 2], recovery=True))
    assert engine.config.controller == "mlp" and "available" in hub.mlp_status()
    assert engine.postprocess == hub.dense.postprocess == loaded.postprocess  # the reload keeps post-processing
    # ... and everything else the model folder gave: the same weights, int8 calibration, linker index
    assert engine.model is loaded.model
    assert engine.bundle.int8_ranges is loaded.bundle.int8_ranges
    assert engine.linker_index_dir == loaded.linker_index_dir == tmp_path / "index"
    [annotation] = engine.annotate(["cisplatin induced renal failure in rats"])
    assert annotation.trace is not None
    assert hub.engine_for(PruningChoice(controller="none")).config.controller == "none"


def test_batch_reports_an_id_pubtator_cannot_hold_and_goes_on(tiny_engine, tmp_path):
    """A JSONL id with '|' is an error record (as in `bioprune annotate`), not a crash of the whole run."""
    upload = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a|b", "text": "Cisplatin nephrotoxicity."},
                                                    {"id": "ok", "text": "Haloperidol induced delirium."}])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_batch(tiny_engine, [upload], run_dir, limit=10, formats=["pubtator", "jsonl"])
    assert result.stats.documents == 1 and result.stats.errors == 1
    [error] = [json.loads(line) for line in (run_dir / "bioprune_errors.jsonl").read_text().splitlines()]
    assert error["record_id"] == "a|b"
    assert (run_dir / "bioprune_annotated.pubtator").read_text().startswith("ok|t|")
