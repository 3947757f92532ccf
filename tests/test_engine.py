"""PruningEngine on a tiny random BERT: ordering, ids, empty input, long documents, batching
invariance, agreement with the plain Hugging Face model, and offsets on arbitrary unicode."""
from __future__ import annotations

import json
import shutil
import string
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bioprune.config import DENSE
from bioprune.encoding import MAX_POSITIONS, encode_texts, window_input_ids
from bioprune.engine import PruningEngine, load_model
from bioprune.evaluation import word_offsets
from bioprune.labels import LABELS, decode_entities
from bioprune.linking import DEFAULT_INDEX_DIR, LinkerSettings, load_linker
from bioprune.types import ENTITY_TYPES, Document
from bioprune.windows import window_owners

from conftest import entity_tuples, label_probs


@pytest.fixture(scope="module")
def long_text(texts) -> str:
    return " ".join([texts[0]] * 15)  # ~680 subword tokens: more than one 510-token window


def _assert_valid_entities(text: str, entities) -> None:
    previous_end = 0
    for e in entities:
        assert 0 <= e.start < e.end <= len(text)
        assert text[e.start:e.end] == e.text
        assert e.label in ENTITY_TYPES
        assert 0.0 < e.score <= 1.0 + 1e-6
        assert e.start >= previous_end  # sorted and non-overlapping
        previous_end = e.end


# --- loading and encoding -----------------------------------------------------------------------

def test_load_model_labels_and_mode(tiny_engine):
    assert tiny_engine.tokenizer.is_fast
    assert not tiny_engine.model.training
    assert [tiny_engine.model.config.id2label[i] for i in range(5)] == list(LABELS)
    assert tiny_engine.max_positions == MAX_POSITIONS


def test_load_model_rejects_other_label_sets(tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {str(i): label for i, label in enumerate(["O", "B-Gene", "I-Gene", "B-X", "I-X"])}
    config["label2id"] = {label: int(i) for i, label in config["id2label"].items()}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="labels"):
        load_model(other)


def test_encode_needs_a_fast_tokenizer():
    with pytest.raises(TypeError):
        encode_texts(SimpleNamespace(is_fast=False), ["text"])


def test_encode_offsets_and_windows(tiny_engine, texts, long_text):
    encoded = tiny_engine.encode([texts[0], "", long_text])
    assert len(encoded) == 3 and tiny_engine.encode([]) == []
    short, empty, long = encoded
    assert short.windows == ((0, len(short.input_ids)),)
    assert empty.input_ids == () and empty.windows == ((0, 0),)
    assert len(long.input_ids) > MAX_POSITIONS and len(long.windows) > 1
    assert all(e - s <= MAX_POSITIONS - 2 for s, e in long.windows)
    assert len(short.offsets) == len(short.word_ids) == len(short.input_ids)
    tokens = tiny_engine.tokenizer.convert_ids_to_tokens(list(short.input_ids))
    assert tokens[:3] == ["famotidine", "-", "associated"]
    assert short.offsets[:3] == ((0, 10), (10, 11), (11, 21))
    assert list(short.word_ids[:3]) == [0, 1, 2]
    cls_id, sep_id = tiny_engine.tokenizer.cls_token_id, tiny_engine.tokenizer.sep_token_id
    ids = window_input_ids(long, long.windows[1], cls_id, sep_id)
    s, e = long.windows[1]
    assert ids == [cls_id, *long.input_ids[s:e], sep_id] and len(ids) <= MAX_POSITIONS


# --- annotate: order, ids, empty input ----------------------------------------------------------

def test_one_annotation_per_input_in_order(tiny_engine, texts):
    annotations = tiny_engine.annotate(iter(texts))  # any iterable
    assert [a.id for a in annotations] == ["0", "1", "2"]
    assert [a.text for a in annotations] == texts
    for text, a in zip(texts, annotations):
        _assert_valid_entities(text, a.entities)
    assert tiny_engine.annotate([]) == []


