"""AppSettings: the app's limits, concurrency and directories, in one frozen record."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]  # the checkout, when the app runs from one (a Space, development)
EXAMPLES_DIR = PACKAGE_DIR / "abstracts"  # package data: example abstracts and the Batch tab's sample file
# The evaluation suite writes results/ at the repository root; building the package (setup.py's
# build_py) copies its charts and JSON into bioprune/app/shipped_results, so an installed app has them.
SHIPPED_RESULTS_DIR = PACKAGE_DIR / "shipped_results"


def default_results_dir() -> Path:
    """Where the Results tab reads charts and scores: the copy shipped in the package, else the checkout's."""
    return SHIPPED_RESULTS_DIR if SHIPPED_RESULTS_DIR.is_dir() else REPO_ROOT / "results"


@dataclass(frozen=True)
class AppSettings:
    """What the app accepts and how many requests it runs at once.

    The defaults suit a CPU Space with 2 vCPUs: one abstract annotates (dense and pruned) in well
    under a second, so a request waits in the queue rather than sharing the CPU with many others.
    """

    max_text_chars: int = 20_000  # Annotate tab: about ten abstracts; longer text -> the Batch tab
    max_files: int = 10  # Batch tab: files per run
    max_file_bytes: int = 50 * 1024 * 1024  # Batch tab: per file (also Gradio's upload limit)
    max_batch_documents: int = 1_000  # Batch tab: documents per run; the rest are reported as skipped
    batch_chunk_docs: int = 32  # documents annotated together (and per progress step)
    annotate_concurrency: int = 2  # Annotate requests running at once (each runs dense + pruned)
    batch_concurrency: int = 1  # Batch runs at once (they are long; they queue)
    queue_max_size: int = 64  # requests waiting beyond this are refused with "queue full"
    keep_batch_runs: int = 20  # newest batch-run output folders kept in the app's temp directory
    results_dir: Path = field(default_factory=default_results_dir)  # charts (*.png) and evaluate_test.json
    examples_dir: Path = EXAMPLES_DIR  # example abstracts, one per .txt file

    def __post_init__(self):
        for f in fields(self):  # every count and limit: the int fields (directories are Paths)
            if isinstance(value := getattr(self, f.name), int) and value < 1:
                raise ValueError(f"{f.name} must be >= 1, got {value}")

    def torch_threads(self, cpus: int | None = None) -> int:
        """Intra-op threads per request so that concurrent requests do not oversubscribe the CPUs."""
        cpus = cpus or os.cpu_count() or 1
        return max(1, cpus // self.annotate_concurrency)


def make_output_dir(gradio_cache: bool = False) -> Path:
    """A new temporary directory for everything the app writes, removed when the process exits.

    ``gradio_cache=True`` also points Gradio's upload/cache directory into it (``GRADIO_TEMP_DIR``,
    unless already set); call it before Gradio is imported for that to take effect everywhere.
    """
    path = Path(tempfile.mkdtemp(prefix="bioprune-app-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    if gradio_cache:
        os.environ.setdefault("GRADIO_TEMP_DIR", str(path / "gradio"))
    return path
