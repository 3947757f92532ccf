"""Calibrate precision int8 for a model: the input ranges its smoothing needs, and the choice of
smoothing strength and of the layers kept in bf16, by entity agreement with dense fp32.

    python -m training.calibrate_int8 --data ../shared/data --write-ranges \
        --output results/int8_calibration.json

Calibration text is diverse and unlabelled-as-used: the first half of the MEDLINE slice, BC5CDR
train and a seeded sample of each corpus in DATA/corpora — never the second MEDLINE half (where
fidelity is measured) nor BC5CDR dev/test. The dense fp32 model runs over it while every encoder
Linear layer records the largest |input| of each channel (:func:`bioprune.int8.recording_input_ranges`);
``--write-ranges`` saves them beside the model (``int8_calibration.safetensors``), where
``PruningEngine.from_pretrained`` finds them.

Then each (alpha, layers kept bf16) candidate, and no smoothing, is scored by exact-match F1 of its
entities against dense fp32's on the first MEDLINE half: the choice is the best; the library's
defaults (:data:`bioprune.int8.SMOOTHING_ALPHA`, :data:`bioprune.int8.KEEP_BF16`) should name it,
and the script warns when they do not.

Last, the encoder layers precision "mixed" keeps in bf16 (``"layers"`` in the output), on the
default config (the pruning every face runs) on the same text: starting from every layer int8, the layer
whose return to bf16 raises agreement the most goes back, one at a time, until agreement is within
:data:`bioprune.int8.MIXED_TOLERANCE_POINTS` of the bf16 default's. ``--write-ranges`` saves the
choice with the ranges (:data:`bioprune.int8.BF16_LAYERS_KEY`).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from bioprune import int8
from bioprune.config import DEFAULT, DENSE, PruningConfig
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import mention_scores
from bioprune.io.pubtator import read_pubtator
from training.analysis.common import (DATA_DIR, command_line, parse_dataclass,
                                     medline_halves, write_json_atomic)

logger = logging.getLogger("calibrate_int8")

KEEP_CHOICES = {"output.dense": frozenset({"output.dense"}), "none": frozenset()}


@dataclass(frozen=True)
class CalibrateArgs:
    data: str = str(DATA_DIR)  # the shared data folder (pubmed/, bc5cdr/, corpora/)
    model: str = str(DEFAULT_MODEL_DIR)  # model directory; --write-ranges saves beside it
    per_corpus_docs: int = 40  # sampled documents per corpus file
    alphas: tuple[float, ...] = (0.5, 0.75, 0.85, 0.95)  # candidate smoothing strengths
    keep: tuple[Literal["none", "output.dense"], ...] = ("none", "output.dense")  # candidate sets of Linear layers kept in bf16
    write_ranges: bool = False  # save the ranges beside the model
    seed: int = 13  # corpus sampling
    threads: int = 2  # torch threads
    output: str = "results/int8_calibration.json"  # results JSON


def calibration_texts(data: Path, per_corpus_docs: int, seed: int) -> dict[str, list[str]]:
    """Source name -> texts: the first MEDLINE half, BC5CDR train and a sample of each corpus file."""
    rng = random.Random(seed)
    out = {"medline_first_half": [d.text for d in medline_halves(data / "pubmed" / "medline16n0902.xml.gz")[0]],
           "bc5cdr_train": [d.text for d in read_pubtator(data / "bc5cdr" / "CDR_TrainingSet.PubTator.txt")]}
    for path in sorted((data / "corpora").glob("*.PubTator")):
        texts = [d.text for d in read_pubtator(path)]
        out[path.stem] = rng.sample(texts, min(per_corpus_docs, len(texts)))
    return out


def entity_keys(annotations) -> list[tuple]:
    return [(i, e.start, e.end, e.label) for i, a in enumerate(annotations) for e in a.entities]


def mixed_layers(engine: PruningEngine, ranges: dict[str, torch.Tensor], texts: list[str], dense: list[tuple]) -> dict:
    """The layers precision "mixed" keeps bf16 (module docstring), with every step's agreement."""
    encoder = engine.encoder
    bf16 = engine.with_config(replace(DEFAULT, precision="bf16"))
    quantized = engine.with_config(replace(DEFAULT, precision="int8"))
    pruned = encoder.runs_pruned_layers(quantized.config)
    source = encoder.pruned_model if pruned else encoder.model

    def agreement(kept: tuple[int, ...]) -> float:
        int8_layers = [i for i in range(len(encoder.layers)) if i not in kept]
        encoder.use_copy("int8", int8.int8_copy(source, ranges, layers=int8_layers), pruned=pruned)
        return mention_scores(dense, entity_keys(quantized.annotate(texts)))["micro"]["f1"]

    target = mention_scores(dense, entity_keys(bf16.annotate(texts)))["micro"]["f1"]
    kept: tuple[int, ...] = ()
    steps = [{"kept_bf16": [], "agreement_f1": agreement(kept)}]
    while steps[-1]["agreement_f1"] < target - int8.MIXED_TOLERANCE_POINTS / 100 and len(kept) < len(encoder.layers):
        tried = {i: agreement(tuple(sorted(kept + (i,)))) for i in range(len(encoder.layers)) if i not in kept}
        best = max(tried, key=tried.get)
        kept = tuple(sorted(kept + (best,)))
        steps.append({"kept_bf16": list(kept), "agreement_f1": tried[best], "tried": {str(i): f for i, f in tried.items()}})
        logger.info("mixed: layers %s bf16, agreement %.4f (bf16 default %.4f)", kept, tried[best], target)
    return {"config": "default", "bf16_agreement_f1": target, "tolerance_points": int8.MIXED_TOLERANCE_POINTS,
            "steps": steps, "kept_bf16": list(kept)}


