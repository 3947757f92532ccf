"""training/choose_postprocess.py: every decoding x passes pairing is scored, the best written as postprocess.json content."""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace

import pytest

from bioprune.postprocess import Postprocess
from bioprune.types import Entity
from training.build_linker_index import substance_names
from training.analysis.common import parse_dataclass
from training.choose_postprocess import DECODINGS, GAZETTEER_GRID, GENES_RATIOS, SUBSTANCE_RATIOS, UNLINKED_GRID, \
    VARIANTS, ChooseArgs, Variant, check_args, gene_names, main


def test_the_choice_is_the_best_pairing_and_loads_as_a_model_setting(tiny_model_dir, tmp_path):
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|famotidine induced delirium\n1|a|in a patient with renal failure (RF)\n"
                    "1\t0\t10\tfamotidine\tChemical\t-\n1\t19\t27\tdelirium\tDisease\t-\n\n")
    train = tmp_path / "train.PubTator"
    train.write_text("2|t|famotidine and delirium\n2|a|again famotidine\n"
                     "2\t0\t10\tfamotidine\tChemical\t-\n2\t15\t23\tdelirium\tDisease\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             gazetteer_from=(str(train),)))
    grid = {Variant(("gazetteer", "abbreviations"), g).name for g in GAZETTEER_GRID}
    assert set(result["decodings"]) == set(DECODINGS)
    assert all(set(v) == {f"{b}{n}" for n in set(VARIANTS) | grid for b in ("", "brackets + ")}
               for v in result["decodings"].values())
    best = result["decodings"][result["best_decoding"]][result["best"]]["micro"]["f1"]
    assert best == max(v["micro"]["f1"] for vs in result["decodings"].values() for v in vs.values())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "postprocess.json").write_text(json.dumps(result["choice"]))
    loaded = Postprocess.load(tmp_path / "model")
    assert loaded.decoding == DECODINGS[result["best_decoding"]]
    brackets, best = result["best"].startswith("brackets + "), result["best"].removeprefix("brackets + ")
    assert (loaded.passes[:1] == ("brackets",)) == brackets
    if best in grid:
        assert loaded.passes[brackets:] == ("gazetteer", "abbreviations")
        assert loaded.gazetteer.names.keys() <= {"famotidine", "delirium"}
    else:
        assert loaded.passes[brackets:] == VARIANTS[best]


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
    assert set(scores) == set(DECODINGS) and all(set(v) == set(result["decodings"]["argmax"]) for v in scores.values())
    mean = {(d, n): (result["decodings"][d][n]["micro"]["f1"] + scores[d][n]["micro"]["f1"]) / 2
            for d in scores for n in scores[d]}
    assert mean[(result["best_decoding"], result["best"])] == max(mean.values())


def _gene_corpus(tmp_path):
    """A file named as DrugProt's (chemicals and genes): PPARA always a gene, TP53 on half its
    occurrences, insulin a gene here but a chemical in the model's training text."""
    text = "PPARA binds fenofibrate; PPARA, TP53 and insulin. TP53"
    at = lambda name, nth=0: text.index(name) if nth == 0 else text.rindex(name)  # noqa: E731
    lines = [f"3\t{at(n, k)}\t{at(n, k) + len(n)}\t{n}\t{t}\t-" for n, k, t in
             [("PPARA", 0, "Gene"), ("PPARA", 1, "Gene"), ("fenofibrate", 0, "Chemical"), ("TP53", 0, "Gene"),
              ("insulin", 0, "Gene")]]
    path = tmp_path / "DrugProt_chemicals.PubTator"
    path.write_text(f"3|t|{text}\n3|a|\n" + "\n".join(lines) + "\n\n")
    train = tmp_path / "train.PubTator"
    train.write_text("4|t|insulin and fenofibrate\n4|a|\n4\t0\t7\tinsulin\tChemical\t-\n\n")
    return path, train


