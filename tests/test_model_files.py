"""A model's files: saved with ``save_pretrained`` / ``push_to_hub``, loaded from a folder or a Hub id.

The Hub tests run offline against a local Hugging Face cache built in a fixture (the
``models--org--name/snapshots/<commit>/`` layout with ``refs/main``), so they exercise the real
``snapshot_download`` path without a network.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import filter_repo_objects

from bioprune.config import DENSE, PruningConfig
from bioprune.controllers import LearnedController, RuleController
from bioprune.engine import ModelBundle, PruningEngine, load_model
from bioprune.exits import ExitHeads
from bioprune.labels import LABELS, Decoding
from bioprune.model_files import HUB_FILE_PATTERNS, ModelNotFoundError, resolve_model_dir
from bioprune.postprocess import Postprocess
from bioprune.pruned_layers import PrunedLayers

from conftest import spacy_ner

TEXTS = [
    "Famotidine associated delirium in a patient treated with cisplatin .",
    "Acute renal failure developed after treatment with haloperidol and magnesium sulfate . Delirium resolved .",
    "Seizures were reported in two patients receiving cisplatin and cisplatin .",
]
# dense, the rule controller with recovery, and the learned controller: every saved piece is used
CONFIGS = [DENSE, PruningConfig(controller="rule", aggressiveness=1.0, prune_layers=(1, 2), recovery=True),
           PruningConfig(controller="mlp", prune_layers=(1, 2), min_keep_ratio=0.3)]
REPO_ID = "bioprune-test/tiny-bc5cdr"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _pruned_layers(model) -> PrunedLayers:
    """The model's layers after the first pruning point (1), nudged as training would."""
    torch.manual_seed(3)
    own = PrunedLayers.from_model(model, 1, False)
    return PrunedLayers(1, False, {n: t + 0.05 * torch.randn_like(t) for n, t in own.state.items()})


def _controller(n_classes: int) -> LearnedController:
    """A random learned controller whose threshold lets every token go (down to the floor)."""
    torch.manual_seed(2)
    controller = LearnedController(n_classes + 8).eval()
    controller.threshold.fill_(10.0)
    return controller


@pytest.fixture(scope="module")
def full_model_dir(outside_model_dir, tmp_path_factory) -> Path:
    """The tiny model with everything a model folder holds: exit heads, a learned controller,
    layers trained for pruning, postprocess.json, a training report and a model card."""
    target = tmp_path_factory.mktemp("full-model") / "model"
    shutil.copytree(outside_model_dir, target)
    _controller(len(LABELS)).save(target)
    _pruned_layers(load_model(target)[1]).save(target)
    (target / "postprocess.json").write_text(json.dumps({"passes": ["propagate"], "dev_f1": 0.5}))
    (target / "exit_heads.json").write_text(json.dumps({"layers": [1, 2]}))
    (target / "README.md").write_text("# tiny bioprune model\n")
    (target / "pytorch_model.bin").write_bytes(b"pickled weights bioprune never reads")
    return target


def _same_results(a: PruningEngine, b: PruningEngine) -> None:
    """Identical annotations, traces included, under every config; pruning really happened."""
    for config in CONFIGS:
        expected = a.with_config(config).annotate(TEXTS)
        assert b.with_config(config).annotate(TEXTS) == expected
        if config.enabled:
            assert any(ann.trace.pruned_tokens for ann in expected)


# --- save_pretrained ------------------------------------------------------------------------------

def test_save_pretrained_round_trips_a_loaded_model(full_model_dir, tmp_path):
    engine = PruningEngine.from_pretrained(full_model_dir)
    assert engine.postprocess.passes == ("propagate",) and "mlp" in engine.controllers
    saved = engine.save_pretrained(tmp_path / "saved")
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "exit_heads.safetensors",
            "exit_heads.json", "controller.safetensors", "pruned_layers.safetensors", "postprocess.json",
            "README.md"} <= names
    assert "pytorch_model.bin" not in names  # pickled weights are never carried along
    for name in ("model.safetensors", "exit_heads.safetensors", "controller.safetensors", "pruned_layers.safetensors",
                 "README.md"):
        assert (saved / name).read_bytes() == (full_model_dir / name).read_bytes()  # as shipped
    loaded = PruningEngine.from_pretrained(saved)
    assert loaded.postprocess.passes == ("propagate",) and loaded.exit_heads.layers == (1, 2)
    _same_results(engine, loaded)


