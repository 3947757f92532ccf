"""Fidelity distillation (training/distill_pruned.py): the training forward prunes exactly as inference
does, the held-out MEDLINE half is never read, and a run writes a model folder and resumes."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bioprune.config import PruningConfig
from bioprune.engine import PruningEngine
from bioprune.io.pubmed_xml import iter_pubmed_xml
from training.distill_pruned import DistillArgs, distill, parse_args, pruned_logits, teacher_targets, training_texts

FIXTURES = Path(__file__).parent / "fixtures"
RULE = PruningConfig(controller="rule", aggressiveness=1.0, prune_layers=(1, 2), precision="fp32")


def _batch(engine: PruningEngine):
    texts = ["Famotidine-associated delirium in a patient with renal failure.",
             "Cocaine and heart failure: a case report of a young man."]
    return engine.batch_inputs([engine.tokenizer(t)["input_ids"] for t in texts])


@pytest.mark.parametrize("frozen_context", [False, True])
def test_training_forward_prunes_exactly_as_inference(outside_model_dir, frozen_context):
    engine = PruningEngine.from_pretrained(outside_model_dir, config=replace(RULE, frozen_context=frozen_context))
    ids, mask, special = _batch(engine)
    inference = engine.encoder.forward(ids, mask, special, engine.config)
    assert (inference.pruned_layer > 0).any(), "the O-biased exit heads should prune some tokens"
    with torch.no_grad():
        logits, kept = pruned_logits(engine.model, ids, mask.bool(), inference.pruned_layer, engine.config)
    stayed = inference.probs.gather(1, kept.positions.unsqueeze(-1).expand(-1, -1, logits.size(-1)))
    assert torch.allclose(logits.softmax(-1)[kept.valid], stayed[kept.valid], atol=1e-5)
    # exactly the tokens inference kept ran to the end
    ran = torch.zeros_like(mask, dtype=torch.bool).scatter(1, kept.positions, kept.valid)
    assert torch.equal(ran, mask.bool() & (inference.pruned_layer == 0))


def test_only_the_first_half_of_the_medline_slice_is_read(tmp_path, sample_path):
    medline = FIXTURES / "medline_legacy.xml"
    all_texts = [d.text for d in iter_pubmed_xml(medline)]
    args = DistillArgs(output=str(tmp_path), config=RULE, texts=(str(sample_path),), unlabelled=(str(medline),))
    texts = training_texts(args)
    half = len(all_texts) // 2
    assert all(t in texts for t in all_texts[:half] if t.strip())
    assert not any(t in texts for t in all_texts[half:])


def test_a_run_writes_a_model_folder_and_refuses_to_mix_runs(outside_model_dir, sample_path, tmp_path):
    out = tmp_path / "distilled"
    argv = ["--model", str(outside_model_dir), "--output", str(out), "--texts", str(sample_path),
            "--controller", "rule", "--lambda", "1", "--prune-layers", "1", "2", "--epochs", "1",
            "--batch-size", "2", "--checkpoint-steps", "1", "--train-precision", "fp32", "--learning-rate", "1e-3",
            "--dense-step-share", "0"]
    args, resume = parse_args(argv)
    assert not resume and args.config.controller == "rule" and args.config.prune_layers == (1, 2)
    run = distill(args)
    assert run["steps"] >= 1 and run["history"][-1]["pruned_share"] > 0
    engine = PruningEngine.from_pretrained(out, config=RULE)  # a complete folder: weights, tokenizer, exit heads
    assert engine.exit_heads is not None and engine.exit_heads.layers == (1, 2)
    before = load_file(str(Path(outside_model_dir) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert after["classifier.weight"].dtype == torch.float16
    assert not torch.allclose(before["classifier.weight"].float(), after["classifier.weight"].float(), atol=1e-4)
    assert json.loads((out / "distill_run.json").read_text())["n_texts"] == run["n_texts"]
    with pytest.raises(SystemExit, match="--resume"):  # the checkpoint holds a run
        distill(args)
    with pytest.raises(SystemExit, match="other arguments"):
        distill(*parse_args(argv[:-2] + ["--dense-step-share", "0.5", "--resume"]))
    again = distill(*parse_args(argv + ["--resume"]))  # done already: resumes at the end, same history
    assert again["history"] == run["history"]


def test_teacher_targets_sharpen_to_the_teachers_labels():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.1, 0.0]]])  # (1, 2, 3)
    assert torch.allclose(teacher_targets(logits, 1.0), logits.softmax(-1))
    hard = teacher_targets(logits, 0.0)
    assert hard.tolist() == [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]  # the unsure second token gets its label too
    sharper = teacher_targets(logits, 0.5)
    assert (sharper.max(-1).values > logits.softmax(-1).max(-1).values).all()


def test_a_negative_teacher_temperature_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="teacher-temperature"):
        distill(DistillArgs(output=str(tmp_path / "x"), config=RULE, teacher_temperature=-1.0))