def test_gene_names_are_the_gene_corpora_s_other_entities_never_a_training_chemical(tmp_path):
    genes, train = _gene_corpus(tmp_path)
    assert gene_names((str(genes),), 0.5, set()) == {"PPARA", "TP53", "insulin"}
    assert gene_names((str(genes),), 0.7, set()) == {"PPARA", "insulin"}  # TP53: 1 of 2 occurrences
    variant = Variant(("abbreviations", "genes"), genes_ratio=0.5)
    assert variant.name == "abbreviations + genes (ratio 0.5)"
    assert replace(variant, brackets=True).build((str(train),), (str(genes),))[0].passes[0] == "brackets"
    built, provenance = variant.build((str(train),), (str(genes),))
    assert built.genes == {"PPARA", "TP53"}  # insulin: a chemical in the model's own training text
    assert provenance["genes"]["built_from"] == [genes.name] and provenance["genes"]["min_ratio"] == 0.5
    text = "PPARA and insulin"
    found = [Entity(0, 5, "Chemical", "PPARA", 0.9), Entity(10, 17, "Chemical", "insulin", 0.9)]
    assert [e.text for e in built.apply(text, found)] == ["insulin"]
    assert [e.label for e in built.apply(text, [Entity(0, 5, "Disease", "PPARA", 0.9)])] == ["Disease"]
    variants = "BRCA2 N372H, rs8099917, p.Arg117His, c.1521A>G, arginine 555-to-tryptophan; S1P, C6S, 5-FU, arginine 10 mg"
    found = [Entity(m.start(), m.end(), "Chemical", m.group(), 0.9)  # six in variants (two at a position), then chemicals
             for m in re.finditer(r"BRCA2 N372H|rs\d+|p\.\w+|c\.[^,]+|arginine|tryptophan|S1P|C6S|5-FU", variants)]
    assert [e.text for e in built.apply(variants, found)] == ["S1P", "C6S", "5-FU", "arginine"]


def test_the_genes_pass_is_scored_after_every_setting_and_ships_with_its_names(tiny_model_dir, tmp_path):
    genes, train = _gene_corpus(tmp_path)
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|PPARA and famotidine\n1|a|delirium\n1\t10\t20\tfamotidine\tChemical\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             genes_from=(str(genes),), gazetteer_from=(str(train),)))
    names = set(result["decodings"]["argmax"])
    assert {f"{n} + genes (ratio {r:g})" for n in VARIANTS for r in GENES_RATIOS} < names
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "postprocess.json").write_text(json.dumps(result["choice"]))
    loaded = Postprocess.load(tmp_path / "model")
    assert ("genes" in loaded.passes) == ("genes" in result["best"]) and loaded.genes <= {"PPARA", "TP53"}


def test_with_a_linker_index_the_unlinked_thresholds_are_chosen_after_the_best_setting(tiny_model_dir, tmp_path):
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|Famotidine induced delirium\n1|a|in renal failure, not zebrafishin\n"
                    "1\t0\t10\tFamotidine\tChemical\t-\n1\t19\t27\tdelirium\tDisease\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             linker_index=str(tiny_model_dir / "linker")))
    grid = result["unlinked"]["dev"]
    assert len(grid) == len(UNLINKED_GRID) ** 2 and "off_domain" not in result["unlinked"]
    assert grid["0 0"] == result["decodings"][result["best_decoding"]][result["best"]]  # 0 keeps every entity
    best = result["unlinked"]["best"]
    assert grid[best]["micro"]["f1"] == max(v["micro"]["f1"] for v in grid.values())
    assert result["choice"]["unlinked_min_score"] == dict(zip(("Chemical", "Disease"), map(float, best.split())))


