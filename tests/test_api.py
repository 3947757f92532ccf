"""The public API and the core checks behind the CLI's one-line errors: what ``import bioprune``
offers and its version, device resolution, model-directory checks, and the warning about pruning
knobs given to the dense model."""
from __future__ import annotations

import importlib.metadata
import shutil
import tomllib
import warnings
from pathlib import Path

import pytest
import torch

import bioprune
from bioprune.config import DENSE, IgnoredSettingWarning, PruningConfig
from bioprune.devices import resolve_device
from bioprune.model_files import ModelNotFoundError, resolve_model_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_imports_from_the_package():
    from bioprune import (DENSE, ENTITY_TYPES, Annotation, Document, Entity, InputError,  # noqa: F401
                          PrunedToken, PruningConfig, PruningEngine, RecoveryEvent, Trace, __version__)

    assert PruningConfig(controller="rule").enabled and not DENSE.enabled
    assert all(hasattr(bioprune, name) for name in bioprune.__all__)
    assert {"PruningEngine", "PruningConfig", "Annotation", "Entity", "Trace", "__version__"} <= set(bioprune.__all__)


def test_version_comes_from_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert bioprune.__version__ == importlib.metadata.version("bioprune") == declared


def test_resolve_device_on_two_fake_gpus(fake_gpus):
    assert resolve_device("cuda") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device(torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match=r"^cuda:2: this machine has 2 GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="^gpu: not a torch device: use cpu, cuda or cuda:N$"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that cannot use CUDA")
def test_resolve_device_on_a_cpu_only_torch():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="^cuda: this torch is built without CUDA; use cpu"):
        resolve_device("cuda")


def test_an_incomplete_model_directory_names_what_is_missing(tiny_model_dir, tmp_path):
    assert resolve_model_dir(tiny_model_dir) == tiny_model_dir  # complete: no error
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_model_dir / "config.json", bare / "config.json")
    with pytest.raises(ModelNotFoundError, match=f"^{bare}: not a complete model directory, no weights "
                                                 r"\(model.safetensors\), no tokenizer \(tokenizer.json or vocab.txt\)"):
        resolve_model_dir(bare)


def test_the_core_warns_about_knobs_the_dense_model_ignores():
    with pytest.warns(IgnoredSettingWarning, match="aggressiveness set but ignored") as record:
        config = PruningConfig(controller="none", aggressiveness=3)
    assert record[0].message.settings == ("aggressiveness",) == config.ignored_settings
    assert record[0].filename == __file__  # points at the caller's line
    with pytest.warns(IgnoredSettingWarning):
        PruningConfig(controller="rule", recovery=True).with_(controller="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is a mistake
        assert DENSE.ignored_settings == () and PruningConfig(controller="none").ignored_settings == ()
        assert PruningConfig(controller="rule", aggressiveness=3).ignored_settings == ()
        DENSE.with_(controller="rule", aggressiveness=None, prune_layers=None)
