"""The app installed with ``pip install .`` (not run from a checkout) finds its examples and charts.

The sources are copied to a temporary directory (so the build writes nothing into the working
tree), installed with ``pip install --target`` (no dependencies, no build isolation: offline), and a
fresh Python started in another directory with only that target ahead of the site-packages imports
``bioprune.app`` from it and asks where its data is. Slow-ish (it copies the shipped model): one test.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bioprune.app.settings import REPO_ROOT

SOURCES = ("pyproject.toml", "setup.py", "README.md", "bioprune", "results")

PROBE = """
import json
import bioprune.app as app
from bioprune.app.examples import load_examples
from bioprune.app.results import dense_score_rows, find_charts
from bioprune.app.settings import AppSettings
s = AppSettings()
print(json.dumps({"app": app.__file__, "examples_dir": str(s.examples_dir), "results_dir": str(s.results_dir),
                  "examples": [e.label for e in load_examples(s.examples_dir)],
                  "sample": (s.examples_dir / "batch_sample.pubtator").is_file(),
                  "charts": [c.path.name for c in find_charts(s.results_dir)],
                  "scores": dense_score_rows(s.results_dir) is not None}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, source / name)
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", str(source), "--target", str(target),
                           "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def test_the_installed_app_finds_its_examples_and_charts(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("app", "examples_dir", "results_dir"):
        assert Path(found[key]).is_relative_to(installed), (key, found[key])  # not the checkout
    assert len(found["examples"]) == len(list((REPO_ROOT / "bioprune" / "app" / "abstracts").glob("*.txt"))) >= 5
    assert found["sample"]
    assert sorted(found["charts"]) == sorted(p.name for p in (REPO_ROOT / "results").glob("*.png")) != []
    assert found["scores"] == (REPO_ROOT / "results" / "evaluate_test.json").is_file()


def test_pip_install_puts_one_package_into_site_packages(installed):
    """``pip install .`` installs ``bioprune`` alone: adapters live inside it, so no top-level
    ``webapp`` or ``batch`` can collide with another project's."""
    top_level = {p.name for p in installed.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))}
    assert top_level - {"bin", "__pycache__"} == {"bioprune"}, top_level
