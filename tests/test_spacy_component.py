"""The spaCy component ``bioprune_ner``: registration, config, alignment, extensions, batching, saving.

Runs on the tiny random models of conftest.py (offline, seconds). The fresh-process test runs
against the *installed* package (``pip install ".[test]"``), as a user's script would.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")

from huggingface_hub import constants  # noqa: E402
from spacy import displacy  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.util import load_config_from_str, load_model_from_config  # noqa: E402

from bioprune.config import DEFAULT, PruningConfig, dense_twin  # noqa: E402
from bioprune.engine import ModelBundle, PruningEngine, load_model  # noqa: E402
from bioprune.spacy import (DEFAULT_CONFIG, DISPLACY_COLORS, AlignmentWarning, BioPruneNER,  # noqa: E402
                             ComponentSettings, ConfigError)

from conftest import spacy_ner  # noqa: E402

TEXTS = [
    "Famotidine associated delirium in a patient treated with cisplatin .",
    "Acute renal failure developed after treatment with haloperidol and magnesium sulfate .",
    "The symptoms resolved after the drug was stopped .",
    "Seizures were reported in two patients receiving cisplatin .",
    "Kidney injury and delirium may increase the risk .",
    "Rats were treated with famotidine .",
]
LABELS = {"Chemical": "CHEMICAL", "Disease": "DISEASE"}


def _expected(engine: PruningEngine, texts, labels=LABELS) -> list[list[tuple[int, int, str]]]:
    return [[(e.start, e.end, labels[e.label]) for e in ann.entities] for ann in engine.annotate(texts)]


def _found(docs) -> list[list[tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]


def _lists(value):
    """``value`` with tuples as lists: a DocBin gives user data back with tuples (msgpack use_list=False)."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def per_word_model_dir(per_word_engine, tiny_model_dir, tmp_path_factory) -> Path:
    """conftest's per_word_engine saved: the tiny model tagging every word B-Disease, one entity per word."""
    path = tmp_path_factory.mktemp("per-word-model")
    per_word_engine.model.save_pretrained(str(path), safe_serialization=True)
    per_word_engine.tokenizer.save_pretrained(str(path))
    shutil.copytree(tiny_model_dir / "linker", path / "linker")
    return path


