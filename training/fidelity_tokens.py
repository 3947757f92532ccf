"""Where pruning's disagreement with the dense model comes from, token by token, on unlabelled text.

    python -m training.fidelity_tokens --output results/fidelity_tokens.json [--half first] [--limit-docs N]

Each setting runs on the same MEDLINE abstracts as the exact dense fp32 model (the reference) and
every content token's label (argmax) is compared with the reference's: separately for the tokens
that ran every layer ("kept") and for those that left at a pruning point (their label is the exit
head's). For the changed tokens it reports how sure the *dense* model itself was of its label
(its top probability), and for whole abstracts how many hold at least one changed token. Two
recovery bounds follow from the entities: the share of abstracts that would have to be re-run
dense (exact: the layers before the first pruning point ran on every token) to reach an agreement
of ``--target-agreement``, taking them in the best possible order (most changed entities first:
the oracle) and in the order of a signal the engine has at run time (the lowest top probability
of any kept token). Pruning settings run in fp32, so precision's own share is not mixed in; the
dense bf16 and int8 rows show that share alone.

The first MEDLINE half is the default (settings are chosen there; the second half stays held out
for the fidelity report, docs/pruning.md, "Where the disagreement sits").
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from bioprune.config import DENSE, PruningConfig
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.evaluation import mention_scores, span_keys
from bioprune.labels import decode_entities
from bioprune.types import flops_saved_ratio
from training.analysis.common import (MEDLINE_SLICE, command_line, parse_dataclass,
                                      medline_halves, write_json_atomic)

logger = logging.getLogger("fidelity_tokens")

# (name, config) of each setting compared with dense fp32: pruning in fp32, without recovery, each
# controller at its operating point unless λ and the layers are named.
_FP32 = {"precision": "fp32", "recovery": False, "link": False}
SETTINGS: tuple[tuple[str, PruningConfig], ...] = (
    ("dense bf16", replace(DENSE, precision="bf16")),
    ("dense int8", replace(DENSE, precision="int8")),
    ("rule default", PruningConfig(controller="rule", **_FP32)),
    ("MLP λ=6 after layers 1 and 2", PruningConfig(controller="mlp", aggressiveness=6.0, prune_layers=(1, 2),
                                                    frozen_context=False, **_FP32)),  # the MLP's point before issue 16
    ("MLP λ=0.5 after layer 2, frozen context", PruningConfig(controller="mlp", aggressiveness=0.5, prune_layers=(2,),
                                                               frozen_context=True, **_FP32)),
    ("MLP λ=1 after layer 4, frozen context", PruningConfig(controller="mlp", aggressiveness=1.0, prune_layers=(4,),
                                                             frozen_context=True, **_FP32)),
)
UNSURE_PROB = 0.9  # a dense label below this top probability counts as one the dense model was unsure of


@dataclass(frozen=True)
class TokenFidelityArgs:
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (controller.safetensors beside it for the MLP rows)
    unlabelled: str = str(MEDLINE_SLICE)  # PubMed XML (the MEDLINE slice)
    half: Literal["first", "second"] = "first"  # MEDLINE half (the second is held out for the fidelity report)
    limit_docs: int = 0  # 0: every abstract of the half
    target_agreement: float = 0.97  # agreement the recovery bounds must reach
    batch_size: int = 16  # windows per forward pass
    threads: int = 2  # torch intra-op threads
    output: str = "results/fidelity_tokens.json"  # results JSON


@dataclass(frozen=True)
class DocumentOutput:
    """One abstract under one setting: (T,) labels and top probabilities, (T,) True where the token
    left at a pruning point, the entities as (start, end, type), and the FLOPs spent and the dense
    model's (equal when nothing was pruned)."""

    labels: np.ndarray
    confidence: np.ndarray
    pruned: np.ndarray
    entities: frozenset
    flops: float = 0.0
    dense_flops: float = 0.0


def token_changes(reference: list[DocumentOutput], outputs: list[DocumentOutput]) -> dict:
    """Token-label changes against the reference, split by kept/pruned, with the reference's
    confidence on the changed tokens and the number of abstracts holding a change."""
    counts = {"kept": [0, 0], "pruned": [0, 0]}  # [tokens, changed]
    changed_conf, docs_changed = [], 0
    for ref, out in zip(reference, outputs):
        changed = out.labels != ref.labels  # (T,)
        for name, mask in (("kept", ~out.pruned), ("pruned", out.pruned)):
            counts[name][0] += int(mask.sum())
            counts[name][1] += int((changed & mask).sum())
        changed_conf.append(ref.confidence[changed])
        docs_changed += bool(changed.any())
    conf = np.concatenate(changed_conf) if changed_conf else np.zeros(0)
    n_changed = counts["kept"][1] + counts["pruned"][1]
    return {**{f"{name}_tokens": n for name, (n, _) in counts.items()},
            **{f"{name}_tokens_changed": c for name, (_, c) in counts.items()},
            **{f"{name}_changed_ratio": c / n if n else 0.0 for name, (n, c) in counts.items()},
            "changed_tokens": n_changed,
            "changed_dense_unsure_ratio": float((conf < UNSURE_PROB).mean()) if n_changed else 0.0,
            "documents_with_change_ratio": docs_changed / len(reference) if reference else 0.0,
            "flops_saved_ratio": flops_saved_ratio(sum(o.flops for o in outputs), sum(o.dense_flops for o in outputs))}


