"""Precision (bioprune.precision): how "auto" resolves, fp32 stays exact, bf16 stays close to fp32."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from dataclasses import replace

import pytest
import torch

import bioprune.evaluation as evaluation
import bioprune.int8 as int8
import bioprune.precision as precision
from bioprune import cpu_kernels
from bioprune.bf16 import PackedLinear, packed_bf16_available
from bioprune.cli import main
from bioprune.config import DEFAULT, DENSE, PruningConfig
from bioprune.engine import PruningEngine
from bioprune.int8 import (BF16_LAYERS_KEY, CALIBRATION_FILE, KEEP_BF16, Int8Linear, int8_copy, load_calibration,
                           mixed_int8_layers, recording_input_ranges, save_calibration,
                           smoothing)
from bioprune.layer import context_keys_values, project_qkv
from bioprune.precision import PrecisionFallbackWarning, resolve_precision

from conftest import first_window_batch


def _probe(answer: bool):
    return lambda device_type: answer


@pytest.mark.parametrize("native, device, expected", [
    (True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda:1", "bf16"), (False, "cuda", "fp32")])
def test_auto_resolves_from_the_capability_probe(native, device, expected):
    seen = []
    probe = lambda device_type: seen.append(device_type) or native  # noqa: E731
    assert resolve_precision("auto", device, has_native_bf16=probe) == expected
    assert seen == [torch.device(device).type]  # asked about the device's type, once


@pytest.mark.parametrize("native_bf16, native_int8, calibrated, device, expected", [
    (True, True, True, "cpu", "mixed"), (True, True, False, "cpu", "bf16"), (True, False, True, "cpu", "bf16"),
    (False, True, True, "cpu", "fp32"), (True, True, True, "cuda", "bf16")])
def test_auto_takes_the_calibrated_int8_only_where_it_runs(native_bf16, native_int8, calibrated, device, expected):
    """"auto" at a calibrated point (the caller says so) is mixed on a CPU with native bf16 and
    oneDNN's int8 matmul; bf16 without the calibration or the int8 matmul; never on a GPU."""
    assert resolve_precision("auto", device, has_native_bf16=_probe(native_bf16), calibrated_int8=calibrated,
                             has_native_int8=_probe(native_int8)) == expected


def calibrated_copy(source, folder, bf16_layers: list[int]):
    """A copy of the model folder ``source`` at ``folder`` with an int8 calibration (ranges recorded
    on one sentence) whose precision "mixed" keeps ``bf16_layers`` in bf16."""
    shutil.copytree(source, folder)
    plain = PruningEngine.from_pretrained(folder, config=DENSE)
    with recording_input_ranges(plain.encoder.model) as ranges:
        plain.annotate(["Cisplatin nephrotoxicity in rats."])
    save_calibration({**ranges, BF16_LAYERS_KEY: torch.tensor(bf16_layers)}, folder)
    return folder


@pytest.fixture
def calibrated_default_dir(default_model_dir, tmp_path):
    """The tiny model that runs DEFAULT, with an int8 calibration keeping layer 1 bf16 for "mixed"."""
    return calibrated_copy(default_model_dir, tmp_path / "calibrated-default", [1])


def test_auto_runs_mixed_at_the_default_only(calibrated_default_dir, default_model_dir, texts, monkeypatch):
    """On a CPU with native bf16 and int8, the default (no config) of a calibrated model runs the
    mixed copy; the dense model, another λ and a model without the calibration run bf16."""
    monkeypatch.setattr(precision, "native_bf16", _probe(True))
    monkeypatch.setattr(precision, "native_int8", _probe(True))
    engine = PruningEngine.from_pretrained(calibrated_default_dir)
    assert engine.config == DEFAULT and engine.precision == "mixed"
    engine.annotate(texts[:2])
    assert set(engine.encoder._copies) == {("mixed", False)}  # what the forward ran on
    assert engine.with_config(DEFAULT.with_(link=False)).precision == "mixed"  # linking is not pruning
    assert engine.with_config(DEFAULT.with_(aggressiveness=2.0)).precision == "bf16"
    assert engine.with_config(PruningConfig(controller="none")).precision == "bf16"
    assert PruningEngine.from_pretrained(default_model_dir).precision == "bf16"  # no calibration beside it
    monkeypatch.setattr(precision, "native_int8", _probe(False))
    assert engine.with_config(DEFAULT).precision == "bf16"


