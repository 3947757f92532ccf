"""training/choose_postprocess.py: every decoding x passes pairing is scored, the best written as postprocess.json content."""
from __future__ import annotations

import json

from bioprune.postprocess import load_decoding, load_gazetteer, load_postprocess
from training.choose_postprocess import DECODINGS, GAZETTEER_GRID, VARIANTS, ChooseArgs, gazetteer_variant, main


def test_the_choice_is_the_best_pairing_and_loads_as_a_model_setting(tiny_model_dir, tmp_path):
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|famotidine induced delirium\n1|a|in a patient with renal failure (RF)\n"
                    "1\t0\t10\tfamotidine\tChemical\t-\n1\t19\t27\tdelirium\tDisease\t-\n\n")
    train = tmp_path / "train.PubTator"
    train.write_text("2|t|famotidine and delirium\n2|a|again famotidine\n"
                     "2\t0\t10\tfamotidine\tChemical\t-\n2\t15\t23\tdelirium\tDisease\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             gazetteer_from=(str(train),)))
    grid = {gazetteer_variant(r, c) for r, c in GAZETTEER_GRID}
    assert set(result["decodings"]) == set(DECODINGS)
    assert all(set(v) == set(VARIANTS) | grid for v in result["decodings"].values())
    best = result["decodings"][result["best_decoding"]][result["best"]]["micro"]["f1"]
    assert best == max(v["micro"]["f1"] for vs in result["decodings"].values() for v in vs.values())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "postprocess.json").write_text(json.dumps(result["choice"]))
    assert load_decoding(tmp_path / "model") == DECODINGS[result["best_decoding"]]
    if result["best"] in grid:
        assert load_postprocess(tmp_path / "model") == ("gazetteer", "abbreviations")
        assert load_gazetteer(tmp_path / "model").names.keys() <= {"famotidine", "delirium"}
    else:
        assert load_postprocess(tmp_path / "model") == VARIANTS[result["best"]]


def test_an_off_domain_corpus_is_scored_too_and_the_choice_maximises_the_mean(tiny_model_dir, tmp_path):
    """--off-domain: every pairing is scored on a corpus of other guidelines (its types mapped to ours,
    BC5CDR documents left out), and the chosen one has the best mean of the two micro F1s."""
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|famotidine induced delirium\n1|a|in renal failure\n"
                    "1\t0\t10\tfamotidine\tChemical\t-\n1\t19\t27\tdelirium\tDisease\t-\n\n")
    off = tmp_path / "BioRED_Train.PubTator"  # named as a registered corpus: its types map to ours
    off.write_text("7|t|aspirin and BRCA1 in colon cancer\n7|a|none\n"
                   "7\t0\t7\taspirin\tChemicalEntity\tD001241\n7\t12\t17\tBRCA1\tGeneOrGeneProduct\t672\n"
                   "7\t21\t33\tcolon cancer\tDiseaseOrPhenotypicFeature\tD003110\n\n"
                   "1|t|famotidine induced delirium\n1|a|in renal failure\n\n")  # a dev document: left out
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             off_domain=str(off)))
    assert result["off_domain"]["n_documents"] == 1 and result["off_domain"]["file"] == off.name
    scores = result["off_domain"]["scores"]
    assert set(scores) == set(DECODINGS) and all(set(v) == set(VARIANTS) for v in scores.values())
    mean = {(d, n): (result["decodings"][d][n]["micro"]["f1"] + scores[d][n]["micro"]["f1"]) / 2
            for d in scores for n in scores[d]}
    assert mean[(result["best_decoding"], result["best"])] == max(mean.values())
