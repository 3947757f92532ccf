"""The spaCy CNN peer: a spaCy NER pipeline (the `ner` efficiency config, scispaCy's architecture for
en_ner_bc5cdr_md) trained here on BC5CDR train+dev, as the shipped model is, for benchmark_peers.py.

    python -m training.train_spacy_peer --data ../shared/data/bc5cdr --output runs/spacy-peer [--max-epochs 20]

Gold mentions become spaCy entities through ``Doc.char_span(alignment_mode="expand")`` (spaCy's
tokens are coarser than the gold offsets in a few places); overlapping mentions keep the longest.
The training development set is the last 10% of the training documents (spaCy needs one to pick
its best model); ``runs/spacy-peer/model-best`` is the pipeline. Not shipped: it is a yardstick.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.util import filter_spans

from bioprune.io.pubtator import read_pubtator
from bioprune.types import ENTITY_TYPES
from training.analysis.common import parse_dataclass

TRAINING_FILES = ("CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt")


@dataclass(frozen=True)
class SpacyPeerArgs:
    data: str  # the bc5cdr/ folder
    output: str = "runs/spacy-peer"  # spaCy's training folder (the pipeline: model-best)
    max_epochs: int = 20  # spaCy's training.max_epochs


def to_docs(nlp, documents) -> list:
    """spaCy Docs of PubTator documents with their Chemical/Disease mentions as entities."""
    out = []
    for d in documents:
        doc = nlp.make_doc(d.text)
        spans = [doc.char_span(m.start, m.end, label=m.type, alignment_mode="expand")
                 for m in d.mentions if m.type in ENTITY_TYPES]
        doc.ents = filter_spans([s for s in spans if s is not None])
        out.append(doc)
    return out


def main(argv=None) -> None:
    args = parse_dataclass(SpacyPeerArgs, __doc__, argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    documents = [d for name in TRAINING_FILES for d in read_pubtator(Path(args.data) / name)]
    docs = to_docs(nlp, documents)
    cut = int(0.9 * len(docs))
    DocBin(docs=docs[:cut]).to_disk(out / "train.spacy")
    DocBin(docs=docs[cut:]).to_disk(out / "dev.spacy")
    subprocess.run([sys.executable, "-m", "spacy", "init", "config", str(out / "config.cfg"), "--lang", "en",
                    "--pipeline", "ner", "--optimize", "efficiency", "--force"], check=True)
    subprocess.run([sys.executable, "-m", "spacy", "train", str(out / "config.cfg"), "--output", str(out),
                    "--paths.train", str(out / "train.spacy"), "--paths.dev", str(out / "dev.spacy"),
                    "--training.max_epochs", str(args.max_epochs), "--training.max_steps", "0",
                    "--nlp.batch_size", "64"], check=True)


if __name__ == "__main__":
    main()
