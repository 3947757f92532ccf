"""Choose the document-level consistency passes on the development set (never on test).

    python training/choose_postprocess.py --model runs/dev-minilm \
        --gold DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output results/postprocess_dev.json

The model must not have seen the gold file: use the train-only run of ``training/finetune.py``.
Predicts once (dense), then scores the raw predictions and each combination of
:func:`bioprune.postprocess.propagate_mentions` and :func:`bioprune.postprocess.expand_abbreviations`
with the BioCreative exact-match measure. The shipped engine applies the passes that help here.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bioprune.config import DENSE  # noqa: E402
from bioprune.engine import PruningEngine  # noqa: E402
from bioprune.evaluation import evaluate_predictions, word_offsets  # noqa: E402
from bioprune.io.pubtator import read_pubtator  # noqa: E402
from bioprune.postprocess import expand_abbreviations, propagate_mentions  # noqa: E402
from bioprune.types import ENTITY_TYPES  # noqa: E402

VARIANTS = {
    "none": (),
    "propagate": (propagate_mentions,),
    "abbreviations": (expand_abbreviations,),
    "propagate+abbreviations": (propagate_mentions, expand_abbreviations),
}


@dataclass(frozen=True)
class ChooseArgs:
    model: str  # a model directory that never saw ``gold`` (the train-only run)
    gold: str  # PubTator development file
    output: str = "results/postprocess_dev.json"
    threads: int = 2


def main(args: ChooseArgs) -> dict:
    torch.set_num_threads(args.threads)
    engine = PruningEngine.from_pretrained(args.model, config=DENSE, postprocess=())
    docs = read_pubtator(args.gold)
    annotations = engine.annotate([d.to_document() for d in docs])
    encoded = engine.encode([d.text for d in docs])
    gold = {d.pmid: [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES] for d in docs}
    words = {d.pmid: word_offsets(enc.offsets, enc.word_ids) for d, enc in zip(docs, encoded)}
    variants = {}
    for name, passes in VARIANTS.items():
        pred = {}
        for a in annotations:
            entities = list(a.entities)
            for fn in passes:
                entities = fn(a.text, entities)
            pred[a.id] = [(e.start, e.end, e.label) for e in entities]
        scores = evaluate_predictions(gold, pred, words)
        variants[name] = {t: scores["mention"][t] for t in scores["mention"]}
    best = max(variants, key=lambda n: variants[n]["micro"]["f1"])
    result = {"args": asdict(args), "command": "python training/choose_postprocess.py " + " ".join(sys.argv[1:]),
              "n_documents": len(docs), "variants": variants, "best": best}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    for name, s in variants.items():
        print(f"{name:26s} F1 {s['micro']['f1']:.4f}  Chemical {s['Chemical']['f1']:.4f}  Disease {s['Disease']['f1']:.4f}")
    print(f"best on dev: {best}")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--output", default=ChooseArgs.output)
    parser.add_argument("--threads", type=int, default=ChooseArgs.threads)
    main(ChooseArgs(**vars(parser.parse_args())))