def test_a_single_string_is_one_document(tiny_engine, texts):
    assert tiny_engine.annotate("aspirin") == tiny_engine.annotate(["aspirin"])
    [one] = tiny_engine.annotate(texts[0])  # not one document per character
    assert one == tiny_engine.annotate([texts[0]])[0] and one.text == texts[0]
    [doc] = tiny_engine.annotate(Document(id="pmid-1", text=texts[1]))
    assert doc.id == "pmid-1" and doc.text == texts[1]


@pytest.mark.parametrize("documents, message", [
    (b"aspirin", "got bytes; decode them first"),
    (["aspirin", 7], "got int at position 1"),
])
def test_documents_that_are_not_text_are_a_type_error(tiny_engine, documents, message):
    with pytest.raises(TypeError, match=message):
        tiny_engine.annotate(documents)


def test_document_ids_preserved(tiny_engine, texts):
    docs = [Document(id="pmid-b", text=texts[1]), "plain text here", Document(id="pmid-a", text=texts[0])]
    annotations = tiny_engine.annotate(docs, batch_size=2)
    assert [a.id for a in annotations] == ["pmid-b", "1", "pmid-a"]
    assert [a.text for a in annotations] == [texts[1], "plain text here", texts[0]]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u00a0\u3000 \r\n"])
def test_empty_and_whitespace_documents(tiny_engine, biased_engine, text):
    for engine in (tiny_engine, biased_engine):
        annotations = engine.annotate([text, "famotidine", text], batch_size=2)
        assert len(annotations) == 3
        assert annotations[0].entities == () and annotations[2].entities == ()
        assert annotations[0].text == text
        (probs,) = label_probs(engine, engine.encode([text]))
        assert probs.shape == (0, len(LABELS))


# --- long documents and batching ----------------------------------------------------------------

def test_long_document_windows_use_window_predictions(tiny_engine, long_text):
    """Each token's probabilities come from its most central window, run on its own."""
    (enc,) = tiny_engine.encode([long_text])
    merged = label_probs(tiny_engine, [enc])[0]
    owners = window_owners(len(enc.input_ids), list(enc.windows))
    cls_id, sep_id = tiny_engine.tokenizer.cls_token_id, tiny_engine.tokenizer.sep_token_id
    for w, (s, e) in enumerate(enc.windows):
        ids = torch.tensor([window_input_ids(enc, (s, e), cls_id, sep_id)])
        with torch.no_grad():
            ref = torch.softmax(tiny_engine.model(input_ids=ids).logits, -1)[0, 1:-1].numpy()
        mine = np.nonzero(owners[s:e] == w)[0]
        assert len(mine) > 0
        np.testing.assert_allclose(merged[s + mine], ref[mine], atol=1e-5)


def test_batch_equals_one_at_a_time(tiny_engine, texts, long_text):
    docs = [texts[0], "", long_text, texts[2], "Seizures.", texts[1]]
    encoded = tiny_engine.encode(docs)
    assert len(encoded[2].windows) > 1
    batched = label_probs(tiny_engine, encoded, batch_size=16)
    small_batches = label_probs(tiny_engine, encoded, batch_size=3)
    single = [label_probs(tiny_engine, [enc], batch_size=1)[0] for enc in encoded]
    for enc, b, m, s in zip(encoded, batched, small_batches, single):
        assert b.shape == s.shape == (len(enc.input_ids), len(LABELS))
        np.testing.assert_allclose(b, s, atol=1e-5)
        np.testing.assert_allclose(m, s, atol=1e-5)
        np.testing.assert_allclose(s.sum(axis=1), 1.0, atol=1e-5)  # every token got a prediction
    together = tiny_engine.annotate(docs, batch_size=16)
    alone = [tiny_engine.annotate([d], batch_size=1)[0] for d in docs]
    assert [entity_tuples(a) for a in together] == [entity_tuples(a) for a in alone]
    for text, a, b in zip(docs, together, alone):
        assert [e.score for e in a.entities] == pytest.approx([e.score for e in b.entities], abs=1e-5)
        _assert_valid_entities(text, a.entities)