def test_save_pretrained_writes_a_model_built_in_memory(outside_model_dir, tmp_path):
    tokenizer, model = load_model(outside_model_dir)
    controllers = {"rule": RuleController(), "mlp": _controller(len(LABELS))}
    engine = PruningEngine(ModelBundle(model, tokenizer, exit_heads=ExitHeads.load(outside_model_dir),
                                       controllers=controllers, postprocess=Postprocess(("propagate", "abbreviations")),
                                       pruned_layers=_pruned_layers(model)))
    saved = engine.save_pretrained(tmp_path / "memory")
    assert {"config.json", "model.safetensors", "exit_heads.safetensors", "controller.safetensors",
            "pruned_layers.safetensors", "postprocess.json", "README.md"} <= {p.name for p in saved.iterdir()}
    assert json.loads((saved / "postprocess.json").read_text()) == {"passes": ["propagate", "abbreviations"]}
    card = (saved / "README.md").read_text()
    assert "exit heads: after layers [1, 2]" in card and "B-Chemical" in card
    loaded = PruningEngine.from_pretrained(saved)
    assert loaded.postprocess == engine.postprocess
    _same_results(engine, loaded)


def test_save_pretrained_writes_weights_changed_since_loading(full_model_dir, tmp_path):
    engine = PruningEngine.from_pretrained(full_model_dir)
    with torch.no_grad():  # as fine-tuning would: the folder no longer holds these weights
        engine.model.classifier.bias += 0.5
        engine.exit_heads.heads["1"].bias -= 0.25
    saved = engine.save_pretrained(tmp_path / "tuned")
    assert (saved / "model.safetensors").read_bytes() != (full_model_dir / "model.safetensors").read_bytes()
    loaded = PruningEngine.from_pretrained(saved)
    assert torch.equal(loaded.model.classifier.bias, engine.model.classifier.bias)
    assert torch.equal(loaded.exit_heads.heads["1"].bias, engine.exit_heads.heads["1"].bias)
    assert loaded.postprocess == engine.postprocess
    _same_results(engine, loaded)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_model_folder_is_as_readable_as_the_umask_says(outside_model_dir, tmp_path, umask):
    """safetensors writes owner-only files whatever the umask: a lab-mate, or a container running as
    another user, could not load a model folder saved on a shared machine."""
    tokenizer, model = load_model(outside_model_dir)
    engine = PruningEngine(ModelBundle(model, tokenizer, exit_heads=ExitHeads.load(outside_model_dir),
                                       controllers={"rule": RuleController(), "mlp": _controller(len(LABELS))},
                                       pruned_layers=_pruned_layers(model)))
    previous = os.umask(umask)
    try:
        saved = engine.save_pretrained(tmp_path / "shared")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in saved.iterdir() if p.is_file()}
    assert {"model.safetensors", "exit_heads.safetensors", "controller.safetensors",
            "pruned_layers.safetensors"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_save_pretrained_writes_this_engines_postprocess_choice(full_model_dir, tmp_path):
    shipped = Postprocess.load(full_model_dir)
    for name, chosen in [("no-passes", Postprocess()),  # overrides the folder's choice
                         ("viterbi", replace(shipped, decoding=Decoding(viterbi=True, outside_log_bias=0.25)))]:
        engine = PruningEngine.from_pretrained(full_model_dir, postprocess=chosen)
        assert engine.with_config(DENSE).postprocess == chosen
        saved = engine.save_pretrained(tmp_path / name)
        assert PruningEngine.from_pretrained(saved).postprocess == chosen
    assert PruningEngine.from_pretrained(full_model_dir).postprocess == shipped == Postprocess(("propagate",))  # untouched


def test_push_to_hub_uploads_what_save_pretrained_writes(full_model_dir, tmp_path, monkeypatch):
    engine = PruningEngine.from_pretrained(full_model_dir)
    calls = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload"] = repo_id
        calls["files"] = _files(Path(folder_path))
        return "commit-url"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: calls.setdefault("create", repo_id))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert engine.push_to_hub(REPO_ID) == "commit-url"
    saved = engine.save_pretrained(tmp_path / "saved")
    assert calls["create"] == calls["upload"] == REPO_ID
    assert calls["files"] == _files(saved) and "linker/names.tsv.gz" in calls["files"]  # the index travels


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- loading from the Hub (offline, a local cache) --------------------------------------------------