def test_bf16_without_native_support_warns_and_names_what_runs():
    with pytest.warns(PrecisionFallbackWarning, match="running fp32 instead"):
        assert resolve_precision("bf16", "cpu", has_native_bf16=_probe(False)) == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu", has_native_bf16=_probe(True)) == "bf16"
        assert resolve_precision("fp32", "cpu", has_native_bf16=_probe(True)) == "fp32"


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8, mixed.*'int4'"):
        resolve_precision("int4", "cpu")
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8"):
        PruningConfig(precision="fp16")


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
@pytest.mark.parametrize("name", ["int8", "mixed"])
def test_int8_is_cpu_only(device, name):
    assert resolve_precision(name, "cpu") == name
    with pytest.raises(ValueError, match=f"{name} runs on the CPU only.*on {torch.device(device).type} use bf16"):
        resolve_precision(name, device, has_native_bf16=_probe(True))


def test_int8_with_cuda_is_one_cli_line_before_the_model_loads(fake_gpus, tiny_model_dir, sample_path, capsys):
    assert main(["evaluate", "--gold", str(sample_path), "--model", str(tiny_model_dir), "--device", "cuda",
                 "--precision", "int8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision int8" in err[0] and "CPU only" in err[0]


def test_int8_linear_is_the_float_linear_within_quantization_error():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(37, 64)  # an odd row count: the packed weight serves any M
    for activation, reference in [("none", linear(x)), ("gelu", torch.nn.functional.gelu(linear(x)))]:
        out = Int8Linear(linear, activation=activation)(x.bfloat16())
        assert out.dtype == torch.bfloat16 and out.shape == (37, 96)
        error = (out.float() - reference).abs()
        # u8 activations over x's range and s8 weights: about 1% of the output's scale, far from 0 or garbage
        assert error.mean() < 0.02 * reference.abs().mean() and error.max() < 0.1 * reference.abs().max()
    assert Int8Linear(linear)(x.bfloat16().view(37, 1, 64)).shape == (37, 1, 96)  # leading dims kept
    on_grid = torch.cat([x, x])[:64]  # 64 rows need no padding copy: quantizing must still leave the fp32 input as it was
    assert Int8Linear(linear)(on_grid).shape == (64, 96) and torch.equal(on_grid, torch.cat([x, x])[:64])


@pytest.mark.parametrize("compiled", [True, False])
def test_int8_linear_rows_do_not_depend_on_their_batch(compiled, monkeypatch):
    """Each row is quantized on its own scale: a row's output is the same, bit for bit, alone or in a
    batch beside a row with a 50x larger range, and however many chunks the matmul runs in (with
    the compiled kernels and with the torch ops)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    layer = Int8Linear(linear, activation="gelu")
    x = torch.randn(40, 64).bfloat16()
    x[7] *= 50  # under one scale for the batch, this row would leave the others a few levels
    with cpu_kernels.disabled() if not compiled else contextlib.nullcontext():
        whole = layer(x)  # (40, 96)
        alone = torch.cat([layer(x[i:i + 1]) for i in (0, 8, 39)])
        monkeypatch.setattr(int8, "CHUNK_ROWS", 16)
        chunked = layer(x)  # three chunks: 16, 16 and 8 rows
    assert torch.equal(alone, whole[[0, 8, 39]])
    assert torch.equal(chunked, whole)
    with torch.no_grad():
        reference = torch.nn.functional.gelu(linear(x.float()))
    assert (whole.float() - reference).abs().mean() < 0.02 * reference.abs().mean()


def test_int8_runs_on_one_int8_copy_with_the_wide_layer_kept_bf16(outside_engine):
    encoder = outside_engine.encoder
    copy = encoder.weights_at("int8")
    assert copy is encoder.weights_at("int8") is not encoder.weights_at("bf16")  # made once, its own copy
    layer = copy.base_model.encoder.layer[0]
    assert isinstance(layer.attention.self.qkv, Int8Linear) and isinstance(layer.intermediate, Int8Linear)
    assert layer.intermediate.activation == "gelu"  # BERT's erf GELU fused into the int8 kernel
    # frozen context: keys and values in one int8 call, with Q, K and V's smoothing, so they are the
    # keys and values the same states get as tokens still in, bit for bit
    g = torch.Generator().manual_seed(0)
    ranges = {f"{i}.{name}": torch.rand(m.in_features, generator=g) * 5 + 0.1
              for i, block in enumerate(encoder.model.base_model.encoder.layer)
              for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    attn = int8_copy(encoder.model, ranges).base_model.encoder.layer[0].attention.self
    assert isinstance(attn.kv, Int8Linear) and attn.kv.inv_smooth is not None
    assert torch.equal(attn.kv.inv_smooth, attn.qkv.inv_smooth)
    states = torch.randn(37, encoder.hidden, generator=g).bfloat16()
    keys, values = context_keys_values(attn, states)
    assert torch.equal(keys, project_qkv(attn, states)[1]) and torch.equal(values, project_qkv(attn, states)[2])
    assert KEEP_BF16 == {"output.dense"} and not isinstance(layer.output.dense, Int8Linear)
    kept = layer.output.dense  # bf16, on the pre-packed matmul where this CPU has it
    assert isinstance(kept, PackedLinear) if packed_bf16_available() else kept.weight.dtype == torch.bfloat16
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}  # the fp32 model is untouched


def test_mixed_layers_are_those_the_calibration_does_not_keep_bf16():
    kept = {BF16_LAYERS_KEY: torch.tensor([1]), "0.intermediate.dense": torch.ones(4)}
    assert mixed_int8_layers(6, kept) == (0, 2, 3, 4, 5)
    assert mixed_int8_layers(6, {"0.intermediate.dense": torch.ones(4)}) is None and mixed_int8_layers(6, None) is None


@pytest.fixture
def mixed_model_dir(tiny_model_dir, tmp_path):
    """The tiny model with an int8 calibration that keeps layer 0 bf16 for precision mixed."""
    return calibrated_copy(tiny_model_dir, tmp_path / "mixed-model", [0])


def test_mixed_runs_int8_but_in_the_layers_the_calibration_keeps_bf16(mixed_model_dir, texts, monkeypatch):
    """Precision "mixed": its own copy, made once; the kept layer is the bf16 copy's layer (Q, K, V
    fused, nothing int8), the others int8; its probabilities stay close to fp32. Opt-in: "auto"
    stays bf16 on a calibrated model too."""
    monkeypatch.setattr(precision, "native_bf16", _probe(True))
    assert PruningEngine.from_pretrained(mixed_model_dir, config=PruningConfig(controller="none")).precision == "bf16"
    engine = PruningEngine.from_pretrained(mixed_model_dir, config=PruningConfig(controller="none", precision="mixed"))
    assert engine.precision == "mixed"
    encoder = engine.encoder
    copy = encoder.weights_at("mixed")
    assert copy is encoder.weights_at("mixed") and copy is not encoder.weights_at("int8")
    for i, layer in enumerate(copy.base_model.encoder.layer):
        assert isinstance(layer.attention.self.qkv, Int8Linear) == (i != 0), i
        assert isinstance(layer.intermediate, Int8Linear) == (i != 0), i
        assert (i != 0) or not any(isinstance(m, Int8Linear) for m in layer.modules())
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}  # the fp32 model is untouched
    ids, mask, special = first_window_batch(engine, texts)
    fp32 = encoder.forward(ids, mask, special, PruningConfig(controller="none", precision="fp32"))
    mixed = encoder.forward(ids, mask, special, PruningConfig(controller="none", precision="mixed"))
    valid = mask.bool()
    assert not torch.equal(mixed.probs[valid], fp32.probs[valid])
    assert (mixed.probs[valid] - fp32.probs[valid]).abs().max() < 0.02


def test_mixed_without_its_calibration_is_refused_in_one_line(outside_engine, tiny_model_dir, sample_path, capsys):
    """A model whose calibration names no bf16 layers (or that has none) cannot run mixed: one line
    naming the script that chooses them, in the engine and the CLI."""
    assert outside_engine.encoder.mixed_layers() is None
    with pytest.raises(ValueError, match="precision mixed needs .*training.calibrate_int8"):
        outside_engine.with_config(PruningConfig(controller="none", precision="mixed"))
    assert main(["evaluate", "--gold", str(sample_path), "--model", str(tiny_model_dir), "--controller", "none",
                 "--precision", "mixed", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision mixed needs" in err[0]


@pytest.mark.skipif(not packed_bf16_available(), reason="needs oneDNN's pre-packed bf16 linear and a CPU with native bf16")
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_packed_linear_is_the_bf16_linear(activation):
    """The pre-packed kernel is F.linear in bf16 (and exact GELU of it), on 1 row or many, any batch shape."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 96).to(torch.bfloat16)
    packed = PackedLinear(linear, activation)
    for x in (torch.randn(1, 48), torch.randn(37, 48), torch.randn(3, 5, 48)):
        x = x.to(torch.bfloat16)
        ref = torch.nn.functional.linear(x, linear.weight, linear.bias)
        ref = torch.nn.functional.gelu(ref.float()).to(torch.bfloat16) if activation == "gelu" else ref
        out = packed(x)
        assert out.shape == ref.shape and out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_dense_is_exact_fp32_and_the_default_is_auto():
    assert DENSE.precision == "fp32" and DENSE.controller == "none"
    assert DEFAULT.precision == "auto" and PruningConfig().precision == "auto"
    with warnings.catch_warnings():  # precision is no pruning knob: the dense model uses it too
        warnings.simplefilter("error")
        assert PruningConfig(controller="none", precision="bf16").ignored_settings == ()


def test_bf16_runs_on_one_bf16_copy_and_fp32_on_the_model_itself(outside_engine):
    encoder = outside_engine.encoder
    assert encoder.weights_at("fp32") is encoder.model
    copy = encoder.weights_at("bf16")
    assert copy is encoder.weights_at("bf16") is not encoder.model  # made once
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}  # the fp32 model is untouched
    if packed_bf16_available():  # encoder Linear layers pre-packed, Q/K/V as one, GELU fused
        layer = copy.base_model.encoder.layer[0]
        assert isinstance(layer.attention.self.qkv, PackedLinear) and isinstance(layer.output.dense, PackedLinear)
        assert isinstance(layer.intermediate, PackedLinear) and layer.intermediate.activation == "gelu"
        assert not any(type(m) is torch.nn.Linear for m in copy.base_model.encoder.modules())
    with pytest.raises(ValueError, match="not a resolved precision"):
        encoder.weights_at("auto")
    # every config of one loaded model shares the encoder, so the copy is made once (the app holds several)
    assert outside_engine.with_config(DENSE).encoder.weights_at("bf16") is copy


