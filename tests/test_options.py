"""One adapter (bioprune.options): every face setting of PruningConfig shows up in every face."""
from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from pathlib import Path
from typing import Optional

import pytest

import bioprune.options as options
from bioprune.cli import _config, build_parser
from bioprune.config import DEFAULT, FAITHFUL, PruningConfig, dense_twin
from bioprune.engine import PruningEngine
from bioprune.options import DEFAULT_SETTINGS, SETTINGS, Setting, add_config_arguments, config_from_values

from conftest import spacy_ner


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


# a stand-in for a face field added to PruningConfig (its field is min_keep_ratio)
EXTRA = Setting(field="min_keep_ratio", flag="--new-knob", key="new_knob", kind="float", choices=(), default=0.5,
                help="a knob added to PruningConfig")


def test_face_settings_are_the_fields_marked_face():
    marked = [f.name for f in fields(PruningConfig) if f.metadata.get("face")]
    assert [s.field for s in SETTINGS] == marked
    assert {"controller", "aggressiveness", "precision"} <= set(marked)
    assert "exit_margin" not in marked  # an expert knob: Python and the scripts' --set only
    assert DEFAULT_SETTINGS["lambda_"] is None  # λ: the controller's operating point
    assert DEFAULT_SETTINGS["controller"] == DEFAULT.controller and DEFAULT_SETTINGS["precision"] == DEFAULT.precision


@pytest.mark.parametrize("command", ["annotate", "evaluate"])
def test_every_setting_is_a_cli_flag_of_each_command(command):
    assert {s.flag for s in SETTINGS} <= _flags(_subparser(build_parser(), command))


def test_a_new_field_reaches_the_cli_through_the_adapter(monkeypatch):
    """What adding a face field to PruningConfig does to the CLI, without editing the CLI."""
    monkeypatch.setattr(options, "SETTINGS", (*options.SETTINGS, EXTRA))
    ns = _subparser(build_parser(), "annotate").parse_args(["x.txt", "--output", "y", "--new-knob", "0.7"])
    assert ns.new_knob == 0.7


def test_the_scripts_take_the_same_flags():
    from training.analysis.common import add_pruning_args, pruning_config

    parser = argparse.ArgumentParser()
    add_pruning_args(parser)
    assert {s.flag for s in SETTINGS} <= _flags(parser)
    config = pruning_config(parser.parse_args(["--controller", "mlp", "--precision", "fp32", "--lambda", "3"]))
    assert (config.controller, config.precision, config.aggressiveness) == ("mlp", "fp32", 3.0)
    assert config.prune_layers == PruningConfig(controller="mlp").prune_layers  # the controller's point
    narrow = argparse.ArgumentParser()
    add_config_arguments(narrow, without=("link",))  # a script that would ignore it has no such flag
    assert "--link" not in _flags(narrow) and {s.flag for s in SETTINGS if s.field != "link"} <= _flags(narrow)
    assert pruning_config(narrow.parse_args([])).link == DEFAULT.link


@pytest.mark.parametrize("path, pattern", [("README.md", r"\| pruning that keeps more of the dense entities \| `([^`]+)`"),
                                           ("training/gpu_check.sh", r'FAITHFUL="([^"]+)"')])
def test_the_flags_of_faithful_pruning_are_bioprune_faithful(path, pattern):
    """The CLI spelling of faithful pruning in the README and in the GPU check is the preset, field for field."""
    [flags] = re.findall(pattern, (Path(__file__).resolve().parents[1] / path).read_text())
    ns = _subparser(build_parser(), "annotate").parse_args(["x.txt", "--output", "y", *flags.split()])
    assert _config(ns) == FAITHFUL


def test_values_round_trip_and_unknown_keys_are_refused():
    config = PruningConfig(controller="mlp", aggressiveness=4.0, prune_layers=(1, 3), recovery=True, precision="bf16")
    assert config_from_values({s.key: getattr(config, s.field) for s in SETTINGS}) == config
    assert config_from_values({}) == DEFAULT
    assert config_from_values({"controller": "rule", "aggressiveness": 3}).aggressiveness == 3.0  # field names too
    with pytest.raises(ValueError, match="unknown setting.*'lambda'"):
        config_from_values({"lambda": 3})


def test_cli_flags_build_the_config():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    ns = parser.parse_args(["--controller", "rule", "--prune-layers", "1", "2", "--no-recovery", "--precision", "bf16"])
    config = config_from_values(vars(ns))
    assert (config.controller, config.prune_layers, config.recovery, config.precision) == ("rule", (1, 2), False, "bf16")
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "int4"])


def test_every_setting_is_a_spacy_config_key_with_its_default():
    from bioprune.spacy import DEFAULT_CONFIG, make_bioprune_ner

    params = inspect.signature(make_bioprune_ner).parameters
    for s in SETTINGS:
        assert s.key in params and DEFAULT_CONFIG[s.key] == s.default


def test_a_new_field_reaches_the_spacy_signature(monkeypatch):
    import bioprune.spacy as factory

    monkeypatch.setattr(factory, "SETTINGS", (*factory.SETTINGS, EXTRA))
    signature, annotations = factory._signature()
    assert "new_knob" in signature.parameters and annotations["new_knob"] == Optional[float]