def _mesh(root):
    """A miniature MeSH 2024: descriptor -> (tree, terms (term, permuted))."""
    records = {"D1": (["D03.633.100"], [("Thiopental", "N"), ("Thiopental, Sodium", "N"), ("Penthal", "N")]),
               "D2": (["D01.268.100"], [("Mineral element", "N"), ("element", "N")]),
               "D3": (["D12.776.100"], [("Metallothionein", "N")]),  # a protein
               "D4": (["D03.100.200", "D27.505.100"], [("Diuretic agent", "N")]),  # also a class of use
               "D6": (["D02.100.100"], [("Amphetamines", "Y"), ("Amphetamine", "N")])}
    (root / "vocab").mkdir(parents=True)
    with gzip.open(root / "vocab/mesh2024_descriptor_trees.tsv.gz", "wt") as out:
        out.write("DescriptorUI\tDescriptorName\ttree_location\n")
        out.writelines(f"{d}\tx\t{tree}\n" for d, (trees, _) in records.items() for tree in trees)
    with gzip.open(root / "vocab/mesh2024_descriptor_terms.tsv.gz", "wt") as out:
        out.write("DescriptorUI\tTermName\tIsPermutedTermYN\n")
        out.writelines(f"{d}\t{t}\t{p}\n" for d, (_, terms) in records.items() for t, p in terms)
    return root


def test_mesh_substance_names_are_specific_chemicals_never_proteins_classes_or_inverted_terms(tmp_path):
    names = substance_names(_mesh(tmp_path), min_chars=7)
    assert names == {"Thiopental", "thiopental", "Penthal", "penthal", "Mineral element", "mineral element",
                     "element", "Amphetamine", "amphetamine"}  # a permuted term and a comma'd one left out
    assert "Penthal" not in substance_names(tmp_path, min_chars=8)


def test_mesh_substances_join_the_gazetteer_unless_the_corpora_leave_them_untagged(tiny_model_dir, tmp_path):
    """--substances-from: each gazetteer setting is scored also with MeSH substance names, less those
    the training text and the gene corpora leave untagged; the chosen names ship with their provenance."""
    genes, train = _gene_corpus(tmp_path)
    train.write_text("4|t|insulin and element\n4|a|element again\n4\t0\t7\tinsulin\tChemical\t-\n\n")
    variant = Variant(("gazetteer", "abbreviations"), (0.5, False), 0.3)
    assert variant.name == "gazetteer (ratio 0.5, MeSH substances 0.3) + abbreviations"
    built, provenance = variant.build((str(train),), (str(genes),), substances_from=str(_mesh(tmp_path / "data")))
    assert "thiopental" in built.gazetteer.names and "element" not in built.gazetteer.names  # 0 of 2 tagged
    assert built.gazetteer.names["insulin"] == "Chemical" and provenance["gazetteer"]["mesh_substances"]["min_ratio"] == 0.3
    found = built.apply("Thiopental and element", [])
    assert [(e.text, e.label) for e in found] == [("Thiopental", "Chemical")]
    gold = tmp_path / "dev.PubTator"
    gold.write_text("1|t|thiopental and famotidine\n1|a|delirium\n1\t0\t10\tthiopental\tChemical\t-\n\n")
    result = main(ChooseArgs(model=str(tiny_model_dir), gold=str(gold), output=str(tmp_path / "out.json"), threads=1,
                             gazetteer_from=(str(train),), substances_from=str(tmp_path / "data")))
    assert {Variant(("gazetteer", "abbreviations"), g, r).name for g in GAZETTEER_GRID
            for r in SUBSTANCE_RATIOS} < set(result["decodings"]["argmax"])


def test_a_substances_folder_without_mesh_is_one_line_naming_it(tmp_path, capsys):
    argv = ["--model", "m", "--gold", "g", "--substances-from", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        parse_dataclass(ChooseArgs, "doc", argv, check=check_args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--substances-from {tmp_path}: no vocab/mesh2024_descriptor_terms.tsv.gz or vocab/mesh2024_descriptor_trees.tsv.gz" in err
    assert check_args(parse_dataclass(ChooseArgs, "doc", argv[:4] + ["--substances-from", str(_mesh(tmp_path / "d"))])) is None
