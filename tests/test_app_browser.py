"""The app in a real headless Chromium: pick an example, annotate, see entities and pruned tokens
laid out as the text itself (no split words, no invented spaces), and every chart at full size.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run`` installs it),
driven by Playwright's Python package through ``executable_path``: no ``playwright install``
download. Without a Chromium the test is skipped with the reason. The full-page screenshot is kept
as a test artefact in ``tests/artifacts/`` (git-ignored); the path is printed.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio: pip install '.[test]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install '.[test]'")

from bioprune.app.settings import AppSettings  # noqa: E402
from bioprune.config import PruningConfig  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 180_000  # a CPU shared with training jobs can be slow; a healthy run takes seconds


def chromium_path() -> str | None:
    """$BIOPRUNE_CHROMIUM, else ``chromium`` / ``chromium-browser`` on PATH."""
    explicit = os.environ.get("BIOPRUNE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(app_url):
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's package: apt-get install -y chromium; "
                    "or set BIOPRUNE_CHROMIUM to its path)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector("#annotate-btn")
        yield page
        browser.close()


def test_example_annotates_with_entities_and_pruned_tokens(page):
    page.locator("#examples").get_by_role("button", name=re.compile("Valproate-associated")).click()
    textarea = page.locator("#text textarea")
    page.wait_for_function("document.querySelector('#text textarea').value.startsWith('Valproate-associated')")
    assert "valproic acid" in textarea.input_value()
    page.locator("#annotate-controller").get_by_text("rule", exact=True).click()
    page.click("#annotate-btn")
    page.wait_for_function("document.querySelector('#summary') && "
                           "document.querySelector('#summary').innerText.includes('tokens pruned')")

    entities = page.locator("#entities")
    legend = entities.get_by_test_id("highlighted-text:category-legend").inner_text()
    assert "Chemical" in legend and "Disease" in legend
    highlighted = entities.locator(".highlighted")
    assert highlighted.count() >= 5
    marked = " | ".join(highlighted.all_inner_texts())
    assert "valproic acid" in marked.lower() or "valproate" in marked.lower(), marked

    pruned = page.locator("#pruned")
    page.wait_for_function("document.querySelector('#pruned [data-testid=\"highlighted-text:category-legend\"]')")
    legend = pruned.get_by_test_id("highlighted-text:category-legend").inner_text()
    assert re.findall(r"pruned after layer \d+", legend) == ["pruned after layer 2"]  # rule: after layer 2 only
    assert pruned.locator(".highlighted").count() > 0
    heat = page.locator("#heatmap .bp-pruned")
    assert heat.count() > 0 and heat.first.get_attribute("data-layer").isdigit()
    assert "FLOPs" in page.locator("#summary").inner_text()

    text = textarea.input_value()
    for view in ("#entities", "#pruned"):  # the segments are the text, byte for byte, and no word is cut
        shown = page.evaluate(f"[...document.querySelectorAll('{view} .textfield .text')].map(e => e.textContent).join('')")
        assert shown == text, view
    # what a person sees: nothing between "Valproate" and "-associated" (Gradio's boxes put a margin there)
    gap = page.evaluate("""() => {
        const token = [...document.querySelectorAll('#entities .highlighted .text')].find(e => e.textContent === 'Valproate');
        const next = token.closest('.token-container').nextElementSibling.querySelector('.text');
        const range = document.createRange(); range.setStart(next.firstChild, 0); range.setEnd(next.firstChild, 1);
        return range.getBoundingClientRect().left - token.getBoundingClientRect().right; }""")
    assert abs(gap) < 1.5, f"{gap:.1f} px between 'Valproate' and '-associated'"
    words = [w.lower() for w in re.findall(r"\w+", text)]
    for piece in pruned.locator(".highlighted .text").all_inner_texts():  # pruned marks are whole words
        assert all(w.lower() in words for w in re.findall(r"\w+", piece)), piece

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "app_annotate.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")


def test_picking_a_controller_sets_its_operating_point(page):
    """λ and the ticked pruning layers move to the picked controller's own (PruningConfig's OPERATING_POINTS)."""
    lam = page.locator("#annotate-lambda input[type=number]")
    ticked = ("[...document.querySelectorAll('#annotate-prune-layers input[type=checkbox]')]"
              ".filter(e => e.checked).map(e => e.closest('label').innerText.trim()).join(' ')")
    for label, controller in (("MLP (learned)", "mlp"), ("rule", "rule")):
        page.locator("#annotate-controller").get_by_text(label, exact=True).click()
        config = PruningConfig(controller=controller)
        page.wait_for_function(f"Number(document.querySelector('#annotate-lambda input[type=number]').value) "
                               f"=== {config.aggressiveness}")
        assert float(lam.input_value()) == config.aggressiveness
        layers = " ".join(map(str, config.prune_layers))
        page.wait_for_function(f"{ticked} === '{layers}'")
        assert page.evaluate(ticked) == layers


def test_empty_text_shows_a_message_not_a_traceback(page):
    page.locator("#text textarea").fill("")
    page.click("#annotate-btn")
    toast = page.get_by_text("Enter some text to annotate")
    toast.first.wait_for()
    body = page.locator("body").inner_text()
    assert "Traceback" not in body


def test_results_tab_shows_every_chart_full_size_with_a_caption(page):
    n_charts = len(list(AppSettings().results_dir.glob("*.png")))
    page.get_by_role("tab", name="Results").click()
    images = page.locator("#charts .bp-chart img")
    page.wait_for_function(f"document.querySelectorAll('#charts .bp-chart img').length === {n_charts}")
    page.wait_for_function("[...document.querySelectorAll('#charts .bp-chart img')].every(i => i.complete && i.naturalWidth > 0)")
    width = page.evaluate("document.querySelector('#charts').getBoundingClientRect().width")
    for i in range(n_charts):
        box = images.nth(i).bounding_box()
        assert box["width"] >= 0.8 * width, f"chart {i + 1} is {box['width']:.0f} px wide of {width:.0f}"
    captions = list(dict.fromkeys(page.locator("#charts .bp-chart-caption").all_inner_texts()))  # block + prose
    assert len(captions) == n_charts and all(c.startswith(f"Figure {i}.") for i, c in enumerate(captions, 1))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app_results.png"), full_page=True)
    page.get_by_role("tab", name="Annotate").click()


def test_the_batch_sample_runs_and_offers_bioc_json(page):
    page.get_by_role("tab", name="Batch").click()
    assert "BioC JSON" in page.locator("#batch-formats").inner_text()
    page.click("#batch-sample")
    page.wait_for_function("document.querySelector('#batch-files').innerText.includes('batch_sample')")
    page.click("#batch-btn")
    page.wait_for_function("document.querySelector('#batch-summary').innerText.includes('documents annotated')")
    downloads = page.locator("#batch-downloads").inner_text().replace("\n", "")
    assert "bioprune_annotated.bioc.json" in downloads and "Error" not in downloads
    page.get_by_role("tab", name="Annotate").click()