def agreement(reference: list[DocumentOutput], outputs: list[DocumentOutput]) -> float:
    """Exact-match micro F1 of ``outputs``' entities against ``reference``'s."""
    def keys(docs):
        return span_keys({str(i): list(d.entities) for i, d in enumerate(docs)})
    return mention_scores(keys(reference), keys(outputs))["micro"]["f1"]


def recovery_needed(reference: list[DocumentOutput], outputs: list[DocumentOutput], order: list[int],
                    target: float) -> float:
    """Share of abstracts that, re-run dense in ``order``, lift the agreement to ``target`` (all of
    them re-run is the reference itself: 1.0 at most)."""
    current = list(outputs)
    for k, i in enumerate([None, *order]):
        if i is not None:
            current[i] = reference[i]
        if agreement(reference, current) >= target:
            return k / len(outputs) if outputs else 0.0
    return 1.0


def recovery_orders(reference: list[DocumentOutput], outputs: list[DocumentOutput]) -> dict[str, list[int]]:
    """Abstracts in the oracle's order (most changed entities first) and in the run-time signal's
    (lowest top probability of a kept token first)."""
    changed = [len(r.entities ^ o.entities) for r, o in zip(reference, outputs)]
    unsure = [float(o.confidence[~o.pruned].min()) if (~o.pruned).any() else 1.0 for o in outputs]
    n = range(len(outputs))
    return {"oracle": sorted(n, key=lambda i: -changed[i]), "lowest_kept_confidence": sorted(n, key=lambda i: unsure[i])}


def run_setting(engine: PruningEngine, texts: list[str], encoded, batch_size: int) -> list[DocumentOutput]:
    """The engine's labels, confidences, pruned tokens and entities (after the model's
    decoding and post-processing passes, without linking) for each text."""
    out = []
    for text, enc, (probs, trace) in zip(texts, encoded, engine.run(encoded, batch_size=batch_size)):
        pruned = np.zeros(len(probs), dtype=bool)
        pruned[[token.position for token in (trace.pruned_tokens if trace is not None else ())]] = True
        entities = engine.postprocess.apply(
            text, decode_entities(text, enc.offsets, enc.word_ids, probs, engine.postprocess.decoding))
        out.append(DocumentOutput(labels=probs.argmax(-1), confidence=probs.max(-1), pruned=pruned,
                                  entities=frozenset((e.start, e.end, e.label) for e in entities),
                                  flops=trace.flops if trace is not None else 0.0,
                                  dense_flops=trace.dense_flops if trace is not None else 0.0))
    return out


def main(argv=None) -> dict:
    args = parse_dataclass(TokenFidelityArgs, __doc__, argv)
    torch.set_num_threads(args.threads)
    docs = medline_halves(args.unlabelled)[args.half == "second"]
    texts = [d.text for d in docs[: args.limit_docs or None]]
    engine = PruningEngine.from_pretrained(args.model, config=replace(DENSE, link=False))
    encoded = engine.encode(texts)
    reference = run_setting(engine, texts, encoded, args.batch_size)
    rows = []
    for name, config in tqdm(SETTINGS, desc="settings", unit="setting"):
        try:
            outputs = run_setting(engine.with_config(replace(config, link=False)), texts, encoded, args.batch_size)
        except ValueError as err:  # e.g. int8 without a calibration, mlp without a controller
            logger.warning("%s skipped: %s", name, err)
            continue
        orders = recovery_orders(reference, outputs)
        rows.append({"name": name, "config": asdict(config),
                     "agreement": agreement(reference, outputs), **token_changes(reference, outputs),
                     "recovery_needed_ratio": {k: recovery_needed(reference, outputs, order, args.target_agreement)
                                               for k, order in orders.items()}})
        logger.info("%s: agreement %.4f", name, rows[-1]["agreement"])
    result = {"command": command_line("-m training.fidelity_tokens", argv), "model": args.model,
              "unlabelled": args.unlabelled, "half": args.half, "n_documents": len(texts),
              "unsure_prob": UNSURE_PROB, "target_agreement": args.target_agreement, "rows": rows}
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
