"""training/export_multicorpus.py and its README table: a finished run's dev curve comes from its
training_run.json, a stopped one's from its checkpoint history, and the table says which."""
from __future__ import annotations

import json

from training.export_multicorpus import main
from training.render_readme import multicorpus_table


def _epoch(epoch: int, micro: float) -> dict:
    score = lambda f: {"precision": f, "recall": f, "f1": f}  # noqa: E731
    return {"epoch": epoch, "train_loss": 0.1,
            "dev": {"mention": {"micro": score(micro), "Chemical": score(micro + 0.05), "Disease": score(micro - 0.05)}}}


def _args(train: list[str]) -> dict:
    return {"train": train, "base": "/models/mc1", "epochs": 3, "learning_rate": 5e-5, "train_precision": "bf16"}


def test_export_reads_finished_and_stopped_runs(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "training_run.json").write_text(json.dumps({"args": _args(["a/CDR_TrainingSet.PubTator.txt"]),
                                                        "epochs": [_epoch(1, 0.80), _epoch(2, 0.83)]}))
    stopped = tmp_path / "stopped" / "checkpoint"
    stopped.mkdir(parents=True)
    (stopped / "run.json").write_text(json.dumps({"fingerprint": {"args": _args(["x", "y"])},
                                                  "history": [_epoch(1, 0.81)]}))
    baseline = tmp_path / "dev_curve.json"
    baseline.write_text(json.dumps({"command": "python -m training.multicorpus", "epochs": [_epoch(8, 0.819)]}))
    scores = tmp_path / "biored.json"
    part = {"micro": {"f1": 0.6}, "Chemical": {"precision": 0.3, "recall": 0.7, "f1": 0.42},
            "chemical_on_other_entity": {"n": 5, "n_pred_chemical": 10, "share": 0.5}}
    scores.write_text(json.dumps({"model": "m", "gold": "d/BioRED_Dev.PubTator", "n_documents": 3,
                                  "all": part, "gene_rich": part}))
    out = tmp_path / "mc.json"
    result = main(["--stage1", str(done), "--candidate", f"2c={tmp_path / 'stopped'}", "--baseline", str(baseline),
                   "--corpus-scores", f"before={scores}", "--output", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["stage1"]["finished"] and result["stage1"]["dev_curve"][-1]["micro"] == 0.83
    assert result["stage1"]["train"] == ["CDR_TrainingSet.PubTator.txt"]
    assert not result["candidates"]["2c"]["finished"]
    assert result["baseline"]["micro"] == 0.819
    table = multicorpus_table(result)
    assert "| stage 2 2c, lr 5e-05 | x, y | 3 (stopped after epoch 1) | 0.8100 |" in table
    assert "| before | 0.6000 | 0.3000 | 0.7000 | 50.0% |" in table
