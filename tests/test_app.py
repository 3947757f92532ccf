"""The Gradio app over the shipped model: it builds without a server, and a launched one answers
through gradio_client (annotate, entities as JSON, batch, clear messages for bad input, no files
outside its own), with named endpoints and outputs."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio: pip install '.[test]'")
pytest.importorskip("gradio_client", reason="the app tests need gradio_client: pip install '.[test]'")

import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from bioprune.config import DEFAULT, FAITHFUL, PruningConfig  # noqa: E402
from bioprune.controllers import CONTROLLER_FILE  # noqa: E402
from bioprune.engine import DEFAULT_MODEL_DIR  # noqa: E402
from bioprune.options import SETTINGS, config_from_values  # noqa: E402
from bioprune.app.annotate_tab import annotate_outputs, pruned_legend_update  # noqa: E402
from bioprune.app.examples import load_examples  # noqa: E402
from bioprune.app.settings import REPO_ROOT, AppSettings  # noqa: E402
from bioprune.app.ui import LAUNCH_ATTEMPTS, launch  # noqa: E402

EXAMPLES_DIR = AppSettings().examples_dir
EXAMPLE = (EXAMPLES_DIR / "haloperidol_qt.txt").read_text(encoding="utf-8").strip()
SAMPLE_PUBTATOR = EXAMPLES_DIR / "batch_sample.pubtator"
API_NAMES = {"/annotate", "/entities", "/annotate_files", "/reload_results"}  # everything the API exposes


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False, download_files=False)


def test_app_builds_without_launching(built_app, app_output_dir):
    assert isinstance(built_app, gr.Blocks)
    config = built_app.get_config_file()
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"annotate", "entities", "annotate_files", "reload_results"} <= api_names
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"text", "entities", "entities-dense", "pruned", "heatmap", "recovery", "layers", "diff",
            "batch-files", "batch-summary", "charts"} <= ids
    assert built_app.bioprune_context.output_dir == app_output_dir
    assert not built_app.allowed_paths  # no extra served paths


def test_launch_refuses_allowed_paths(built_app):
    with pytest.raises(ValueError, match="allowed_paths"):
        launch(built_app, allowed_paths=[str(REPO_ROOT)], prevent_thread_lock=True)


def test_launch_retries_gradios_localhost_check_only():
    class FlakyDemo:  # Gradio's one-HEAD, 3-second start-up check times out on a saturated CPU
        def __init__(self, message):
            self.message, self.calls, self.closed = message, 0, 0

        def launch(self, **options):
            self.calls += 1
            if self.calls < LAUNCH_ATTEMPTS:
                raise ValueError(self.message)
            return "launched"

        def close(self):
            self.closed += 1

    demo = FlakyDemo("When localhost is not accessible, a shareable link must be created.")
    assert launch(demo) == "launched" and demo.calls == LAUNCH_ATTEMPTS and demo.closed == LAUNCH_ATTEMPTS - 1
    other = FlakyDemo("some other problem")
    with pytest.raises(ValueError, match="some other problem"):
        launch(other)
    assert other.calls == 1


def test_the_api_has_named_endpoints_and_named_outputs(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == API_NAMES and not api["unnamed_endpoints"]
    for name, endpoint in api["named_endpoints"].items():
        labels = [p.get("label") or p.get("parameter_name") for p in endpoint["parameters"] + endpoint["returns"]]
        assert all(labels) and not [x for x in labels if re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)", x)], (name, labels)
    returns = [r["label"] for r in api["named_endpoints"]["/annotate"]["returns"]]
    assert "Recovery events" in returns and "Summary" in returns
    settings = [s.key for s in SETTINGS]  # one parameter per pruning setting, by its key (bioprune.options)
    for name, expected in (("/annotate", ["text", *settings]), ("/entities", ["text", *settings]),
                           ("/annotate_files", ["files", *settings, "formats"])):
        params = [p["parameter_name"] for p in api["named_endpoints"][name]["parameters"]]
        assert params == expected, (name, params)
    assert [r["label"] for r in api["named_endpoints"]["/entities"]["returns"]] == ["entities and trace summary"]


def test_entities_endpoint_returns_json_for_gradio_client_users(client):
    answer = client.predict(EXAMPLE, "rule", api_name="/entities")  # λ and the rest: the defaults
    assert answer["entities"], answer
    for e in answer["entities"]:
        assert set(e) == {"start", "end", "label", "text", "score", "ids"}
        assert EXAMPLE[e["start"]:e["end"]] == e["text"] and e["label"] in {"Chemical", "Disease"}
    assert any(e["text"] == "haloperidol" and e["label"] == "Chemical" and e["ids"] == ["D006220"]
               for e in answer["entities"])  # linked to MeSH by default
    trace = answer["trace"]
    assert trace["pruned"] and 0 < trace["tokens_pruned"] < trace["tokens"]
    assert 0 < trace["flops_saved_ratio"] < 1 and trace["recovery_events"] == []
    assert "rule controller, λ 2.0" in answer["setting"]  # the rule controller's own default λ
    default = client.predict(EXAMPLE, api_name="/entities")  # the default controller, as the CLI: the MLP's point
    assert default["trace"]["pruned"] and "MLP (learned) controller, λ 6.0" in default["setting"]
    dense = client.predict(EXAMPLE, "none", api_name="/entities")
    assert not dense["trace"]["pruned"] and dense["trace"]["tokens_pruned"] == 0
    with pytest.raises(AppError, match="Enter some text"):
        client.predict("  ", "rule", api_name="/entities")


def test_precision_is_a_choice_of_the_api_and_the_dense_reference_stays_fp32(client):
    """Precision comes from bioprune.options into both endpoints; the dense panel is always exact fp32."""
    exact = client.predict(text=EXAMPLE, controller="none", precision="fp32", api_name="/entities")
    bf16 = client.predict(text=EXAMPLE, controller="none", precision="bf16", api_name="/entities")
    assert "precision fp32" in exact["setting"] and "precision bf16" in bf16["setting"]
    assert [e["text"] for e in bf16["entities"]] == [e["text"] for e in exact["entities"]]  # bf16 keeps them here
    summary = client.predict(EXAMPLE, controller="none", precision="bf16", api_name="/annotate")[0]
    assert "from dense fp32" in summary and "precision bf16" in summary  # compared with exact dense
    summary = client.predict(EXAMPLE, controller="none", precision="fp32", api_name="/annotate")[0]
    assert "Pick the rule or MLP controller" in summary  # the exact dense model: nothing to compare


def test_every_setting_reaches_the_engine_through_the_api(client):
    """The pruning layers and frozen context, which the app once did not offer, arrive in the config like
    the rest; an invalid value is a one-line message, as bioprune.options words it."""
    answer = client.predict(EXAMPLE, controller="rule", min_keep_ratio=0.5, prune_layers=[1, 3], frozen_context=True,
                            api_name="/entities")
    assert "min_keep_ratio 0.50, prune_layers 1,3, recovery off, frozen_context on" in answer["setting"]
    assert answer["trace"]["pruned"]
    with pytest.raises(AppError, match=r"Invalid setting: min_keep_ratio must be in \[0, 1\], got 1.5"):
        client.predict(EXAMPLE, controller="rule", min_keep_ratio=1.5, api_name="/entities")


def test_an_example_triggers_recovery_at_a_controllers_defaults(client, shipped_engine):
    triggering = []  # (text, controller): recovery fires with every other knob at the controller's default
    for example in load_examples(AppSettings().examples_dir):
        for controller in ("rule", "mlp"):
            engine = shipped_engine.with_config(PruningConfig(controller=controller, recovery=True))
            [annotation] = engine.annotate([example.text])
            if annotation.trace.recovery_events:
                triggering.append((example.text, controller))
    assert triggering, "no example abstract triggers recovery at any controller's defaults"
    text, controller = triggering[0]
    # the app shows it: the recovery table lists the events, /entities reports them
    defaults = PruningConfig(controller=controller)
    recovery = client.predict(text, controller=controller, lambda_=defaults.aggressiveness,
                              prune_layers=list(defaults.prune_layers), recovery=True, api_name="/annotate")[-1]
    assert recovery["data"][0][0] in ("entropy_spike", "entity_loss") and recovery["data"][0][2]
    answer = client.predict(text, controller=controller, recovery=True, api_name="/entities")  # λ, layers: its own
    assert answer["trace"]["recovery_events"][0]["tokens_reinserted"] > 0


def test_the_pruned_legend_and_the_recovery_table_follow_the_setting(built_app):
    assert list(pruned_legend_update(controller="rule")["color_map"]) == ["pruned after layer 2"]  # rule: after 2
    assert list(pruned_legend_update(controller="mlp")["color_map"]) == ["pruned after layer 3"]
    assert list(pruned_legend_update(controller="rule", prune_layers=[1, 3])["color_map"]) == [
        "pruned after layer 1", "pruned after layer 3"]  # the layers picked, not the controller's
    assert pruned_legend_update(controller="none")["color_map"] == {}
    ctx = built_app.bioprune_context
    assert annotate_outputs(ctx, EXAMPLE, controller="rule", recovery=True)[-1][0][0].startswith("not triggered")
    assert annotate_outputs(ctx, EXAMPLE, controller="mlp", lambda_=6.0)[-1][0][0].startswith("recovery off")
    assert annotate_outputs(ctx, EXAMPLE, controller="none", recovery=True)[-1][0][0].startswith("dense model")


def test_both_tabs_offer_every_setting_starting_at_the_engines_default(built_app):
    """One control per setting of bioprune.options in each tab, of its kind, together at DEFAULT."""
    kinds = {"choice": {"radio"}, "float": {"slider", "number"}, "bool": {"checkbox"}, "layers": {"checkboxgroup"}}
    components = {c["props"].get("elem_id"): c for c in built_app.get_config_file()["components"]}
    for tab in ("annotate", "batch"):
        controls = {s.key: components[f"{tab}-{s.key.strip('_').replace('_', '-')}"] for s in SETTINGS}
        assert [controls[s.key]["type"] in kinds[s.kind] for s in SETTINGS] == [True] * len(SETTINGS), tab
        assert config_from_values({k: c["props"]["value"] for k, c in controls.items()}) == DEFAULT
        assert controls["controller"]["props"]["value"] == DEFAULT.controller == "mlp"
        lam = controls["lambda_"]["props"]
        assert (lam["minimum"], lam["maximum"], lam["step"]) == next(s.ui for s in SETTINGS if s.key == "lambda_")
        layers = [value for _, value in controls["prune_layers"]["props"]["choices"]]
        assert layers == list(built_app.bioprune_context.hub.exit_layers) == [1, 2, 3, 4]  # the shipped exit heads


def test_annotate_through_the_client_shows_entities_pruning_and_speed(client):
    (summary, dense, entities, diff, pruned, heatmap, layers, recovery) = client.predict(
        EXAMPLE, controller="rule", lambda_=1.0, recovery=True, api_name="/annotate")
    labels = {item["class_or_confidence"] for item in entities if item["class_or_confidence"]}
    assert labels == {"Chemical", "Disease"}
    assert any(i["token"] == "haloperidol" and i["class_or_confidence"] == "Chemical" for i in entities)
    assert "".join(i["token"] for i in entities) == EXAMPLE  # offsets cover the text exactly
    assert "".join(i["token"] for i in dense) == EXAMPLE
    assert any((i["class_or_confidence"] or "").startswith("pruned after layer") for i in pruned)
    assert 'class="bp-pruned"' in heatmap
    assert "latency (this request)" in summary and "FLOPs" in summary and " ms" in summary
    assert diff["headers"][-1] == "difference" and diff["data"]
    rows = layers["data"]
    assert len(rows) == 6 and rows[0][1] == rows[0][2] and rows[-1][2] < rows[-1][1]  # fewer tokens late
    assert recovery["headers"][0] == "trigger"
    assert recovery["data"][0][0].startswith("not triggered")  # a row that says so, not bare headers


def test_dense_choice_prunes_nothing(client):
    summary, dense, entities, diff, pruned, heatmap, layers, recovery = client.predict(
        "Cisplatin-induced nephrotoxicity.", controller="none", lambda_=1.0, recovery=True, api_name="/annotate")
    assert "dense model" in summary and "nothing is pruned" in heatmap
    assert not any(i["class_or_confidence"] for i in pruned)
    assert all(row[-1].startswith("✓") for row in diff["data"])


@pytest.mark.parametrize("text, message", [
    ("", "Enter some text"),
    ("x " * (AppSettings().max_text_chars // 2 + 1), "accepts at most"),
])
def test_bad_text_gives_a_clear_message(client, text, message):
    with pytest.raises(AppError, match=message):
        client.predict(text, controller="rule", api_name="/annotate")


def test_mlp_choice_works_or_says_what_is_missing(client):
    mlp = dict(controller="mlp", lambda_=1.0, prune_layers=[1, 2], recovery=True, api_name="/annotate")
    if (DEFAULT_MODEL_DIR / CONTROLLER_FILE).is_file():
        assert "MLP (learned) controller" in client.predict("Lithium toxicity.", **mlp)[0]  # the summary
    else:
        with pytest.raises(AppError, match="MLP controller is not trained yet"):
            client.predict("Lithium toxicity.", **mlp)


def _names(downloads) -> list[str]:
    return sorted(Path(d["path"] if isinstance(d, dict) else d).name for d in downloads)


def test_batch_writes_pubtator_jsonl_csv_bioc_and_a_summary(client, app_output_dir, tmp_path):
    broken = tmp_path / "notes.txt"
    broken.write_bytes(b"Cisplatin caused acute renal failure.\n\xff\xfe not utf-8\n")
    downloads, summary, errors = client.predict(
        [handle_file(str(SAMPLE_PUBTATOR)), handle_file(str(broken))], controller="rule", lambda_=1.0, recovery=True,
        api_name="/annotate_files")  # output formats: the default, all of them
    assert _names(downloads) == ["bioprune_annotated.bioc.json", "bioprune_annotated.csv",
                                 "bioprune_annotated.jsonl", "bioprune_annotated.pubtator", "bioprune_errors.jsonl"]
    table = dict(summary["data"])
    assert table["documents annotated"] == "4"
    assert table["records that failed (see bioprune_errors.jsonl)"] == "1"
    assert int(table["entities: Chemical"]) > 0 and int(table["entities: Disease"]) > 0
    assert "%" in table["tokens pruned"] and "%" in table["FLOPs saved"]
    assert errors["data"][0][0] == "notes.txt" and "UTF-8" in errors["data"][0][3]  # the name, not a server path
    [run] = [p for p in (app_output_dir / "batch").iterdir() if p.is_dir() and (p / "bioprune_errors.jsonl").is_file()]
    pubtator = (run / "bioprune_annotated.pubtator").read_text(encoding="utf-8")
    assert pubtator.count("|t|") == 4 and "90000002\t" in pubtator
    lines = (run / "bioprune_annotated.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["90000001", "90000002", "90000003", "1"]
    assert (run / "bioprune_annotated.csv").read_text(encoding="utf-8").startswith("id,start,end,label,text,score")
    bioc = json.loads((run / "bioprune_annotated.bioc.json").read_text(encoding="utf-8"))
    assert [d["id"] for d in bioc["documents"]] == ["90000001", "90000002", "90000003", "1"]
    assert any(a["infons"]["type"] == "Chemical" for d in bioc["documents"] for p in d["passages"]
               for a in p.get("annotations", []))


def test_batch_writes_only_the_chosen_formats_and_needs_a_file_and_a_format(client):
    downloads, summary, errors = client.predict(
        [handle_file(str(SAMPLE_PUBTATOR))], controller="none", formats=["bioc"], api_name="/annotate_files")
    assert _names(downloads) == ["bioprune_annotated.bioc.json"]
    with pytest.raises(AppError, match="at least one output format"):
        client.predict([handle_file(str(SAMPLE_PUBTATOR))], controller="none", formats=[], api_name="/annotate_files")
    with pytest.raises(AppError, match="Upload at least one file"):
        client.predict([], controller="none", api_name="/annotate_files")


@pytest.mark.parametrize("name, content, message", [
    ("picture.png", b"\x89PNG\r\n\x1a\n", "Invalid file type|not a file type"),
    ("broken.xml", b"<PubmedArticleSet><PubmedArticle><MedlineCitation>", "No documents could be read"),
    ("binary.txt", b"\x00\x01\x02\x03", "looks like a binary file"),
])
def test_bad_files_give_a_clear_message(client, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict([handle_file(str(path))], controller="none", api_name="/annotate_files")


def test_results_tab_reloads_every_chart_with_a_caption(client):
    note, charts, score_note, scores = client.predict(api_name="/reload_results")
    results_dir = AppSettings().results_dir
    pngs = sorted(p.name for p in results_dir.glob("*.png"))
    assert sorted(c["name"] for c in charts) == pngs  # every chart, one full-size image each
    assert all(len(c["caption"]) > 20 for c in charts)
    if not pngs:
        assert "No charts yet" in note
    if (results_dir / "evaluate_test.json").is_file():
        assert {row[0] for row in scores["data"]} >= {"Chemical", "Disease"}


@pytest.mark.parametrize("target", [str(REPO_ROOT / "app.py"), "/etc/passwd",
                                    str(REPO_ROOT / "results" / "evaluate_test.json")])
def test_files_outside_the_apps_outputs_are_not_served(app_url, target):
    for route in ("/gradio_api/file=", "/file="):
        try:
            with urllib.request.urlopen(f"{app_url}{route}{target}", timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status in (403, 404), f"{route}{target} answered {status}"


def test_faithful_pruning_prunes_after_layer_4_and_keeps_the_dense_entities_of_the_examples(shipped_engine):
    """bioprune.FAITHFUL on the shipped model: tokens leave after layer 4 only, the last layers run on
    fewer tokens, and on the app's example abstracts the entities are the dense model's at the same precision."""
    texts = [example.text for example in load_examples(AppSettings().examples_dir)]
    faithful = shipped_engine.with_config(replace(FAITHFUL, link=False)).annotate(texts)
    dense = shipped_engine.with_config(replace(DEFAULT, link=False)).annotate(texts)
    assert all({p.layer for p in a.trace.pruned_tokens} == {4} for a in faithful)
    assert all(a.trace.tokens_per_layer[5] < a.trace.tokens_per_layer[3] for a in faithful)
    def spans(annotation):
        return [(e.start, e.end, e.label) for e in annotation.entities]  # scores differ, as they may
    changed = sum(spans(f) != spans(d) for f, d in zip(faithful, dense))
    assert changed <= len(texts) // 4, f"{changed} of {len(texts)} example abstracts changed"
