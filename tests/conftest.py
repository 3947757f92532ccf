"""Shared fixtures: a tiny random BERT token classifier written to disk, and engines built on it.

Everything is built once per session from scratch (no network, no downloaded weights), so the
suite runs offline in seconds on a CPU.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import string
from pathlib import Path

import pytest
import torch

from bioprune.config import DEFAULT, DENSE, PruningConfig
from bioprune.encoding import window_input_ids
from bioprune.engine import ModelBundle, PruningEngine, load_model
from bioprune.io.pubtator import read_pubtator
from bioprune.io.records import RecordError
from bioprune.labels import LABEL_TO_ID, LABELS
from bioprune.types import Document

torch.manual_seed(0)
torch.set_num_threads(1)  # a training job shares this machine

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE_PUBTATOR = FIXTURES / "sample.pubtator"

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WHOLE_WORDS = [
    "a", "and", "after", "in", "of", "the", "was", "were", "with", "man", "patient", "patients", "rats",
    "two", "year", "old", "may", "risk", "drug", "induced", "associated", "developed", "treatment",
    "symptoms", "resolved", "stopped", "increase", "studied", "treated", "reduced", "reported",
    "receiving", "famotidine", "delirium", "renal", "failure", "acute", "cisplatin", "magnesium",
    "sulfate", "kidney", "injury", "seizures", "haloperidol", "nephro", "famotid", "halo",
]
SUBWORD_PIECES = ["##ine", "##toxicity", "##peridol", "##s", "##ed", "##ing", "##ure"]


def _vocab() -> list[str]:
    vocab = list(SPECIAL_TOKENS)
    vocab += list(string.punctuation)
    vocab += list(string.digits) + list(string.ascii_lowercase)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]  # any ascii word tokenises
    for tok in WHOLE_WORDS + SUBWORD_PIECES:
        if tok not in vocab:
            vocab.append(tok)
    return vocab


def _bert_tokenizer(vocab_file: Path, vocab: list[str]):
    """A fast lowercasing WordPiece tokenizer over ``vocab``, on transformers 4.x and 5.x alike.

    transformers 5 ignores ``vocab_file=`` (the tokenizer silently gets the 5 special tokens only)
    and takes ``vocab=`` (a path or a mapping) instead; 4.x needs ``vocab_file=``.
    """
    from transformers import BertTokenizerFast

    try:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    except (TypeError, ValueError):
        tokenizer = None
    if tokenizer is None or tokenizer.vocab_size != len(vocab):
        tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.is_fast and tokenizer.vocab_size == len(vocab)
    return tokenizer


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE_PUBTATOR


@pytest.fixture(scope="session")
def texts(sample_path) -> list[str]:
    """The sample documents' texts: 45, 28 and 13 subword tokens on the tiny model."""
    return [d.text for d in read_pubtator(sample_path)]


@pytest.fixture
def fake_gpus(monkeypatch):
    """This torch, pretending to see two CUDA devices (nothing is ever moved to them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory holding a fast WordPiece tokenizer and a random 3-layer BERT token classifier."""
    from transformers import BertConfig, BertForTokenClassification

    path = tmp_path_factory.mktemp("tiny-model")
    vocab = _vocab()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = _bert_tokenizer(path / "vocab.txt", vocab)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512, num_labels=len(LABELS),
                        id2label=dict(enumerate(LABELS)), label2id=dict(LABEL_TO_ID))
    model = BertForTokenClassification(config).eval()
    model.save_pretrained(str(path), safe_serialization=True)
    write_tiny_linker(path / "linker")
    return path


# A hand-written linker vocabulary (type, name, MeSH ID): the tiny model folder carries it as its
# linker/ index, so tests link in milliseconds instead of loading the shipped half-million-name index.
TINY_LINKER_NAMES = [
    ("Chemical", "Famotidine", "D015738"), ("Chemical", "Cisplatin", "D002945"),
    ("Chemical", "Haloperidol", "D006220"), ("Chemical", "Magnesium Sulfate", "D008278"),
    ("Chemical", "Aspirin", "D001241"), ("Disease", "Delirium", "D003693"),
    ("Disease", "Acute Kidney Injury", "D058186"), ("Disease", "Renal Failure", "D051437"),
    ("Disease", "Seizures", "D012640"), ("Disease", "Drug Overdose", "D062787"),
    ("Chemical", "Caveolin", "D019011"),  # a protein: in the manifest's gene products
]


