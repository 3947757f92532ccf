"""Score models and their ensemble on gold PubTator: is an ensemble a stronger teacher than one model?

    python -m training.ensemble --models runs/mc2a-chem runs/bc5-only \
        --gold DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output runs/ensemble_dev.json

Why: distillation (issue 17; training/multicorpus.py ``--teachers``) pays only if the teachers beat
the student they start from; the usual teacher is an ensemble over seeds and data mixes (Hinton et
al., 2015; Lakshminarayanan et al., 2017). This scores each model alone and the ensemble, which
averages the models' per-token label probabilities before decoding, with the same engine, decoding
and scorer as the dev curves (training/multicorpus.py ``score_dev``: dense, the engine's default
precision, no post-processing passes unless ``--postprocess``). Use it on dev only; the models must
share a tokenizer.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bioprune.engine import ModelBundle, PruningEngine, load_model
from bioprune.errors import InputError
from bioprune.evaluation import evaluate_predictions, word_offsets
from bioprune.io.pubtator import read_pubtator
from bioprune.labels import decode_entities
from bioprune.postprocess import PASSES, Postprocess
from training.analysis.common import command_line, gold_spans, parse_dataclass, write_json_atomic
from training.multicorpus import default_base


@dataclass(frozen=True)
class EnsembleArgs:
    models: tuple[str, ...]  # model folders (one tokenizer)
    gold: str  # gold PubTator file (dev)
    output: str  # results JSON
    also: tuple[str, ...] = ()  # model folders scored alone, not in the ensemble
    postprocess: tuple[Literal[PASSES], ...] = ()  # document-level passes after decoding (default none, as the dev curves)


def dense_engine(path: str) -> PruningEngine:
    """The model at ``path`` in the engine with the default config, as score_dev scores it."""
    tokenizer, model = load_model(path)
    return PruningEngine(ModelBundle(model, tokenizer))


def ensemble_spans(engines: list[PruningEngine], texts: list[str], postprocess: Postprocess = Postprocess(),
                   members: int | None = None) -> tuple[list, list[list]]:
    """Per model and for the ensemble of the first ``members`` models (all by default; last), the
    predicted ``(start, end, type)`` spans of each text; and the shared encoding (for word offsets)."""
    encoded = engines[0].encode(texts)
    per_model = [[probs for probs, _ in engine.run(encoded)] for engine in engines]  # each doc: (T, C)
    averaged = [np.mean(doc_probs, axis=0) for doc_probs in zip(*per_model[:members])]
    def spans(text, enc, probs) -> list[tuple[int, int, str]]:
        return [(e.start, e.end, e.label) for e in postprocess.apply(text, decode_entities(text, enc.offsets, enc.word_ids, probs))]

    return encoded, [[spans(*doc) for doc in zip(texts, encoded, probs_by_doc)] for probs_by_doc in [*per_model, averaged]]


def score(models: list[str], gold_path: str, passes=(), also: list[str] = ()) -> dict:
    """Mention-level and seqeval scores of each model and of their ensemble on ``gold_path``, after
    ``passes`` ("gazetteer" tags the first model's names); the models ``also`` are scored alone,
    outside the ensemble (e.g. a student of it)."""
    members = len(models)
    models = [*models, *also]
    engines = [dense_engine(m) for m in models]
    vocab = engines[0].tokenizer.get_vocab()
    for m, engine in zip(models, engines):
        if engine.tokenizer.get_vocab() != vocab:
            raise InputError(m, "its tokenizer differs from the first model's; fix: ensemble models of one base")
    docs = read_pubtator(gold_path)
    try:
        postprocess = Postprocess(passes, gazetteer=Postprocess.load(models[0]).gazetteer)
    except ValueError as err:
        raise InputError(models[0], str(err)) from None
    encoded, spans = ensemble_spans(engines, [d.text for d in docs], postprocess, members)
    gold = gold_spans(docs)
    words = {d.pmid: word_offsets(enc.offsets, enc.word_ids) for d, enc in zip(docs, encoded)}
    results = {}
    for name, system in zip([*models, "ensemble"], spans):
        scores = evaluate_predictions(gold, {d.pmid: s for d, s in zip(docs, system)}, words)
        results[name] = {"mention": scores["mention"], "seqeval_f1": scores["seqeval"]["micro"]["f1"]}
    return results


def recipe(folder: str) -> dict:
    """How a model folder was trained, from its ``training_run.json`` (training/multicorpus.py or
    finetune.py); {} if it has none."""
    path = Path(folder) / "training_run.json"
    if not path.is_file():
        return {}
    args = json.loads(path.read_text())["args"]
    names = lambda key: [Path(p).name for p in args.get(key) or []]  # noqa: E731
    base = "the base model" if Path(args["base"]) == Path(default_base()) else Path(args["base"]).name
    return {"train": names("train"), "base": base, "epochs": args["epochs"], "seed": args.get("seed"),
            "learning_rate": args["learning_rate"], "type_maps": args.get("type_maps") or [],
            "teachers": names("teachers"), "distill_weight": args.get("distill_weight", 0.0),
            "distill_temperature": args.get("distill_temperature", 1.0), "unlabelled": names("unlabelled")}


def main(argv=None) -> int:
    args = parse_dataclass(EnsembleArgs, __doc__, argv)
    try:
        results = score(args.models, args.gold, args.postprocess, args.also)
    except InputError as err:
        print(f"ensemble: error: {err}", file=sys.stderr)
        return 2
    out = {"command": command_line("-m training.ensemble", argv),
           "gold": args.gold, "postprocess": args.postprocess, "systems": results,
           "ensemble_of": args.models, "recipes": {m: recipe(m) for m in [*args.models, *args.also]}}
    write_json_atomic(args.output, out)
    for name, r in results.items():
        m = r["mention"]
        print(f"{name}: micro {m['micro']['f1']:.4f}  Chemical {m['Chemical']['f1']:.4f}  Disease {m['Disease']['f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
