"""Fidelity distillation (training/distill_pruned.py): the training batches are exactly what inference
runs after the pruning point, the held-out MEDLINE half is never read, and a run writes a model
folder whose pruned forward runs the trained layers while its dense model stays as it was."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bioprune.config import DENSE, PruningConfig
from bioprune.engine import PruningEngine
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.pruned_layers import PRUNED_LAYERS_FILE, PrunedLayers
from training.distill_pruned import (DistillArgs, collate, distill, distillation_loss, parse_args, point_states,
                                     teacher_targets,
                                     training_texts, upper_forward)

FIXTURES = Path(__file__).parent / "fixtures"
RULE = PruningConfig(controller="rule", aggressiveness=1.0, prune_layers=(1,), precision="fp32")
TEXTS = ["Famotidine-associated delirium in a patient with renal failure.",
         "Cocaine and heart failure: a case report of a young man."]


@pytest.mark.parametrize("frozen_context", [False, True])
def test_training_batches_are_what_inference_runs(outside_model_dir, frozen_context):
    config = replace(RULE, frozen_context=frozen_context)
    engine = PruningEngine.from_pretrained(outside_model_dir, config=config)
    windows = [engine.tokenizer(t)["input_ids"] for t in TEXTS]
    inference = engine.encoder.forward(*engine.batch_inputs(windows), config)
    assert (inference.pruned_layer > 0).any(), "the O-biased exit heads should prune some tokens"
    states = point_states(engine, windows, config)
    kept, frozen, teacher, counts = collate(states, frozen_context)
    assert (frozen is not None) == frozen_context
    # the same tokens stay, and the model's own upper layers give inference's probabilities on them
    for b, s in enumerate(states):
        assert torch.equal(s.keep, inference.pruned_layer[b, :len(s.keep)] == 0)
    start = PrunedLayers.from_model(engine.model, 1, frozen_context).model(engine.model)
    with torch.no_grad():
        logits = upper_forward(start, 1, kept, frozen)
    stayed = inference.probs.gather(1, kept.positions.unsqueeze(-1).expand(-1, -1, logits.size(-1)))
    assert torch.allclose(logits.softmax(-1)[kept.valid], stayed[kept.valid], atol=1e-3)  # states kept in fp16
    # the teacher is the dense model; [CLS] and [SEP] never count in the loss
    dense = engine.with_config(DENSE).encoder.forward(*engine.batch_inputs(windows), DENSE).probs
    want = dense.gather(1, kept.positions.unsqueeze(-1).expand(-1, -1, logits.size(-1)))
    assert torch.allclose(teacher.softmax(-1)[kept.valid], want[kept.valid], atol=1e-5)
    assert counts.sum() == kept.valid.sum() - 2 * len(TEXTS)


def test_only_the_first_half_of_the_medline_slice_is_read(tmp_path, sample_path):
    medline = FIXTURES / "medline_legacy.xml"
    all_texts = [d.text for d in iter_pubmed_xml(medline)]
    args = DistillArgs(output=str(tmp_path), config=RULE, texts=(str(sample_path),), unlabelled=(str(medline),))
    texts = training_texts(args)
    half = len(all_texts) // 2
    assert all(t in texts for t in all_texts[:half] if t.strip())
    assert not any(t in texts for t in all_texts[half:])


def test_a_run_trains_the_pruned_layers_only_and_refuses_to_mix_runs(outside_model_dir, sample_path, tmp_path):
    out = tmp_path / "distilled"
    argv = ["--model", str(outside_model_dir), "--output", str(out), "--texts", str(sample_path),
            "--controller", "rule", "--lambda", "1", "--prune-layers", "1", "--frozen-context", "--epochs", "2",
            "--batch-size", "2", "--checkpoint-steps", "1", "--learning-rate", "1e-2"]
    args, resume = parse_args(argv)
    assert not resume and args.config.prune_layers == (1,) and args.config.frozen_context
    run = distill(args)
    assert run["steps"] >= 2 and 0 < run["kept_token_share"] < 1
    layers = PrunedLayers.load(out)
    assert (layers.first_layer, layers.frozen_context) == (1, True)
    assert not any(n.startswith("bert.encoder.layer.0.") or "embeddings" in n for n in layers.state)
    config = replace(RULE, frozen_context=True)
    base, trained = (PruningEngine.from_pretrained(d, config=config) for d in (outside_model_dir, out))
    inputs = base.batch_inputs([base.tokenizer(t)["input_ids"] for t in TEXTS])
    # the dense model is bit for bit the starting one; the pruned forward it was trained for is not
    assert torch.equal(base.encoder.forward(*inputs, DENSE).probs, trained.encoder.forward(*inputs, DENSE).probs)
    assert not torch.allclose(base.encoder.forward(*inputs, config).probs, trained.encoder.forward(*inputs, config).probs)
    # pruning it was not trained for runs the model's own layers
    for other in (replace(config, frozen_context=False), replace(config, trained_layers=False)):
        assert torch.equal(base.encoder.forward(*inputs, other).probs, trained.encoder.forward(*inputs, other).probs)
    assert json.loads((out / "distill_run.json").read_text())["n_texts"] == run["n_texts"]
    with pytest.raises(SystemExit, match="--resume"):  # the checkpoint holds a run
        distill(args)
    with pytest.raises(SystemExit, match="other arguments"):
        distill(*parse_args(argv[:-2] + ["--learning-rate", "1e-3", "--resume"]))
    again = distill(*parse_args(argv + ["--resume"]))  # done already: resumes at the end, same history
    assert again["history"] == run["history"]


def test_one_pruning_point_is_required(tmp_path):
    with pytest.raises(SystemExit, match="one pruning point"):
        distill(DistillArgs(output=str(tmp_path / "x"), config=replace(RULE, prune_layers=(1, 2))))


def test_pruned_layers_that_do_not_fit_the_model_are_refused(outside_model_dir, tmp_path):
    engine = PruningEngine.from_pretrained(outside_model_dir)
    layers = PrunedLayers.from_model(engine.model, 1, False)
    del layers.state["classifier.bias"]
    with pytest.raises(ValueError, match=f"{PRUNED_LAYERS_FILE} does not fit this model"):
        layers.model(engine.model)


def test_teacher_targets_sharpen_to_the_teachers_labels():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.1, 0.0]]])  # (1, 2, 3)
    assert torch.allclose(teacher_targets(logits, 1.0), logits.softmax(-1))
    hard = teacher_targets(logits, 0.0)
    assert hard.tolist() == [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]  # the unsure second token gets its label too
    sharper = teacher_targets(logits, 0.5)
    assert (sharper.max(-1).values > logits.softmax(-1).max(-1).values).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_at_any_temperature_the_student_learns_the_teachers_own_logits(temperature):
    teacher = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.4, -1.0]]])  # (1, 2, 3)
    student = teacher.clone().requires_grad_(True)
    distillation_loss(student, teacher, torch.ones(1, 2), temperature).backward()
    assert student.grad.abs().max() < 1e-6  # the teacher's logits are the minimum, not a softer copy
    sharper = (teacher * 2).requires_grad_(True)
    distillation_loss(sharper, teacher, torch.ones(1, 2), temperature).backward()
    assert (sharper.grad * teacher).sum() > 0  # a sharper student is pushed back toward the teacher's scale


def test_a_negative_teacher_temperature_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="teacher-temperature"):
        distill(DistillArgs(output=str(tmp_path / "x"), config=RULE, teacher_temperature=-1.0))