def test_engine_probs_equal_plain_model_on_padded_batch(tiny_engine, texts):
    docs = [texts[2], texts[0]]  # 13 and 45 tokens: the first is padded in the shared batch
    encoded = tiny_engine.encode(docs)
    assert len(encoded[0].input_ids) < len(encoded[1].input_ids)
    probs = label_probs(tiny_engine, encoded, batch_size=16)
    cls_id, sep_id = tiny_engine.tokenizer.cls_token_id, tiny_engine.tokenizer.sep_token_id
    for enc, p in zip(encoded, probs):
        ids = torch.tensor([[cls_id, *enc.input_ids, sep_id]])
        with torch.no_grad():
            logits = tiny_engine.model(input_ids=ids).logits
        ref = torch.softmax(logits, dim=-1)[0, 1:-1].numpy()
        assert p.shape == ref.shape == (len(enc.input_ids), len(LABELS))
        np.testing.assert_allclose(p, ref, atol=1e-5)
    # and the same through the tokenizer's own special-token handling
    hf = tiny_engine.tokenizer(docs[0], return_tensors="pt")
    with torch.no_grad():
        ref = torch.softmax(tiny_engine.model(**hf).logits, dim=-1)[0, 1:-1].numpy()
    np.testing.assert_allclose(probs[0], ref, atol=1e-5)


def test_entities_decoded_from_engine_probs(tiny_engine, texts):
    encoded = tiny_engine.encode(texts)
    probs = label_probs(tiny_engine, encoded)
    annotations = tiny_engine.with_config(tiny_engine.config.with_(link=False)).annotate(texts)
    for text, enc, p, a in zip(texts, encoded, probs, annotations):
        assert list(a.entities) == decode_entities(text, enc.offsets, enc.word_ids, p)


# --- linking: MeSH IDs on each entity (bioprune.linking), from the model folder's linker/ index ------

def test_entities_get_ids_from_the_model_folders_index_and_none_without_link(biased_engine):
    """The biased engine tags the whole text as one Chemical: the tiny index (conftest) knows it."""
    [linked] = biased_engine.annotate("Famotidine")
    assert [(e.text, e.ids) for e in linked.entities] == [("Famotidine", ("D015738",))]
    assert biased_engine.linker.settings == LinkerSettings()  # the shipped thresholds
    [unknown] = biased_engine.annotate("zzyzx")
    assert unknown.entities[0].ids == ()  # no match: no ID (writers write "-")
    [off] = biased_engine.with_config(biased_engine.config.with_(link=False)).annotate("Famotidine")
    assert off.entities[0].ids == ()
    [gene] = biased_engine.annotate("Caveolin")  # linked only to a protein: a gene product, not a chemical
    assert gene.entities == () and biased_engine.with_config(DENSE.with_(link=False)).annotate("Caveolin")[0].entities


def test_the_linker_loads_once_lazily_and_a_folder_without_one_falls_back(tiny_model_dir, tmp_path, caplog):
    engine = PruningEngine.from_pretrained(tiny_model_dir, config=DENSE)
    assert engine.linker is engine.with_config(DENSE.with_(link=False)).linker  # one per index, per process
    assert engine.linker is load_linker(str(tiny_model_dir / "linker"))
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("linker"))
    with caplog.at_level("WARNING", logger="bioprune.linking"):
        assert PruningEngine.from_pretrained(bare, config=DENSE).linker_index_dir == DEFAULT_INDEX_DIR
    assert "has no linker/ folder" in caplog.text


def test_save_pretrained_carries_the_linker_index(tiny_engine, tmp_path):
    saved = tiny_engine.save_pretrained(tmp_path / "saved")
    assert (saved / "linker" / "names.tsv.gz").read_bytes() == (tiny_engine.linker_index_dir / "names.tsv.gz").read_bytes()
    assert PruningEngine.from_pretrained(saved).linker_index_dir == saved / "linker"


# --- biased engines: predictable entities for offset checks -------------------------------------

def test_biased_engine_one_entity_covering_all_words(biased_engine):
    text = "  Famotidine-associated delirium,\nrenal failure.  "
    (a,) = biased_engine.annotate([text])
    end = len(text) - 2
    assert entity_tuples(a) == [(2, end, "Chemical", text[2:end])]
    assert a.entities[0].text == text.strip()
    p = torch.softmax(torch.tensor([0, 0, 10.0, 0, 0]), 0)  # every token: I-Chemical; its score counts B- and I-Chemical
    assert a.entities[0].score == pytest.approx(float(p[1] + p[2]))