@pytest.fixture
def hub_cache(full_model_dir, tmp_path, monkeypatch) -> Path:
    """A local Hugging Face cache holding ``REPO_ID`` at ``COMMIT`` (``refs/main``), offline."""
    cache = tmp_path / "hub"
    repo = cache / ("models--" + REPO_ID.replace("/", "--"))
    shutil.copytree(full_model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, value in (("HF_HOME", tmp_path / "hf-home"), ("HF_HUB_CACHE", cache), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import: the env alone is too late
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_from_pretrained_by_hub_id_brings_exit_heads_controller_and_postprocess(hub_cache, full_model_dir):
    engine = PruningEngine.from_pretrained(REPO_ID)
    assert engine.source_dir == hub_cache / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / COMMIT
    assert engine.exit_heads is not None and engine.exit_heads.layers == (1, 2)
    assert isinstance(engine.controllers.get("mlp"), LearnedController)
    assert engine.postprocess.passes == ("propagate",)
    _same_results(PruningEngine.from_pretrained(full_model_dir), engine)


def test_spacy_component_takes_a_hub_id(hub_cache, full_model_dir):
    pytest.importorskip("spacy")
    nlp = spacy_ner(REPO_ID, controller="mlp", prune_layers=[1, 2])  # layers this 3-layer model has heads at
    assert nlp.config["components"]["bioprune_ner"]["model"] == REPO_ID  # the config stays portable
    docs = list(nlp.pipe(TEXTS))
    expected = PruningEngine.from_pretrained(full_model_dir).with_config(
        PruningConfig(controller="mlp", prune_layers=(1, 2), min_keep_ratio=0.3, recovery=False)).annotate(TEXTS)
    assert [[(e.start_char, e.end_char) for e in d.ents] for d in docs] == \
        [[(e.start, e.end) for e in ann.entities] for ann in expected]
    assert [d._.bioprune_pruned_tokens for d in docs] == [[vars(p) for p in a.trace.pruned_tokens] for a in expected]
    assert any(d._.bioprune_pruned_tokens for d in docs)


def test_a_hub_id_not_in_the_cache_is_one_clear_line(hub_cache):
    with pytest.raises(ModelNotFoundError) as info:
        PruningEngine.from_pretrained("bioprune-test/not-cached")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("bioprune-test/not-cached: ") and "HF_HUB_OFFLINE is set" in message


@pytest.mark.parametrize("name, reason", [
    ("/nonexistent/model", "no such model directory"),
    ("./runs/missing", "no such model directory"),
])
def test_a_path_that_is_not_there_is_one_clear_line(name, reason):
    with pytest.raises(ModelNotFoundError, match=reason) as info:
        PruningEngine.from_pretrained(name)
    assert str(info.value).startswith(f"{name}: ") and "\n" not in str(info.value)
    with pytest.raises(ModelNotFoundError, match=reason):
        resolve_model_dir(name)


def test_hub_downloads_only_safetensors_json_and_tokenizer_files():
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt", "spiece.model",
             "exit_heads.safetensors", "controller.safetensors", "postprocess.json", "README.md", "weights.pt",
             "optimizer.pt", "training_args.bin"]
    kept = set(filter_repo_objects(files, allow_patterns=list(HUB_FILE_PATTERNS)))
    assert kept == {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "spiece.model",
                    "exit_heads.safetensors", "controller.safetensors", "postprocess.json", "README.md"}
