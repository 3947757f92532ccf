"""Multi-corpus training (training/corpora.py, training/multicorpus.py): what each corpus allows per
token, the partial-annotation loss, leak filtering, exact resume, and one-line errors for bad input."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bioprune.errors import InputError
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.labels import IGNORE_INDEX, LABEL_TO_ID, LABELS
from bioprune.postprocess import drop_gene_names
from bioprune.types import Entity
from training.corpora import CORPORA, MASKED, OTHER_ENTITY, allowed_labels, check_types, \
    corpus_for_file, label_bits, mapped_spans
from training.multicorpus import Source, distillation_loss, filter_sources, main, partial_label_loss, read_checked

DISEASE = {"O", "B-Disease", "I-Disease"}
EVERY = set(LABELS)

# --- allowed labels --------------------------------------------------------------------------------
# "famotidine induced delirium and lactate dehydrogenase": one token per word
TEXT = "famotidine induced delirium and lactate dehydrogenase"
OFFSETS = [(0, 10), (11, 18), (19, 27), (28, 31), (32, 39), (40, 52)]
CHEMICAL = (0, 10, "Chemical")
DELIRIUM = (19, 27, "Disease")
ENZYME = (32, 52, OTHER_ENTITY)


def _sets(spans, annotates, allows_disease=False) -> list[set[str]]:
    bits, dropped = allowed_labels(OFFSETS, spans, frozenset(annotates), allows_disease)
    assert not dropped
    return [{label for i, label in enumerate(LABELS) if b >> i & 1} for b in bits]  # label_bits' inverse


@pytest.mark.parametrize("spans, annotates, allows_disease, expected", [
    # a fully annotated corpus allows the gold tag only
    ([CHEMICAL, DELIRIUM], {"Chemical", "Disease"}, False, [{"B-Chemical"}, {"O"}, {"B-Disease"}, {"O"}, {"O"}, {"O"}]),
    # a chemical-only corpus says nothing about diseases ("delirium" included) outside its chemicals
    ([CHEMICAL], {"Chemical"}, False, [{"B-Chemical"}] + [DISEASE] * 5),
    # other entities are O by default and may be a disease when the corpus declares so ...
    ([CHEMICAL, ENZYME], {"Chemical"}, False, [{"B-Chemical"}] + [DISEASE] * 3 + [{"O"}] * 2),
    ([CHEMICAL, ENZYME], {"Chemical"}, True, [{"B-Chemical"}] + [DISEASE] * 5),
    # ... but where the corpus annotates diseases, an unannotated span is no disease either way
    ([ENZYME], {"Chemical", "Disease"}, True, [{"O"}] * 6),
    # gold wins over another entity, and a masked span over outside
    ([(0, 18, "Chemical"), (0, 10, OTHER_ENTITY), (28, 39, MASKED)], {"Chemical"}, False,
     [{"B-Chemical"}, {"I-Chemical"}, DISEASE, EVERY, EVERY, DISEASE]),
])
def test_allowed_labels_per_token(spans, annotates, allows_disease, expected):
    assert _sets(spans, annotates, allows_disease) == expected


# --- the loss --------------------------------------------------------------------------------------

def test_loss_is_cross_entropy_when_each_token_allows_one_label():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, len(LABELS))  # (B, T, C)
    gold = torch.randint(len(LABELS), (2, 5))
    gold[:, 0] = gold[1, 4] = IGNORE_INDEX  # [CLS] and padding
    bits = torch.where(gold == IGNORE_INDEX, gold, 1 << gold.clamp(min=0))
    loss = partial_label_loss(logits, bits, torch.ones(2))
    expected = F.cross_entropy(logits.flatten(0, 1), gold.flatten(), ignore_index=IGNORE_INDEX)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_a_masked_token_does_not_push_toward_o():
    logits = torch.zeros(1, 1, len(LABELS))
    logits[0, 0, LABEL_TO_ID["B-Disease"]] = 6.0  # the model says disease; the corpus does not annotate diseases
    logits.requires_grad_(True)
    loss = partial_label_loss(logits, torch.tensor([[label_bits(DISEASE)]]), torch.ones(1))
    loss.backward()
    assert loss.item() < 0.02 < F.cross_entropy(logits[0].detach(), torch.tensor([LABEL_TO_ID["O"]])).item() - 5
    grad = logits.grad[0, 0]
    assert grad[LABEL_TO_ID["B-Disease"]] <= grad[LABEL_TO_ID["O"]] <= 0  # B-Disease is raised at least as much as O
    assert grad[LABEL_TO_ID["B-Chemical"]] > 0  # the disallowed labels go down


def test_weights_scale_and_unsupervised_tokens_do_not_count():
    logits = torch.randn(2, 3, len(LABELS))
    o = 1 << LABEL_TO_ID["O"]
    bits = torch.tensor([[o, o, (1 << len(LABELS)) - 1], [o, o, IGNORE_INDEX]])
    plain = partial_label_loss(logits, bits, torch.ones(2))
    expected = F.cross_entropy(logits[:, :2].flatten(0, 1), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(plain, expected, atol=1e-6)
    assert torch.allclose(partial_label_loss(logits, bits, torch.full((2,), 0.5)), plain / 2, atol=1e-6)


# --- corpus files ----------------------------------------------------------------------------------

def _doc(pmid: str, title: str, mentions=()) -> str:
    lines = [f"{pmid}|t|{title}", f"{pmid}|a|"]
    for start, end, kind in mentions:
        lines.append(f"{pmid}\t{start}\t{end}\t{title[start:end]}\t{kind}\t-")
    return "\n".join(lines) + "\n\n"


TITLES = ["famotidine induced delirium in a patient", "cisplatin and renal failure in rats",
          "haloperidol induced seizures", "magnesium sulfate reduced symptoms", "acute kidney injury after treatment",
          "two patients developed delirium"]


def _bc5cdr(pmid: int, title: str) -> str:
    kinds = {"famotidine": "Chemical", "cisplatin": "Chemical", "haloperidol": "Chemical", "delirium": "Disease",
             "renal failure": "Disease", "seizures": "Disease", "magnesium sulfate": "Chemical",
             "acute kidney injury": "Disease"}
    spans = [(title.index(w), title.index(w) + len(w), kind) for w, kind in kinds.items() if w in title]
    return _doc(str(pmid), title, spans)


@pytest.fixture
def data(tmp_path) -> dict[str, Path]:
    """BC5CDR train (6 docs), dev (PMIDs 900, 901), and an NLM-Chem file with a dev PMID and a
    duplicate of a BC5CDR training PMID."""
    files = {"train": tmp_path / "CDR_TrainingSet.PubTator.txt", "dev": tmp_path / "CDR_DevelopmentSet.PubTator.txt",
             "nlmchem": tmp_path / "NLMChem_passages.PubTator"}
    files["train"].write_text("".join(_bc5cdr(100 + i, t) for i, t in enumerate(TITLES)))
    files["dev"].write_text(_bc5cdr(900, TITLES[0]) + _bc5cdr(901, TITLES[1]))
    enzyme = "lactate dehydrogenase and cisplatin"
    files["nlmchem"].write_text(
        _doc("500", enzyme, [(0, 21, "OTHER"), (26, 35, "Chemical")])
        + _doc("500", "magnesium sulfate in rats", [(0, 17, "Chemical")])
        + _doc("900", "cisplatin in rats", [(0, 9, "Chemical")]) + _doc("101", "cisplatin", [(0, 9, "Chemical")]))
    return files


def test_leaked_and_duplicate_pmids_are_dropped_and_counted(data):
    sources = [Source(str(data["nlmchem"]), CORPORA["nlmchem"], 1.0, tuple(read_checked(data["nlmchem"]))),
               Source(str(data["train"]), CORPORA["bc5cdr"], 1.0, tuple(read_checked(data["train"])))]
    dev = {d.pmid for d in read_checked(data["dev"])}
    nlm, bc5cdr = filter_sources(sources, dev)
    assert [d.pmid for d in nlm.docs] == ["500", "500"]  # one article's passages stay together
    assert (nlm.dropped_held_out, nlm.dropped_duplicate) == (1, 1)  # 900 is dev; 101 is in BC5CDR train
    assert len(bc5cdr.docs) == 6 and (bc5cdr.dropped_held_out, bc5cdr.dropped_duplicate) == (0, 0)


def _argv(data, model_dir, out, *extra) -> list[str]:
    return ["--train", str(data["train"]), str(data["nlmchem"]), "--dev", str(data["dev"]), "--output", str(out),
            "--base", str(model_dir), "--epochs", "2", "--batch-size", "2", "--learning-rate", "1e-3",
            "--threads", "1", "--no-save-fp16", *extra]


@pytest.mark.parametrize("recipe", [[], ["--prune-layers", "1", "--prune-step-probability", "0.5"]],
                         ids=["dense", "pruning-aware"])
def test_resume_continues_exactly_and_refuses_other_arguments(data, tiny_model_dir, tmp_path, capsys, recipe):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_argv(data, tiny_model_dir, straight, *recipe)) == 0  # 6 + 2 windows: 4 steps an epoch, 8 in all
    assert main(_argv(data, tiny_model_dir, split, *recipe, "--stop-after-steps", "3")) == 0  # stops mid-epoch
    stopped = json.loads((split / "checkpoint" / "run.json").read_text())
    assert stopped["step"] == 3 and not (split / "training_run.json").exists()
    assert main(_argv(data, tiny_model_dir, split, *recipe, "--resume", "--checkpoint-every-steps", "5")) == 0
    a, b = (load_file(str(d / "model.safetensors")) for d in (straight, split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run_a, run_b = (json.loads((d / "training_run.json").read_text()) for d in (straight, split))
    assert run_a["steps"] == 8
    assert [e["train_loss"] for e in run_a["epochs"]] == [e["train_loss"] for e in run_b["epochs"]]
    assert all("dev" in e for e in run_a["epochs"])  # scored on dev every epoch
    nlm = next(c for c in run_a["corpora"] if c["corpus"] == "nlmchem")
    assert (nlm["documents"], nlm["dropped_held_out"], nlm["dropped_duplicate"]) == (2, 1, 1)

    capsys.readouterr()
    assert main(_argv(data, tiny_model_dir, split, *recipe, "--resume", "--learning-rate", "5e-4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another recipe" in err and "learning_rate" in err
    assert main(_argv(data, tiny_model_dir, split, *recipe)) == 2  # a run is there: no silent restart over it
    assert "--resume" in capsys.readouterr().err


def test_pruning_aware_steps_train_differently_and_a_continued_run_nests_its_base(data, tiny_model_dir, tmp_path):
    """--prune-layers changes what is learnt (steps with tokens removed); training on from a model
    this script made records that run as ``base_run`` (the shipped model: dense, then pruning-aware)."""
    dense, aware, continued = tmp_path / "dense", tmp_path / "aware", tmp_path / "continued"
    one_epoch = ("--epochs", "1")
    assert main(_argv(data, tiny_model_dir, dense, *one_epoch)) == 0
    assert main(_argv(data, tiny_model_dir, aware, *one_epoch, "--prune-layers", "1", "--prune-step-probability", "1")) == 0
    a, b = (load_file(str(d / "model.safetensors")) for d in (dense, aware))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert main(_argv(data, dense, continued, *one_epoch, "--prune-layers", "1")) == 0
    run = json.loads((continued / "training_run.json").read_text())
    assert run["args"]["prune_layers"] == [1] and run["base_run"]["args"]["output"] == str(dense)


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_fails_with_file_line_and_fix(data, tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad" / "NLMChem_passages.PubTator"
    bad.parent.mkdir()
    bad.write_text("7|t|cisplatin in rats\n7|a|\n7\t0\t90\tcisplatin\tChemical\t-\n")
    err = _one_line_error(capsys, _argv({**data, "nlmchem": bad}, tiny_model_dir, tmp_path / "o1"))
    assert f"{bad}:3:" in err and "outside the text" in err and "fix:" in err

    bad.write_text(_doc("7", "cisplatin in rats", [(0, 9, "Chemical")]) + _doc("8", "rats", [(0, 4, "Species")]))
    err = _one_line_error(capsys, _argv({**data, "nlmchem": bad}, tiny_model_dir, tmp_path / "o2"))
    assert f"{bad}:7:" in err and "'Species'" in err and "--type-maps nlmchem:Species=" in err

    err = _one_line_error(capsys, _argv(data, tiny_model_dir, tmp_path / "o3", "--type-maps", "nlmchem:OTHER=Enzyme"))
    assert "--type-maps nlmchem:OTHER=Enzyme" in err and "names no type" in err and "Chemical" in err

    unknown = tmp_path / "bad" / "Mystery.PubTator"
    unknown.write_text(_doc("9", "rats"))
    err = _one_line_error(capsys, _argv({**data, "nlmchem": unknown}, tiny_model_dir, tmp_path / "o4"))
    assert str(unknown) in err and "training/corpora.py" in err


def test_a_registry_mapping_that_names_no_type_is_reported_at_its_line(data):
    broken = replace(CORPORA["nlmchem"], types={"Chemical": "Chemical", "OTHER": "Enzyme"})
    with pytest.raises(InputError, match="names no type") as err:
        check_types(data["nlmchem"], read_checked(data["nlmchem"]), broken)
    assert err.value.line == 3  # the first OTHER mention line


def test_every_registered_corpus_loads_and_maps():
    root = Path(os.environ.get("BIOPRUNE_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    files = sorted((root / "corpora").glob("*.PubTator")) + sorted((root / "bc5cdr").glob("CDR_[TD]*Set.PubTator.txt"))
    files = [f for f in files if "TestSet" not in f.name]
    if not files:
        pytest.skip(f"no corpora under {root} (set BIOPRUNE_DATA)")
    registered = {f for c in CORPORA.values() for f in c.files}
    assert registered == {f.name for f in files}, "every file in the data folder has a corpus, and every corpus a file"
    for path in files:
        corpus = corpus_for_file(path)
        docs = read_checked(path)
        check_types(path, docs, corpus)  # no unknown type, every target names one
        assert docs and corpus.annotates
        for doc in docs if corpus.name in ("bc5cdr", "biored", "drugprot") else ():  # guidelines that tag no residue
            gold = [Entity(a, b, "Chemical", doc.text[a:b]) for a, b, t in mapped_spans(doc, corpus) if t == "Chemical"]
            assert drop_gene_names(doc.text, gold, frozenset()) == gold, f"{path.name} {doc.pmid}: a variant-rule veto"


# --- distillation ----------------------------------------------------------------------------------

def test_distillation_loss_is_zero_on_the_teachers_own_distribution_and_pulls_toward_it():
    torch.manual_seed(0)
    teacher_logits = torch.randn(2, 4, len(LABELS))  # (B, T, C)
    content = torch.tensor([[False, True, True, False], [False, True, True, True]])
    for temperature in (1.0, 2.0):
        soft = (teacher_logits / temperature).softmax(-1)
        assert distillation_loss(teacher_logits, soft, content, temperature).abs() < 1e-5
    student = torch.zeros(2, 4, len(LABELS), requires_grad=True)
    soft = teacher_logits.softmax(-1)
    loss = distillation_loss(student, soft, content, 1.0)
    loss.backward()
    assert loss > 0.1
    assert torch.all(student.grad[~content] == 0)  # [CLS], [SEP] and padding teach nothing
    stepped = distillation_loss(student.detach() - 1.0 * student.grad, soft, content, 1.0)
    assert stepped < loss  # a gradient step moves toward the teachers


def test_teachers_and_unlabelled_text_train_and_are_recorded(data, tiny_model_dir, tmp_path, capsys):
    fixtures = Path(__file__).parent / "fixtures"
    medline = fixtures / "pubmed_current.xml"
    out = tmp_path / "student"
    argv = _argv(data, tiny_model_dir, out, "--teachers", str(tiny_model_dir), "--distill-weight", "0.5",
                 "--distill-temperature", "2", "--unlabelled", str(medline), str(fixtures / "sample.pubtator"))
    assert main(argv) == 0
    run = json.loads((out / "training_run.json").read_text())
    unlabelled = {Path(c["file"]).name: c["documents"] for c in run["corpora"] if c["corpus"] == "unlabelled"}
    citations = [d for d in iter_pubmed_xml(medline) if d.text.strip()]
    assert unlabelled["pubmed_current.xml"] == len(citations) // 2  # the second half is never trained on
    assert unlabelled["sample.pubtator"] > 0
    assert run["args"]["teachers"] == [str(tiny_model_dir)] and str(Path(tiny_model_dir) / "model.safetensors") in run["data"]
    plain = json.loads((tmp_path / "plain" / "training_run.json").read_text()) if main(
        _argv(data, tiny_model_dir, tmp_path / "plain")) == 0 else None
    assert plain["epochs"][0]["train_loss"] != run["epochs"][0]["train_loss"]  # the teachers' term is in the loss

    err = _one_line_error(capsys, _argv(data, tiny_model_dir, tmp_path / "o5", "--unlabelled", str(medline)))
    assert "--unlabelled" in err and "--teachers" in err
    err = _one_line_error(capsys, _argv(data, tiny_model_dir, tmp_path / "o6", "--teachers", str(tiny_model_dir)))
    assert "--distill-weight" in err
