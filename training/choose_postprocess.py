"""Choose the tag decoding and the document-level consistency passes on the development set (never on test).

    python -m training.choose_postprocess --model runs/dev-minilm \
        --gold DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output results/postprocess_dev.json

The model must not have seen the gold file: use a train-only run. Predicts label probabilities once
(dense fp32), then scores, with the BioCreative exact-match measure, every pairing of a decoding
(:class:`bioprune.labels.Decoding`: the per-word argmax, or the best valid BIO sequence with a bias
toward O) and a combination of :func:`bioprune.postprocess.propagate_mentions` and
:func:`bioprune.postprocess.expand_abbreviations`. The best pairing is written as ``choice``: the
content of the ``postprocess.json`` that the engine reads beside the model it was chosen for.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bioprune.config import DENSE
from bioprune.engine import PruningEngine
from bioprune.evaluation import evaluate_predictions, word_offsets
from bioprune.io.pubtator import read_pubtator
from bioprune.labels import ARGMAX, Decoding, decode_entities
from bioprune.postprocess import apply_passes, postprocess_settings
from bioprune.types import ENTITY_TYPES

VARIANTS = {
    "none": (),
    "propagate": ("propagate",),
    "abbreviations": ("abbreviations",),
    "propagate+abbreviations": ("propagate", "abbreviations"),
}
DECODINGS = {"argmax": ARGMAX, **{f"viterbi, O bias {b:g}": Decoding(viterbi=True, outside_log_bias=b)
                                  for b in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)}}


@dataclass(frozen=True)
class ChooseArgs:
    model: str  # a model directory that never saw ``gold`` (the train-only run)
    gold: str  # PubTator development file
    output: str = "results/postprocess_dev.json"
    threads: int = 2


def main(args: ChooseArgs) -> dict:
    torch.set_num_threads(args.threads)
    engine = PruningEngine.from_pretrained(args.model, config=DENSE, postprocess=(), decoding=ARGMAX)
    docs = read_pubtator(args.gold)
    encoded = engine.encode([d.text for d in docs])
    probs = [p for p, _ in engine.run(encoded)]  # (T, C) per document
    gold = {d.pmid: [(m.start, m.end, m.type) for m in d.mentions if m.type in ENTITY_TYPES] for d in docs}
    words = {d.pmid: word_offsets(enc.offsets, enc.word_ids) for d, enc in zip(docs, encoded)}
    decodings = {}
    for decoding_name, decoding in DECODINGS.items():
        decoded = [decode_entities(d.text, enc.offsets, enc.word_ids, p, decoding)
                   for d, enc, p in zip(docs, encoded, probs)]
        variants = decodings[decoding_name] = {}
        for name, passes in VARIANTS.items():
            pred = {}
            for d, entities in zip(docs, decoded):
                pred[d.pmid] = [(e.start, e.end, e.label) for e in apply_passes(d.text, entities, passes)]
            scores = evaluate_predictions(gold, pred, words)
            variants[name] = {t: scores["mention"][t] for t in scores["mention"]}
    best_decoding, best = max(((dn, n) for dn, vs in decodings.items() for n in vs),
                              key=lambda key: decodings[key[0]][key[1]]["micro"]["f1"])
    result = {"args": asdict(args), "command": "python -m training.choose_postprocess " + " ".join(sys.argv[1:]),
              "n_documents": len(docs), "variants": decodings["argmax"], "decodings": decodings,
              "best": best, "best_decoding": best_decoding,
              "choice": postprocess_settings(VARIANTS[best], DECODINGS[best_decoding])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    for decoding_name, variants in decodings.items():
        for name, s in variants.items():
            print(f"{decoding_name:22s} {name:26s} F1 {s['micro']['f1']:.4f}  Chemical {s['Chemical']['f1']:.4f}  "
                  f"Disease {s['Disease']['f1']:.4f}")
    print(f"best on dev: {best_decoding}, {best}: postprocess.json {json.dumps(result['choice'])}")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--output", default=ChooseArgs.output)
    parser.add_argument("--threads", type=int, default=ChooseArgs.threads)
    main(ChooseArgs(**vars(parser.parse_args())))