@pytest.mark.parametrize("controller", ["none", "rule"])
@pytest.mark.parametrize("precision_name, max_prob_error", [("bf16", 0.005), ("int8", 0.02)])
def test_reduced_precision_probabilities_stay_close_to_fp32(outside_engine, texts, controller, monkeypatch,
                                                             precision_name, max_prob_error):
    """bf16 and int8 on the tiny model: probabilities within 0.005 (bf16) / 0.02 (int8) of fp32 and
    95% of the labels equal (its random logits sit close together, so a few near-ties may flip; the
    shipped model's agreement is measured in the README). Forced on, whatever this CPU has."""
    monkeypatch.setattr(precision, "native_bf16", _probe(True))
    ids, mask, special = first_window_batch(outside_engine, texts)  # each one window: the whole document
    fp32 = outside_engine.encoder.forward(ids, mask, special, PruningConfig(controller=controller, precision="fp32"))
    low = outside_engine.encoder.forward(ids, mask, special,
                                         PruningConfig(controller=controller, precision=precision_name))
    valid = mask.bool()
    assert low.probs.dtype == torch.float32
    assert not torch.equal(low.probs[valid], fp32.probs[valid])  # it really ran at the lower precision
    assert (low.probs[valid] - fp32.probs[valid]).abs().max() < max_prob_error
    same = (low.probs.argmax(-1) == fp32.probs.argmax(-1))[valid].float().mean()
    assert same >= 0.95


