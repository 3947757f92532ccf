"""training/batch_independence.py on a tiny random model."""
from bioprune.config import PruningConfig
from training.batch_independence import compare

TEXTS = ["Famotidine-associated delirium.", "Renal failure after cisplatin and lithium in two patients with "
         "hypertension.", "", "Aspirin."]


def test_compare_counts_abstracts_whose_probabilities_move_with_the_batch(outside_engine, monkeypatch):
    engine = outside_engine.with_config(PruningConfig(controller="rule", prune_layers=(1, 2), aggressiveness=1.0,
                                                   precision="bf16", link=False))
    same = compare(engine, TEXTS, (1, 16))
    assert same["runs_at"] == "bf16" and same["abstracts_with_different_probabilities"] == 0
    assert same["largest_probability_difference"] == 0.0 and same["entity_agreement_f1"] in (0.0, 1.0)
    assert same["entities"][0] == same["entities"][1]
    run = type(engine).run  # a batch-dependent engine: probabilities nudged by the batch size

    def nudged(self, encoded, batch_size=16):
        return [(p + 1e-3 * (batch_size > 1), t) for p, t in run(self, encoded, batch_size)]
    monkeypatch.setattr(type(engine), "run", nudged)
    moved = compare(engine, TEXTS, (1, 16))
    assert moved["abstracts_with_different_probabilities"] == 3  # the empty text has no tokens
    assert abs(moved["largest_probability_difference"] - 1e-3) < 1e-6