def write_tiny_linker(directory: Path) -> Path:
    from bioprune.linking import NameRow, write_names

    rows = [NameRow(t, name, ident, vocab_weight=2.0) for t, name, ident in TINY_LINKER_NAMES]
    return write_names(directory, rows, {"sources": ["tests/conftest.py"], "gene_products": ["D019011"]})


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir) -> PruningEngine:
    """The exact dense fp32 model (DENSE), so tests can compare with the plain HF model's outputs."""
    return PruningEngine.from_pretrained(tiny_model_dir, config=DENSE)


def _biased_engine(model_dir: Path, label: str) -> PruningEngine:
    """An engine whose classifier ignores its input and always prefers ``label`` (p ~ 0.9998)."""
    tokenizer, model = load_model(model_dir)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[LABEL_TO_ID[label]] = 10.0
    return PruningEngine(ModelBundle(model, tokenizer, linker_dir=model_dir / "linker"), DENSE)


@pytest.fixture(scope="session")
def biased_engine(tiny_model_dir) -> PruningEngine:
    """Every word is tagged I-Chemical: a document's words form one Chemical entity."""
    return _biased_engine(tiny_model_dir, "I-Chemical")


@pytest.fixture(scope="session")
def per_word_engine(tiny_model_dir) -> PruningEngine:
    """Every word is tagged B-Disease: each pre-tokenizer word is its own Disease entity."""
    return _biased_engine(tiny_model_dir, "B-Disease")


# --- pruning fixtures: the tiny model plus exit heads after layers 1 and 2 ----------------------

def _model_dir_with_exit_heads(tiny_model_dir: Path, target: Path, outside_bias: float | None) -> Path:
    """Copy of the tiny model with random exit heads at [1, 2]; optionally biased towards "O"."""
    import shutil

    from transformers import BertConfig

    from bioprune.exits import ExitHeads

    shutil.copytree(tiny_model_dir, target, dirs_exist_ok=True)
    config = BertConfig.from_pretrained(str(target))
    torch.manual_seed(1)
    heads = ExitHeads([1, 2], config.hidden_size, config.num_labels)
    if outside_bias is not None:
        with torch.no_grad():
            for head in heads.heads.values():
                head.bias.zero_()
                head.bias[LABEL_TO_ID["O"]] = outside_bias
    heads.save(target)
    return target


@pytest.fixture(scope="session")
def pruning_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model plus randomly initialised exit heads after layers 1 and 2."""
    return _model_dir_with_exit_heads(tiny_model_dir, tmp_path_factory.mktemp("tiny-pruning"), None)


@pytest.fixture(scope="session")
def outside_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model plus exit heads at [1, 2] whose bias favours "O" by 8 logits (p(O) ~ 0.999),
    so the rule controller finds most tokens prunable; the final classifier stays random."""
    return _model_dir_with_exit_heads(tiny_model_dir, tmp_path_factory.mktemp("tiny-outside"), 8.0)