def test_evaluate_compares_anything_but_exact_dense_with_dense_fp32(tiny_model_dir, sample_path, tmp_path, capsys,
                                                                    monkeypatch):
    """`bioprune evaluate` at bf16 reports the dense fp32 scores, the F1 drop and the entity agreement
    (fidelity) from the same run; at --precision fp32 (the exact dense model) there is nothing to compare."""
    monkeypatch.setattr(precision, "native_bf16", _probe(True))
    real, links = evaluation.evaluate_engine, []  # the dense reference links as the run does: linking drops entities
    monkeypatch.setattr(evaluation, "evaluate_engine", lambda *a, reference=None, **k: links.append(
        reference and reference.config.link) or real(*a, reference=reference, **k))
    assert main(["evaluate", "--gold", str(sample_path), "--model", str(tiny_model_dir), "--precision", "bf16",
                 "--quiet", "--output", str(out := tmp_path / "bf16.json")]) == 0 and links == [True]
    result = json.loads(out.read_text())
    assert result["config"]["precision"] == "bf16" and result["precision"] == "bf16"
    assert 0.9 <= result["agreement"]["micro"]["f1"] <= 1.0
    drop = result["dense"]["mention"]["micro"]["f1"] - result["mention"]["micro"]["f1"]
    assert result["f1_drop_points"]["micro"] == pytest.approx(100 * drop)
    assert "entity agreement with dense fp32" in capsys.readouterr().out
    exact = tmp_path / "fp32.json"
    assert main(["evaluate", "--gold", str(sample_path), "--model", str(tiny_model_dir), "--precision", "fp32",
                 "--quiet", "--output", str(exact)]) == 0
    assert "agreement" not in json.loads(exact.read_text()) and result["precision"] == "bf16"
    assert "entity agreement" not in capsys.readouterr().out


