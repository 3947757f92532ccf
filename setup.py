"""Build hook: ship the evaluation suite's charts and scores with the app (everything else is in pyproject.toml).

The training scripts write ``results/`` at the repository root, and the app's Results tab shows its
``*.png`` charts and reads ``evaluate_test.json``. A wheel carries only packages, so building one
copies ``results/*.png`` and ``results/*.json`` into ``bioprune/app/shipped_results/`` inside the build
(never into the source tree): the repository keeps one copy, and ``pip install .`` gives an app that
finds its charts without a checkout (``bioprune.app.settings.default_results_dir``).
"""
import logging
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESULTS_DIR = Path(__file__).parent / "results"
SHIPPED_PATTERNS = ("*.png", "*.json")
SHIPPED_DIR = ("bioprune", "app", "shipped_results")  # bioprune.app.settings.SHIPPED_RESULTS_DIR, inside the package


class BuildPyWithResults(build_py):
    """build_py that also copies the results charts and JSON into the built ``bioprune.app`` package."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads results/ from the checkout itself
            return
        target = Path(self.build_lib, *SHIPPED_DIR)
        files = sorted(p for pattern in SHIPPED_PATTERNS for p in RESULTS_DIR.glob(pattern) if p.is_file())
        if not files:
            logging.warning("no results/*.png or *.json to ship: the app's Results tab will be empty")
            return
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithResults})