@pytest.fixture(scope="module")
def nlp(tiny_model_dir):
    return spacy_ner(tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_engine_dense(tiny_model_dir) -> PruningEngine:
    return PruningEngine.from_pretrained(tiny_model_dir)


def test_blank_pipeline_entities_equal_engine_spans(nlp, tiny_engine_dense):
    docs = [nlp(t) for t in TEXTS]
    expected = _expected(tiny_engine_dense, TEXTS)
    assert sum(map(len, expected)) > 5  # the random model does find entities of both types
    assert {label for doc in expected for *_, label in doc} == {"CHEMICAL", "DISEASE"}
    assert _found(docs) == expected
    for doc, ann in zip(docs, tiny_engine_dense.annotate(TEXTS)):
        assert [e._.bioprune_confidence for e in doc.ents] == pytest.approx([e.score for e in ann.entities])
        assert doc._.bioprune_skipped_count == 0
        assert doc._.bioprune_pruned_tokens == [] and doc._.bioprune_recovery_events == []
        assert doc._.bioprune_keep_ratio == 1.0 and doc._.bioprune_flops_saved_ratio == 0.0  # dense


def test_mesh_ids_as_kb_id_and_an_extension_and_none_with_link_false(per_word_model_dir):
    """Every word is its own Disease entity (per_word_model_dir): the tiny index knows "delirium"."""
    nlp = spacy_ner(per_word_model_dir)
    doc = nlp("Delirium and seizures in zzyzx")
    ids = {e.text: (e.kb_id_, e._.bioprune_ids) for e in doc.ents}
    assert ids["Delirium"] == ("MESH:D003693", ["D003693"]) and ids["seizures"] == ("MESH:D012640", ["D012640"])
    assert ids["zzyzx"] == ("", [])  # no match: no ID
    candidates = {e.text: e._.bioprune_candidates for e in doc.ents}
    assert candidates["Delirium"] == [["D003693", 1.0]]  # a dictionary hit: its own only candidate
    assert all(score < 0.75 for _, score in candidates["zzyzx"])  # near misses at most, under the threshold
    docs = list(DocBin(docs=[doc], store_user_data=True).from_bytes(
        DocBin(docs=[doc], store_user_data=True).to_bytes()).get_docs(nlp.vocab))
    assert [e.kb_id_ for e in docs[0].ents] == [e.kb_id_ for e in doc.ents]  # kb_id_ survives DocBin
    off = spacy_ner(per_word_model_dir, link=False)("Delirium and seizures")
    assert all(e.kb_id_ == "" and e._.bioprune_ids == [] and e._.bioprune_candidates == [] for e in off.ents)


def test_after_sentencizer_and_with_mapped_labels(tiny_model_dir, tiny_engine_dense):
    nlp = spacy_ner(tiny_model_dir, "sentencizer", labels={"Chemical": "DRUG"})
    assert nlp.pipe_names == ["sentencizer", "bioprune_ner"]
    assert nlp.get_pipe("bioprune_ner").labels == ("DRUG", "DISEASE")
    text = " ".join(TEXTS[:3])
    doc = nlp(text)
    assert len(list(doc.sents)) == 3
    assert _found([doc]) == _expected(tiny_engine_dense, [text], {"Chemical": "DRUG", "Disease": "DISEASE"})


def test_defaults_are_the_engine_defaults(nlp):
    defaults = PruningConfig()
    assert (DEFAULT_CONFIG["min_keep_ratio"], DEFAULT_CONFIG["recovery"], DEFAULT_CONFIG["precision"]) == \
        (defaults.min_keep_ratio, defaults.recovery, defaults.precision)
    assert DEFAULT_CONFIG["lambda_"] is None  # each controller's own operating point
    assert DEFAULT_CONFIG["frozen_context"] is None and DEFAULT_CONFIG["controller"] == DEFAULT.controller
    # what every face runs with no options; the tiny model has no controller: DEFAULT's dense twin
    assert nlp.get_pipe("bioprune_ner").engine.config == dense_twin(DEFAULT)
    cfg = nlp.config["components"]["bioprune_ner"]
    assert cfg["labels"] == LABELS and cfg["alignment_mode"] == "expand" and cfg["overwrite_ents"] is False


def test_pruning_settings_and_extensions(outside_model_dir):
    nlp = spacy_ner(outside_model_dir, controller="rule", lambda_=2.0, min_keep_ratio=0.5, recovery=False)
    engine = nlp.get_pipe("bioprune_ner").engine
    assert engine.config == PruningConfig(aggressiveness=2.0, min_keep_ratio=0.5, recovery=False)
    docs = list(nlp.pipe(TEXTS))
    anns = engine.annotate(TEXTS)
    assert _found(docs) == _expected(engine, TEXTS)
    assert any(doc._.bioprune_pruned_tokens for doc in docs)
    for doc, ann in zip(docs, anns):
        assert doc._.bioprune_pruned_tokens == [vars(p) for p in ann.trace.pruned_tokens]
        assert doc._.bioprune_keep_ratio == pytest.approx(ann.trace.keep_ratio)
        assert doc._.bioprune_keep_ratio < 1.0
        assert doc._.bioprune_flops_saved_ratio == pytest.approx(ann.trace.flops_saved_ratio)
    mlp_default = ComponentSettings(pruning={"controller": "mlp"}).engine_source().pruning_config()
    assert mlp_default == PruningConfig(controller="mlp")  # lambda_ null: the MLP's own operating point
    recovering = spacy_ner(outside_model_dir, controller="rule", lambda_=1.0, recovery=True)
    text = " ".join(TEXTS * 4)  # long enough to hold the entropy spike's minimum of uncertain kept tokens
    doc = recovering(text)
    [ann] = recovering.get_pipe("bioprune_ner").engine.annotate([text])
    assert ann.trace.recovery_events  # the O-biased exit heads trigger recovery on this text
    assert doc._.bioprune_recovery_events == [
        {"trigger": e.trigger, "positions": list(e.positions), "layer": e.layer,
         "labels_before": list(e.labels_before), "labels_after": list(e.labels_after)}
        for e in ann.trace.recovery_events]


def test_pipe_runs_one_forward_per_batch(nlp, monkeypatch):
    pipe = nlp.get_pipe("bioprune_ner")
    one_by_one = _found(nlp(t) for t in TEXTS)
    calls = []
    forward = pipe.engine.encoder.forward
    monkeypatch.setattr(pipe.engine.encoder, "forward", lambda ids, *a, **k: calls.append(len(ids)) or forward(ids, *a, **k))
    docs = list(nlp.pipe(TEXTS, batch_size=3))
    assert calls == [3, 3]  # 6 docs of one window each, 3 per call: one forward per batch
    assert _found(docs) == one_by_one


def test_pipe_with_two_processes(nlp, outside_model_dir):
    for pipeline in (nlp, spacy_ner(outside_model_dir)):  # dense, then with pruning
        single = list(pipeline.pipe(TEXTS, batch_size=2))
        multi = list(pipeline.pipe(TEXTS, batch_size=2, n_process=2))
        assert _found(multi) == _found(single)
        assert [[e._.bioprune_confidence for e in d.ents] for d in multi] == \
            [[e._.bioprune_confidence for e in d.ents] for d in single]
        for name in ("bioprune_pruned_tokens", "bioprune_recovery_events"):
            assert [d._.get(name) for d in multi] == [d._.get(name) for d in single]


def test_docbin_and_pickle_round_trip(outside_model_dir):
    nlp = spacy_ner(outside_model_dir)
    docs = list(nlp.pipe(TEXTS))
    restored = list(DocBin(docs=docs, store_user_data=True).from_bytes(
        DocBin(docs=docs, store_user_data=True).to_bytes()).get_docs(nlp.vocab))
    restored_pickled = [pickle.loads(pickle.dumps(doc)) for doc in docs]
    for again in (restored, restored_pickled):
        assert _found(again) == _found(docs)
        for a, b in zip(again, docs):
            assert [e._.bioprune_confidence for e in a.ents] == [e._.bioprune_confidence for e in b.ents]
            for name in ("bioprune_pruned_tokens", "bioprune_recovery_events", "bioprune_keep_ratio",
                         "bioprune_flops_saved_ratio", "bioprune_skipped_count"):
                assert _lists(a._.get(name)) == b._.get(name)


def test_empty_whitespace_tiny_and_long_docs(nlp, tiny_engine_dense):
    sentence = "Cisplatin induced renal failure and seizures in rats treated with magnesium sulfate . "
    long_text = (sentence * (20_000 // len(sentence) + 1))[:20_000]
    assert len(long_text) == 20_000
    [encoded] = tiny_engine_dense.encode([long_text])
    assert len(encoded.windows) > 1  # > 512 subword tokens: the engine's windows are used
    texts = ["", "   \n\t ", "a", ".", long_text]
    docs = list(nlp.pipe(texts, batch_size=2))
    assert [d.text for d in docs] == texts
    assert _found(docs) == _expected(tiny_engine_dense, texts)
    assert docs[0].ents == () and docs[1].ents == ()
    assert len(docs[-1].ents) > 100
    for doc in docs:
        assert doc._.bioprune_skipped_count == 0 and doc._.bioprune_keep_ratio == 1.0


def test_unalignable_entities_are_skipped_with_a_warning(per_word_model_dir):
    text = "U.S. patients with delirium"  # "U.S." is one spaCy token, four words to the tokenizer
    strict = spacy_ner(per_word_model_dir, alignment_mode="strict")
    with pytest.warns(AlignmentWarning, match="alignment_mode='strict'"):
        doc = strict(text)
    assert [(e.text, e.label_) for e in doc.ents] == [("patients", "DISEASE"), ("with", "DISEASE"),
                                                      ("delirium", "DISEASE")]
    assert doc._.bioprune_skipped_count == 4
    assert strict.get_pipe("bioprune_ner").skipped_count == 4
    expand = spacy_ner(per_word_model_dir)  # "U" expands to "U.S."; ".", "S", "." then overlap it
    with pytest.warns(AlignmentWarning, match="overlap the entity before them"):
        doc = expand(text)
    assert doc._.bioprune_skipped_count == 3
    assert [e.text for e in doc.ents] == ["U.S.", "patients", "with", "delirium"]
    contract = spacy_ner(per_word_model_dir, alignment_mode="contract")
    with pytest.warns(AlignmentWarning):
        assert [e.text for e in contract(text).ents] == ["patients", "with", "delirium"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_existing_entities_kept_unless_overwrite(per_word_model_dir, overwrite):
    nlp = spacy_ner(per_word_model_dir, "entity_ruler", overwrite_ents=overwrite)
    nlp.get_pipe("entity_ruler").add_patterns([{"label": "SYMPTOM", "pattern": "delirium"},
                                               {"label": "PLACE", "pattern": "ward"}])
    doc = nlp("delirium in ward")  # our model tags each word DISEASE
    assert doc.ents[0].text == "delirium" and doc.ents[0].label_ == ("DISEASE" if overwrite else "SYMPTOM")
    assert doc.ents[0]._.bioprune_confidence is None if not overwrite else doc.ents[0]._.bioprune_confidence > 0.9
    assert [(e.text, e.label_) for e in doc.ents[1:]] == [("in", "DISEASE"), ("ward", "DISEASE" if overwrite else "PLACE")]


@pytest.mark.parametrize("key, value, message", [
    ("controller", "fast", "controller must be one of"),
    ("lambda_", -1.0, "lambda_ (pruning aggressiveness λ: how far below certainty a token may be and still "
                      "leave) is invalid: aggressiveness (lambda) must be >= 0"),
    ("min_keep_ratio", 1.5, "min_keep_ratio (fraction of each sequence's real tokens that always stays) is invalid"),
    ("precision", "int4", "precision must be one of 'auto', 'fp32', 'bf16'"),
    ("prune_layers", [0], "prune_layers (prune after this many layers have run (1..L-1)) is invalid"),
    ("batch_size", 0, "batch_size must be a whole number >= 1"),
    ("device", "tpu9", "device must be a torch device string"),
    ("labels", {"Gene": "GENE"}, "labels must map each of 'Chemical', 'Disease'"),
    ("alignment_mode", "loose", "alignment_mode must be one of 'strict', 'contract', 'expand'"),
    ("controller", "rule", "controller needs exit heads"),  # the tiny model has none
])
def test_invalid_config_shows_a_working_example(tiny_model_dir, default_model_dir, key, value, message):
    model = tiny_model_dir if key == "controller" else default_model_dir  # one that runs the default's controller
    nlp = spacy.blank("en")
    with pytest.raises(ConfigError, match="A working example") as info:
        nlp.add_pipe("bioprune_ner", config={"model": str(model), key: value})
    assert message in str(info.value)
    assert f'nlp.add_pipe("bioprune_ner", config={{"{key}": ' in str(info.value)
    assert "[components.bioprune_ner" in str(info.value)
    nlp.add_pipe("bioprune_ner", config={"model": str(model), key: info.value.example})  # it works
    assert nlp("Famotidine associated delirium .").text


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty local Hugging Face cache, offline: a hub id resolves only if it is cached here."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.parametrize("model, problem", [
    ("{tmp}/no-such-model", "no such model directory"),
    ("{tmp}/empty-dir", "a directory but not a model directory (no config.json)"),
    ("en_ner_bc5cdr_md", "not a model on the Hugging Face Hub"),  # a scispaCy package name, not our model
])
def test_bad_model_stops_add_pipe_with_a_working_example(tmp_path, empty_hub_cache, model, problem):
    (tmp_path / "empty-dir").mkdir()
    model = model.format(tmp=tmp_path)
    nlp = spacy.blank("en")
    with pytest.raises(ConfigError, match="A working example") as info:
        nlp.add_pipe("bioprune_ner", config={"model": model})
    message = str(info.value)
    assert message.startswith("bioprune_ner: model is wrong: ") and problem in message
    assert "model = null" in message and nlp.pipe_names == []
    nlp.add_pipe("bioprune_ner", config={"model": info.value.example})  # the shipped model: it works


def test_to_disk_and_bytes_save_the_model_files(tiny_model_dir, tmp_path):
    moved = shutil.copytree(tiny_model_dir, tmp_path / "model-copy")
    nlp = spacy_ner(moved, alignment_mode="contract")
    expected = _found([nlp(t) for t in TEXTS])
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(moved)  # the saved pipeline must not need the original directory
    saved = tmp_path / "pipeline" / "bioprune_ner" / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= {p.name for p in saved.iterdir()}
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("bioprune_ner").alignment_mode == "contract"
    assert _found(loaded.pipe(TEXTS)) == expected
    again = spacy.blank("en")
    again.add_pipe("bioprune_ner")  # the shipped model, checked but not read: from_bytes replaces it
    again.from_bytes(loaded.to_bytes())
    assert _found(again.pipe(TEXTS)) == expected


def test_to_disk_saves_exit_heads_and_in_memory_engines(outside_model_dir, tiny_model_dir, tmp_path):
    nlp = spacy_ner(outside_model_dir)
    nlp.to_disk(tmp_path / "pruning")
    assert (tmp_path / "pruning" / "bioprune_ner" / "model" / "exit_heads.safetensors").is_file()
    assert spacy.load(tmp_path / "pruning").get_pipe("bioprune_ner").engine.config == dense_twin(DEFAULT)  # 3 layers
    tokenizer, model = load_model(tiny_model_dir)
    engine = PruningEngine(ModelBundle(model, tokenizer))
    pipe = BioPruneNER(nlp.vocab, engine, overwrite_ents=True)  # no directory behind it: saved from memory
    pipe.to_disk(tmp_path / "memory")
    restored = BioPruneNER(nlp.vocab, engine).from_disk(tmp_path / "memory")
    assert restored.engine is not engine
    doc = spacy.blank("en")(TEXTS[0])
    assert _found([restored(doc)]) == _expected(engine, TEXTS[:1])


def test_saved_pipeline_meta_requires_bioprune(nlp, tmp_path):
    bioprune_version = metadata.version("bioprune")
    assert f"bioprune>={bioprune_version}" in nlp.meta["requirements"]
    nlp.to_disk(tmp_path / "pipeline")
    for meta in (json.loads((tmp_path / "pipeline" / "meta.json").read_text()), spacy.load(tmp_path / "pipeline").meta):
        assert [r for r in meta["requirements"] if r.startswith("bioprune")] == [f"bioprune>={bioprune_version}"]


def test_pipe_with_two_processes_after_a_warm_call(tiny_model_dir, tmp_path):
    """``nlp("x")`` then ``nlp.pipe(texts, n_process=2)``: the forked workers must not hang.

    Run in a fresh process with two torch threads (the suite itself runs torch on one thread,
    which hides the bug), under a timeout, so a hang fails the test instead of blocking it.
    """
    script = tmp_path / "warm_then_two_processes.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import spacy
        import torch
        torch.set_num_threads(2)  # a thread pool in the parent, as on any multi-core machine
        texts = {TEXTS!r}
        nlp = spacy.blank("en")
        nlp.add_pipe("bioprune_ner", config={{"model": {str(tiny_model_dir)!r}}})
        nlp("Famotidine associated delirium .")  # the warm call: torch has now run multi-threaded
        ents = lambda docs: [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
        single = ents(nlp.pipe(texts, batch_size=2))
        multi = ents(nlp.pipe(texts, batch_size=2, n_process=2))
        print(json.dumps({{"single": single, "multi": multi, "threads": torch.get_num_threads()}}))
    """))
    # its own session, so that a hang is ended with the spaCy workers it forked, not just the parent
    run = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("nlp.pipe(n_process=2) after a warm call hung (no result in 120 s)")
    assert run.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["multi"] == out["single"] and sum(map(len, out["single"])) > 5
    assert out["threads"] == 2  # only the forked workers run on one thread


def test_scores_and_displacy(nlp):
    doc = nlp(TEXTS[0])
    gold = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    scores = nlp.evaluate([Example.from_dict(nlp.make_doc(TEXTS[0]), {"entities": gold})])
    assert scores["ents_f"] == 1.0
    html = displacy.render(doc, style="ent", options={"colors": DISPLACY_COLORS})
    assert all(e.text in html for e in doc.ents) and DISPLACY_COLORS[doc.ents[0].label_] in html


def test_fresh_process_finds_component_by_entry_point_and_loads_saved_pipeline(nlp, tiny_model_dir, tmp_path):
    """A user's script: no ``import bioprune``, the installed package, no network."""
    try:
        dist = metadata.distribution("bioprune")
    except metadata.PackageNotFoundError:
        pytest.skip('bioprune is not installed (pip install ".[test]")')
    assert "bioprune_ner" in {ep.name for ep in dist.entry_points if ep.group == "spacy_factories"}
    nlp.to_disk(tmp_path / "pipeline")
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        import spacy
        from spacy.displacy.render import EntityRenderer
        assert "bioprune.spacy" not in sys.modules
        texts = {TEXTS!r}
        fresh = spacy.blank("en")
        fresh.add_pipe("bioprune_ner", config={{"model": {str(tiny_model_dir)!r}}})
        loaded = spacy.load({str(tmp_path / "pipeline")!r})
        ents = lambda docs: [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
        print(json.dumps({{"fresh": ents(fresh.pipe(texts)), "loaded": ents(loaded.pipe(texts)),
                          "colors": EntityRenderer().colors}}))
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    expected = [[list(e) for e in doc] for doc in _found(nlp.pipe(TEXTS))]
    assert out["fresh"] == expected and out["loaded"] == expected
    assert {label: out["colors"][label] for label in DISPLACY_COLORS} == DISPLACY_COLORS


def test_documented_cfg_block_is_the_default_config():
    """The README's .cfg block builds the defaults."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```ini\n(.*?)```", readme, re.S) if "[components.bioprune_ner]" in b]
    assert blocks, "the README documents the component's config as an ```ini block"
    config = load_config_from_str('[nlp]\nlang = "en"\npipeline = ["bioprune_ner"]\n\n[components]\n\n' + blocks[0])
    built = dict(load_model_from_config(config, auto_fill=True).config["components"]["bioprune_ner"])
    assert built.pop("factory") == "bioprune_ner"
    assert built == DEFAULT_CONFIG  # the shipped model is not read: the engine loads on first use