def test_per_word_engine_one_entity_per_word(per_word_engine):
    text = "Famotidine-associated delirium (renal failure)."
    (a,) = per_word_engine.annotate([text])
    assert [e.text for e in a.entities] == [
        "Famotidine", "-", "associated", "delirium", "(", "renal", "failure", ")", "."]
    assert {e.label for e in a.entities} == {"Disease"}
    _assert_valid_entities(text, a.entities)


def test_biased_engine_long_document_single_entity(biased_engine, long_text):
    """A gap in the window merge would leave all-zero rows (argmax "O") and split the entity."""
    (a,) = biased_engine.annotate([long_text], batch_size=2)
    assert entity_tuples(a) == [(0, len(long_text), "Chemical", long_text)]


ODD_CHARS = list("\u0301\u0308\u20dd\u00a0\u2028\u200b\u200d\ufeff\x00\x07\x1b\x7f\u3000\t\n\r -.,;()/'\"")
ODD_CHARS += ["😀", "👍🏽", "🧬", "中", "文", "字", "한", "ß", "İ", "ﬁ", "Ⅻ", "ǅ", "\U0001d400", "\u0e01\u0e33"]
FRAGMENT = st.one_of(  # one character or a short multi-codepoint cluster (emoji + skin tone, Thai)
    st.sampled_from(ODD_CHARS),
    st.sampled_from(list(string.ascii_letters + string.digits)),
    st.characters(codec="utf-8"),  # anything but lone surrogates
)


def _text(max_size: int, min_size: int = 0):
    return st.lists(FRAGMENT, min_size=min_size, max_size=max_size).map("".join)


UNICODE_TEXT = st.one_of(
    _text(300),
    st.lists(st.sampled_from(["famotidine", "delirium", "Cisplatin", "renal"]) | _text(6),
             max_size=60).map(" ".join),
    st.builds(lambda chunk, k: chunk * k, _text(25, min_size=1), st.integers(50, 400)),  # long strings
)
LONG_20K = ("Famotidine-associated delirium 😀 in a patient\u00a0with renal failure; "
            "e\u0301 中文 \x07 ﬁ\n") * 270


def _check_biased_engines(biased: PruningEngine, per_word: PruningEngine, text: str) -> None:
    # the tagger's offsets: linking off, since it splits an entity made of several names
    # ("famotidine Cisplatin") and drops gene products, by design (tested on its own)
    biased, per_word = (e.with_config(e.config.with_(link=False)) for e in (biased, per_word))
    (whole,) = biased.annotate([text])
    (words,) = per_word.annotate([text])
    for a in (whole, words):
        assert a.text == text
        _assert_valid_entities(text, a.entities)
    (enc,) = biased.encode([text])
    word_spans = word_offsets(enc.offsets, enc.word_ids)  # each pre-tokenizer word's character span
    if not word_spans:
        assert whole.entities == () and words.entities == ()
        return
    # all words form one Chemical entity, from the first token's start to the last token's end
    assert [(e.start, e.end, e.label) for e in whole.entities] == \
        [(word_spans[0][0], word_spans[-1][1], "Chemical")]
    # one Disease entity per pre-tokenizer word
    assert [(e.start, e.end) for e in words.entities] == word_spans


@settings(max_examples=30, deadline=None)
@given(UNICODE_TEXT)
@example("")
@example("   ")
@example("\n\t")
@example("\u0301\u0301")
@example("😀famotidine😀")
@example("famotidine Cisplatin")
def test_offsets_on_arbitrary_unicode(biased_engine, per_word_engine, text):
    _check_biased_engines(biased_engine, per_word_engine, text)


def test_offsets_on_20k_character_document(biased_engine, per_word_engine):
    assert len(LONG_20K) >= 20_000
    (enc,) = biased_engine.encode([LONG_20K])
    assert len(enc.windows) > 5
    _check_biased_engines(biased_engine, per_word_engine, LONG_20K)
