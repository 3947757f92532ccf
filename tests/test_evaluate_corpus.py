"""training/evaluate_corpus.py: scores on a corpus with other guidelines, only its annotated types,
and the predicted chemicals that sit on a gene or variant."""
from __future__ import annotations

import json

import pytest

from training.evaluate_corpus import corpus_scores, main, overlaps


def test_overlap_needs_a_shared_character():
    assert overlaps(0, 5, [(4, 9)])
    assert not overlaps(0, 5, [(5, 9)])  # touching is not overlapping
    assert not overlaps(0, 5, [])


def test_scores_count_chemicals_on_genes_and_only_the_annotated_types():
    gold = {"1": [(0, 5, "Chemical")]}
    # one right chemical, one on a gene symbol, one on nothing, and a disease the corpus does not annotate
    pred = {"1": [(0, 5, "Chemical"), (10, 15, "Chemical"), (30, 35, "Chemical"), (20, 25, "Disease")]}
    other = {"1": [(9, 14)]}
    scores = corpus_scores(gold, pred, other, ["Chemical"])
    assert scores["Chemical"]["precision"] == pytest.approx(1 / 3)
    assert scores["micro"]["n_pred"] == 3  # the disease is not scored: the corpus says nothing about it
    assert "Disease" not in scores
    assert scores["chemical_on_other_entity"] == {"n": 1, "n_pred_chemical": 3, "share": pytest.approx(1 / 3)}


def _doc(pmid: str, genes: int) -> str:
    title = "Aspirin and " + " ".join(["BRCA1"] * genes) + " in gout"
    lines = [f"{pmid}|t|{title}", f"{pmid}|a|Gout was treated.",
             f"{pmid}\t0\t7\tAspirin\tChemicalEntity\tD001241"]
    start = len("Aspirin and ")
    for i in range(genes):
        s = start + 6 * i
        lines.append(f"{pmid}\t{s}\t{s + 5}\tBRCA1\tGeneOrGeneProduct\t672")
    g = len(title) - 4
    lines.append(f"{pmid}\t{g}\t{g + 4}\tgout\tDiseaseOrPhenotypicFeature\tD006073")
    return "\n".join(lines) + "\n\n"


def test_main_scores_a_biored_file_leaving_out_excluded_pmids(tiny_model_dir, tmp_path):
    gold = tmp_path / "BioRED_Dev.PubTator"  # the corpus is found by the file's name
    gold.write_text(_doc("1", 0) + _doc("2", 3) + _doc("3", 1) + _doc("4", 2))
    exclude = tmp_path / "seen.PubTator"
    exclude.write_text(_doc("4", 2))
    out = tmp_path / "scores.json"
    result = main(["--gold", str(gold), "--model", str(tiny_model_dir), "--exclude", str(exclude),
                   "--output", str(out), "--precision", "fp32", "--reference-dense"])
    assert json.loads(out.read_text())["n_documents"] == result["n_documents"] == 3
    assert result["n_excluded"] == 1
    assert result["scored_types"] == ["Chemical", "Disease"]
    assert result["all"]["micro"]["n_gold"] == 6  # aspirin and gout in each of the 3 documents
    # gene counts 0, 3, 1: median 1, so documents 2 and 3 are the gene-rich ones
    assert result["gene_rich"]["n_documents"] == 2
    assert result["gene_rich"]["micro"]["n_gold"] == 4
    assert result["agreement"]["micro"]["f1"] == 1.0  # dense fp32 agrees with itself


def test_main_rejects_a_file_of_no_known_corpus(tiny_model_dir, tmp_path, capsys):
    gold = tmp_path / "mystery.txt"
    gold.write_text(_doc("1", 0))
    with pytest.raises(SystemExit) as exit_info:
        main(["--gold", str(gold), "--model", str(tiny_model_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evaluate_corpus:") and "\n" not in err


def test_entities_as_users_get_them_linked_unless_no_link(tiny_model_dir, tmp_path):  # linking drops gene products
    (gold := tmp_path / "BioRED_Dev.PubTator").write_text(_doc("1", 1))
    assert "link=True" in main(["--gold", str(gold), "--model", str(tiny_model_dir)])["config"]
    assert "link=False" in main(["--gold", str(gold), "--model", str(tiny_model_dir), "--no-link"])["config"]