@pytest.mark.filterwarnings("ignore::bioprune.config.IgnoredSettingWarning")  # the stand-in's field is min_keep_ratio
def test_a_new_field_reaches_the_apps_tabs_and_api(monkeypatch, pruning_engine, tmp_path):
    """What adding a face field does to the app, without editing the app: a control in both tabs, a
    parameter of each endpoint that takes the settings, and its value in the engine's config."""
    pytest.importorskip("gradio", reason="the app needs gradio: pip install '.[test]'")
    from bioprune.app.annotate_tab import entities_answer
    from bioprune.app.ui import build_app

    monkeypatch.setattr(options, "SETTINGS", (*options.SETTINGS, EXTRA))
    monkeypatch.setattr(options, "DEFAULT_SETTINGS", {**options.DEFAULT_SETTINGS, "new_knob": 0.5})
    app = build_app(pruning_engine, output_dir=tmp_path)
    controls = {c["props"].get("elem_id"): c for c in app.get_config_file()["components"]}
    for tab in ("annotate", "batch"):
        control = controls.get(f"{tab}-new-knob")
        assert control is not None, f"no control for the new setting in the {tab} tab"
        assert control["type"] == "number" and control["props"]["value"] == 0.5
        assert control["props"]["info"] == EXTRA.help
    endpoints = app.get_api_info()["named_endpoints"]
    for name in ("/annotate", "/entities", "/annotate_files"):
        assert "new_knob" in [p["parameter_name"] for p in endpoints[name]["parameters"]], name
    answer = entities_answer(app.bioprune_context, "Cisplatin nephrotoxicity.", controller="rule", new_knob=0.7)
    assert "new_knob 0.7" in answer["setting"] and "min_keep_ratio 0.70" in answer["setting"]  # its field


def test_spacy_pipelines_saved_with_controller_default_still_build(default_model_dir):
    """Pipelines saved before the settings came from bioprune.options say controller = "default"."""
    nlp = spacy_ner(default_model_dir, controller="default", precision="fp32")
    assert nlp.get_pipe("bioprune_ner").engine.config == DEFAULT.with_(precision="fp32")


def test_the_sweeps_set_flag_parses_yes_no_fields():
    """--set frozen_context=False must not become bool("False") == True."""
    from training.sweep_pruning import _parse

    assert _parse(False, "False") is False and _parse(False, "true") is True
    assert _parse(0.3, "0.5") == 0.5 and _parse("auto", "bf16") == "bf16"
    with pytest.raises(SystemExit, match="true or false"):
        _parse(False, "maybe")


def test_the_default_is_the_same_config_in_every_face(default_model_dir, tiny_model_dir, caplog):
    """The CLI with no flags, from_pretrained() with no config, the spaCy component and the app all run
    DEFAULT; on a model without its exit head or controller, each runs DEFAULT's dense twin and says so."""
    from bioprune.app.engines import PruningChoice

    cli = _config(_subparser(build_parser(), "annotate").parse_args(["x.txt", "--output", "y"]))
    spacy_config = spacy_ner(default_model_dir).get_pipe("bioprune_ner").engine.config
    engine = PruningEngine.from_pretrained(default_model_dir).config
    assert cli == spacy_config == engine == PruningChoice().config() == DEFAULT
    assert DEFAULT.enabled and DEFAULT.controller == "mlp"  # the default prunes
    with caplog.at_level("WARNING", logger="bioprune.engine"):
        assert PruningEngine.from_pretrained(tiny_model_dir).config == dense_twin(DEFAULT)  # 3 layers, no heads
    assert "the default runs dense" in caplog.text
    assert spacy_ner(tiny_model_dir).get_pipe("bioprune_ner").engine.config == dense_twin(DEFAULT)


def test_link_is_one_setting_in_every_face(default_model_dir, pruning_engine, tmp_path):
    """Linking (issue 18) is a PruningConfig face field: --link/--no-link, the spaCy key ``link``, a
    checkbox in both app tabs; on by default, and not a pruning knob the dense model would ignore."""
    [link] = [s for s in SETTINGS if s.field == "link"]
    assert (link.flag, link.key, link.kind, link.default) == ("--link", "link", "bool", True) and DEFAULT.link
    parser = _subparser(build_parser(), "annotate")
    assert _config(parser.parse_args(["x.txt", "--output", "y", "--no-link"])).link is False  # no dense warning
    assert spacy_ner(default_model_dir, link=False).get_pipe("bioprune_ner").engine.config == DEFAULT.with_(link=False)
    pytest.importorskip("gradio", reason="the app needs gradio: pip install '.[test]'")
    from bioprune.app.ui import build_app

    controls = {c["props"].get("elem_id"): c for c in build_app(pruning_engine, output_dir=tmp_path)
                .get_config_file()["components"]}
    for tab in ("annotate", "batch"):
        assert controls[f"{tab}-link"]["type"] == "checkbox" and controls[f"{tab}-link"]["props"]["value"] is True


def test_the_app_load_test_takes_every_setting_with_its_own_defaults():
    """training/load_test_app derives its request settings from bioprune.options (no knob of its own),
    at its own operating point, and sends only what differs from the app's defaults."""
    from training.load_test_app import LOAD_SETTING, parse_args

    assert parse_args([])[1] == LOAD_SETTING
    assert parse_args(["--precision", "fp32", "--no-recovery"])[1] == {**LOAD_SETTING, "precision": "fp32",
                                                                       "recovery": False}