def main(argv=None) -> dict:
    args = parse_dataclass(CalibrateArgs, __doc__, argv)
    torch.set_num_threads(args.threads)
    engine = PruningEngine.from_pretrained(args.model, config=DENSE)
    sources = calibration_texts(Path(args.data), args.per_corpus_docs, args.seed)
    with int8.recording_input_ranges(engine.encoder.model) as ranges:
        for name, texts in sources.items():
            logger.info("calibrating on %s (%d texts)", name, len(texts))
            engine.annotate(texts)
    choice_texts = sources["medline_first_half"]
    dense = entity_keys(engine.annotate(choice_texts))
    quantized = engine.with_config(PruningConfig(controller="none", precision="int8"))
    candidates = [(None, "output.dense")] + [(a, k) for a in args.alphas for k in args.keep]
    rows = []
    for alpha, keep in candidates:
        copy = int8.int8_copy(engine.encoder.model, None if alpha is None else ranges, KEEP_CHOICES[keep],
                              alpha or int8.SMOOTHING_ALPHA)
        quantized.encoder.use_copy("int8", copy)
        scores = mention_scores(dense, entity_keys(quantized.annotate(choice_texts)))
        rows.append({"alpha": alpha, "kept_bf16": keep, "agreement_f1": scores["micro"]["f1"],
                     "agreement_f1_per_type": {t: s["f1"] for t, s in scores.items() if t != "micro"}})
        logger.info("alpha %s, kept bf16 %s: agreement %.4f", alpha, keep, scores["micro"]["f1"])
    best = max((r for r in rows if r["alpha"] is not None), key=lambda r: r["agreement_f1"])
    if (best["alpha"], KEEP_CHOICES[best["kept_bf16"]]) != (int8.SMOOTHING_ALPHA, int8.KEEP_BF16):
        logger.warning("the best candidate (alpha %s, kept %s) is not the library's default (alpha %s, kept %s)",
                       best["alpha"], best["kept_bf16"], int8.SMOOTHING_ALPHA, sorted(int8.KEEP_BF16))
    layers = mixed_layers(engine, ranges, choice_texts, dense)
    ranges[int8.BF16_LAYERS_KEY] = torch.tensor(layers["kept_bf16"], dtype=torch.int64)
    if args.write_ranges:
        logger.info("wrote %s", int8.save_calibration(ranges, args.model))
    result = {"command": command_line("-m training.calibrate_int8", argv), "model": args.model,
              "calibration_texts": {k: len(v) for k, v in sources.items()},
              "choice_texts": f"medline_first_half ({len(choice_texts)} citations)",
              "wrote_ranges": args.write_ranges, "candidates": rows, "best": best,
              "library_default": {"alpha": int8.SMOOTHING_ALPHA, "kept_bf16": sorted(int8.KEEP_BF16)},
              "layers": layers}
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
