"""training/ensemble.py: the ensemble decodes the models' averaged label probabilities."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bioprune.labels import decode_entities
from training.ensemble import dense_engine, ensemble_spans, score

TEXTS = ["famotidine induced delirium in a patient with renal failure", "cisplatin and seizures in rats"]


@pytest.fixture
def engines(tiny_model_dir, tmp_path):
    """Dense engines on the tiny model and on a copy of it with a different classifier."""
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    weights = load_file(str(other / "model.safetensors"))
    torch.manual_seed(1)
    weights = {k: (torch.randn_like(v) if k.startswith("classifier") else v) for k, v in weights.items()}
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    return [dense_engine(m) for m in (tiny_model_dir, other)]


def test_the_ensemble_decodes_the_mean_of_the_models_probabilities(engines):
    encoded, spans = ensemble_spans(engines, TEXTS)
    assert len(spans) == 3  # each model, then the ensemble
    probs = [[p for p, _ in e.run(encoded)] for e in engines]
    assert not all(np.allclose(a, b) for a, b in zip(*probs))  # two different models
    for d, (text, enc) in enumerate(zip(TEXTS, encoded)):
        mean = (probs[0][d] + probs[1][d]) / 2
        expected = [(e.start, e.end, e.label) for e in decode_entities(text, enc.offsets, enc.word_ids, mean)]
        assert spans[2][d] == expected


def test_an_ensemble_of_one_model_twice_scores_as_the_model(tiny_model_dir, tmp_path):
    gold = tmp_path / "gold.PubTator"
    gold.write_text("1|t|famotidine induced delirium\n1|a|in a patient\n1\t0\t10\tfamotidine\tChemical\t-\n"
                    "1\t19\t27\tdelirium\tDisease\t-\n\n")
    results = score([str(tiny_model_dir), str(tiny_model_dir)], str(gold))
    assert results["ensemble"] == results[str(tiny_model_dir)]


def test_models_scored_also_stay_out_of_the_ensemble(engines):
    _, spans = ensemble_spans(engines, TEXTS, members=1)
    assert spans[2] == spans[0]  # an ensemble of the first model alone
