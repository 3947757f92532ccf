"""The Gradio app over the shipped model: it builds without a server, and a launched one answers
through gradio_client (annotate, batch, clear messages for bad input, no files outside its own)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio: pip install '.[test]'")
pytest.importorskip("gradio_client", reason="the app tests need gradio_client: pip install '.[test]'")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from webapp.settings import REPO_ROOT, AppSettings  # noqa: E402

EXAMPLE = (REPO_ROOT / "examples" / "app" / "haloperidol_qt.txt").read_text(encoding="utf-8").strip()
SAMPLE_PUBTATOR = REPO_ROOT / "examples" / "app" / "batch_sample.pubtator"


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False, download_files=False)


def test_app_builds_without_launching(built_app, app_output_dir):
    import gradio as gr

    assert isinstance(built_app, gr.Blocks)
    config = built_app.get_config_file()
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"annotate", "annotate_files", "reload_results"} <= api_names
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"text", "entities", "entities-dense", "pruned", "heatmap", "recovery", "layers", "diff",
            "batch-files", "batch-summary", "charts"} <= ids
    assert built_app.bioprune_context.output_dir == app_output_dir
    assert not built_app.allowed_paths  # no extra served paths


def test_launch_refuses_allowed_paths(built_app):
    from webapp.ui import launch

    with pytest.raises(ValueError, match="allowed_paths"):
        launch(built_app, allowed_paths=[str(REPO_ROOT)], prevent_thread_lock=True)


def test_launch_retries_gradios_localhost_check_only():
    from webapp.ui import LAUNCH_ATTEMPTS, launch

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


def test_annotate_through_the_client_shows_entities_pruning_and_speed(client):
    (summary, dense, entities, diff, pruned, heatmap, layers, recovery) = client.predict(
        EXAMPLE, "rule", 1.0, 0.3, True, api_name="/annotate")
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


def test_dense_choice_prunes_nothing(client):
    summary, dense, entities, diff, pruned, heatmap, layers, recovery = client.predict(
        "Cisplatin-induced nephrotoxicity.", "none", 1.0, 0.3, True, api_name="/annotate")
    assert "dense model" in summary and "nothing is pruned" in heatmap
    assert not any(i["class_or_confidence"] for i in pruned)
    assert all(row[-1].startswith("✓") for row in diff["data"])


@pytest.mark.parametrize("text, message", [
    ("", "Enter some text"),
    ("x " * (AppSettings().max_text_chars // 2 + 1), "accepts at most"),
])
def test_bad_text_gives_a_clear_message(client, text, message):
    with pytest.raises(AppError, match=message):
        client.predict(text, "rule", 1.0, 0.3, True, api_name="/annotate")


def test_mlp_choice_works_or_says_what_is_missing(client):
    from bioprune.controllers import CONTROLLER_FILE
    from bioprune.engine import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / CONTROLLER_FILE).is_file():
        summary = client.predict("Lithium toxicity.", "mlp", 1.0, 0.3, True, api_name="/annotate")[0]
        assert "MLP (learned) controller" in summary
    else:
        with pytest.raises(AppError, match="MLP controller is not trained yet"):
            client.predict("Lithium toxicity.", "mlp", 1.0, 0.3, True, api_name="/annotate")


def test_batch_writes_pubtator_jsonl_csv_and_a_summary(client, app_output_dir, tmp_path):
    broken = tmp_path / "notes.txt"
    broken.write_bytes(b"Cisplatin caused acute renal failure.\n\xff\xfe not utf-8\n")
    downloads, summary, errors = client.predict(
        [handle_file(str(SAMPLE_PUBTATOR)), handle_file(str(broken))], "rule", 1.0, 0.3, True,
        api_name="/annotate_files")
    names = sorted(Path(d["path"] if isinstance(d, dict) else d).name for d in downloads)
    assert names == ["bioprune_annotated.csv", "bioprune_annotated.jsonl", "bioprune_annotated.pubtator",
                     "bioprune_errors.jsonl"]
    table = dict(summary["data"])
    assert table["documents annotated"] == "4"
    assert table["records that failed (see bioprune_errors.jsonl)"] == "1"
    assert int(table["entities: Chemical"]) > 0 and int(table["entities: Disease"]) > 0
    assert "%" in table["tokens pruned"] and "%" in table["FLOPs saved"]
    assert errors["data"][0][0] == "notes.txt" and "UTF-8" in errors["data"][0][3]  # the name, not a server path
    [run] = [p for p in (app_output_dir / "batch").iterdir() if p.is_dir()]  # written into the app's own dir
    pubtator = (run / "bioprune_annotated.pubtator").read_text(encoding="utf-8")
    assert pubtator.count("|t|") == 4 and "90000002\t" in pubtator
    lines = (run / "bioprune_annotated.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["90000001", "90000002", "90000003", "1"]
    assert (run / "bioprune_annotated.csv").read_text(encoding="utf-8").startswith("id,start,end,label,text,score")


@pytest.mark.parametrize("name, content, message", [
    ("picture.png", b"\x89PNG\r\n\x1a\n", "Invalid file type|not a file type"),
    ("broken.xml", b"<PubmedArticleSet><PubmedArticle><MedlineCitation>", "No documents could be read"),
    ("binary.txt", b"\x00\x01\x02\x03", "looks like a binary file"),
])
def test_bad_files_give_a_clear_message(client, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict([handle_file(str(path))], "none", 1.0, 0.3, True, api_name="/annotate_files")


def test_no_file_upload_is_a_clear_message(client):
    with pytest.raises(AppError, match="Upload at least one file"):
        client.predict([], "none", 1.0, 0.3, True, api_name="/annotate_files")


def test_results_tab_reloads(client):
    note, gallery, score_note, scores = client.predict(api_name="/reload_results")
    charts = sorted((REPO_ROOT / "results").glob("*.png"))
    if charts:
        assert len(gallery) == len(charts)
    else:
        assert "No charts yet" in note
    if (REPO_ROOT / "results" / "evaluate_test.json").is_file():
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