@pytest.fixture(scope="session")
def default_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A random 4-layer tiny model with what DEFAULT prunes with: an exit head after layer 3 (and 1, 2)
    and a learned controller (random), so every face runs the default itself, not its dense fallback."""
    import shutil

    from transformers import BertConfig, BertForTokenClassification

    from bioprune.controllers import LearnedController
    from bioprune.exits import ExitHeads

    target = tmp_path_factory.mktemp("tiny-default")
    shutil.copytree(tiny_model_dir, target, dirs_exist_ok=True)
    config = BertConfig.from_pretrained(str(target))
    config.num_hidden_layers = 4
    torch.manual_seed(2)
    BertForTokenClassification(config).eval().save_pretrained(str(target), safe_serialization=True)
    ExitHeads(sorted({1, 2, *DEFAULT.prune_layers}), config.hidden_size, config.num_labels).save(target)  # + rule's
    LearnedController(config.num_labels + 8).save(target)  # controller_features: exit probabilities + 8 signals
    return target


# the pruning fixtures' config: both pruning points, recovery on; fp32, so that it compares with DENSE
RECOVERING = PruningConfig(recovery=True, aggressiveness=1.0, prune_layers=(1, 2), precision="fp32")


@pytest.fixture(scope="session")
def pruning_engine(pruning_model_dir) -> PruningEngine:
    return PruningEngine.from_pretrained(pruning_model_dir, config=RECOVERING)


@pytest.fixture(scope="session")
def outside_engine(outside_model_dir) -> PruningEngine:
    """Engine over the O-biased exit heads; tests switch configs with ``with_config``."""
    return PruningEngine.from_pretrained(outside_model_dir, config=RECOVERING)


# --- app fixtures (tests/test_app*.py): the shipped model, the built app, one launched server -----

@pytest.fixture(scope="session")
def shipped_engine() -> PruningEngine:
    """The shipped model (dense config), loaded once for every app test."""
    return PruningEngine.from_pretrained()


@pytest.fixture(scope="session")
def app_output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-outputs")


@pytest.fixture(scope="session")
def built_app(shipped_engine, app_output_dir):
    """The Gradio app over the shipped model, built (queue set up) but not launched."""
    pytest.importorskip("gradio", reason="the app tests need gradio: pip install '.[test]'")
    from bioprune.app.ui import build_app

    return build_app(shipped_engine, output_dir=app_output_dir)


@pytest.fixture(scope="session")
def app_url(built_app):
    """The app served in-process on a free local port; closed when the session ends."""
    import socket

    from bioprune.app.ui import launch

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url, _ = launch(built_app, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
                       quiet=True, inbrowser=False, share=False)
    yield url.rstrip("/")
    built_app.close()


# --- helpers the test modules share (``from conftest import ...``) ------------------------------

def label_probs(engine: PruningEngine, encoded, batch_size: int = 16) -> list:
    """Per document, the (T, C) label probabilities ``engine.run`` gives (its traces dropped)."""
    return [probs for probs, _ in engine.run(encoded, batch_size=batch_size)]


def first_window_batch(engine: PruningEngine, texts: list[str]):
    """(input_ids, attention_mask, special) for the first window of each text, right-padded."""
    cls_id, sep_id = engine.tokenizer.cls_token_id, engine.tokenizer.sep_token_id
    return engine.batch_inputs([window_input_ids(doc, doc.windows[0], cls_id, sep_id) for doc in engine.encode(texts)])


def entity_tuples(annotation) -> list[tuple[int, int, str, str]]:
    return [(e.start, e.end, e.label, e.text) for e in annotation.entities]


def docs_in(records) -> list[Document]:
    return [r for r in records if isinstance(r, Document)]


def errors_in(records) -> list[RecordError]:
    return [r for r in records if isinstance(r, RecordError)]


def annotate_cli(model_dir, inputs, output, *extra) -> int:
    """``bioprune annotate INPUTS --output OUTPUT --model MODEL_DIR --quiet EXTRA`` in this process: its exit status."""
    from bioprune.cli import main

    return main(["annotate", *map(str, inputs), "--output", str(output), "--model", str(model_dir), "--quiet",
                 *map(str, extra)])


def spacy_ner(model, *pipes: str, **config):
    """A blank English spaCy pipeline: ``pipes``, then ``bioprune_ner`` on ``model`` with ``config``."""
    import spacy

    nlp = spacy.blank("en")
    for name in pipes:
        nlp.add_pipe(name)
    nlp.add_pipe("bioprune_ner", config={"model": str(model), **config})
    return nlp


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_error_line(capsys, *expected: str) -> str:
    """The CLI's stderr is one ``bioprune: error:`` line holding each of ``expected``; returns it."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("bioprune: error: ") and "\n" not in err, err
    for text in expected:
        assert text in err, err
    return err
