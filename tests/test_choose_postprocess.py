"""training/choose_postprocess.py: every decoding x passes pairing is scored, the best written as postprocess.json content."""
from __future__ import annotations

import json

from bioprune.postprocess import load_decoding, load_postprocess
from training.choose_postprocess import DECODINGS, VARIANTS, ChooseArgs, main


def test_the_choice_is_the_best_pairing_and_loads_as_a_model_setting(tiny_model_dir, tmp_path):
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|famotidine induced delirium\n1|a|in a patient with renal failure (RF)\n"
                    "1\t0\t10\tfamotidine\tChemical\t-\n1\t19\t27\tdelirium\tDisease\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1))
    assert set(result["decodings"]) == set(DECODINGS) and all(set(v) == set(VARIANTS) for v in result["decodings"].values())
    best = result["decodings"][result["best_decoding"]][result["best"]]["micro"]["f1"]
    assert best == max(v["micro"]["f1"] for vs in result["decodings"].values() for v in vs.values())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "postprocess.json").write_text(json.dumps(result["choice"]))
    assert load_postprocess(tmp_path / "model") == VARIANTS[result["best"]]
    assert load_decoding(tmp_path / "model") == DECODINGS[result["best_decoding"]]