def test_smoothing_moves_an_outlier_channel_into_the_weights():
    """One input channel 30x larger than the rest (as BERT's layer-norm outputs have): it sets every
    row's int8 scale and leaves the other channels a few levels; smoothing by calibrated ranges
    moves part of it into the weights and cuts the error by half or more."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(200, 64)
    x[:, 5] *= 30.0
    reference = linear(x)
    act_max = x.abs().amax(dim=0)
    smooth = smoothing(act_max, linear.weight.detach().abs().amax(dim=0), alpha=0.75)
    plain = (Int8Linear(linear)(x).float() - reference).abs().mean()
    smoothed = (Int8Linear(linear, smooth=smooth)(x).float() - reference).abs().mean()
    assert smoothed < plain / 1.5


def test_input_ranges_are_recorded_per_channel_and_round_trip(tiny_model_dir, tmp_path):
    engine = PruningEngine.from_pretrained(tiny_model_dir, config=DENSE)
    model = engine.encoder.model
    with recording_input_ranges(model) as ranges:
        engine.annotate(["Cisplatin nephrotoxicity in rats.", "Aspirin and asthma."])
    hidden = model.config.hidden_size
    assert ranges["0.attention.self.query"].shape == (hidden,)
    assert ranges["0.output.dense"].shape == (model.config.intermediate_size,)
    assert torch.equal(ranges["0.attention.self.query"], ranges["0.attention.self.key"])  # one input
    assert all(hook_dict == {} for m in model.modules() for hook_dict in [m._forward_hooks])  # hooks gone
    assert load_calibration(tmp_path) is None
    save_calibration(ranges, tmp_path)
    loaded = load_calibration(tmp_path)
    assert (tmp_path / CALIBRATION_FILE).is_file() and loaded.keys() == ranges.keys()
    assert all(torch.equal(loaded[k], ranges[k]) for k in ranges)


def test_int8_without_calibration_says_so(outside_engine, caplog):
    with caplog.at_level(logging.WARNING, logger="bioprune.int8"):
        int8_copy(outside_engine.encoder.model)
    assert "without calibration" in caplog.text


def test_from_pretrained_reads_the_calibration_beside_the_model(tiny_model_dir, tmp_path):
    """A model folder with int8_calibration.safetensors gives a smoothed int8 copy; without one, none."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    plain = PruningEngine.from_pretrained(folder, config=DENSE)
    assert plain.encoder.int8_ranges is None
    with recording_input_ranges(plain.encoder.model) as ranges:
        plain.annotate(["Cisplatin nephrotoxicity in rats."])
    save_calibration(ranges, folder)
    calibrated = PruningEngine.from_pretrained(folder, config=PruningConfig(controller="none", precision="int8"))
    qkv = calibrated.encoder.weights_at("int8").base_model.encoder.layer[0].attention.self.qkv
    assert qkv.inv_smooth is not None and qkv.inv_smooth.shape == (calibrated.model.config.hidden_size,)
    assert plain.encoder.weights_at("int8").base_model.encoder.layer[0].attention.self.qkv.inv_smooth is None
    assert calibrated.annotate(["Cisplatin nephrotoxicity in rats."])[0].text  # it runs


@pytest.mark.parametrize("level", ["bf16", "int8"])
def test_an_engine_pickles_after_a_reduced_precision_forward(tiny_model_dir, texts, level):
    """spaCy's ``nlp.pipe(n_process=N)`` under "spawn" pickles the component's engine, often after a
    first call has made the reduced-precision copy, whose oneDNN-packed weights cannot be pickled."""
    import copy
    import pickle

    engine = PruningEngine.from_pretrained(tiny_model_dir, config=replace(DENSE, precision=level))
    engine.encoder.weights_at(level)  # the copy a forward at this precision makes, pre-packed where oneDNN can
    expected = [a.entities for a in engine.annotate(texts)]
    for clone in (pickle.loads(pickle.dumps(engine)), copy.deepcopy(engine)):
        assert [a.entities for a in clone.annotate(texts)] == expected
