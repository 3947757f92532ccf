"""Train the learned pruning controller (a small MLP) and calibrate its threshold.

    python -m training.train_controller --model bioprune/assets/bc5cdr-minilm-l6 \
        --texts DATA/bc5cdr/CDR_TrainingSet.PubTator.txt \
        --unlabelled DATA/pubmed/medline16n0902.xml.gz --layers 1 2 3 4 --without-attention

Features are what the engine computes at a pruning point anyway (bioprune.controllers.
controller_features). Targets come from the dense model on the training texts: a token is
*unsafe* to prune if its exit label disagrees with the dense final label, or if it lies in or next
to a dense entity. The MLP learns p(unsafe) with a class-weighted BCE. The operating threshold is
calibrated on the first half of the MEDLINE slice (text the shipped model never saw) against the
dense model's own predictions: the largest threshold at which at most ``max_entity_pruned`` of the
dense entity tokens would be pruned. The second half is left for the fidelity report.

Writes ``controller.safetensors`` and ``controller.json`` (arguments, data md5s, calibration
curve, and held-out rates) into ``--model``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bioprune.controllers import LearnedController, attention_feature_columns, controller_features
from bioprune.layer import classify, embed, run_layer
from bioprune.engine import DEFAULT_MODEL_DIR, load_model
from bioprune.exits import ExitHeads
from bioprune.importance import neighbourhood_max, token_signals
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.io.pubtator import read_pubtator
from training.analysis.common import md5, parse_dataclass
from training.train_exits import content_batches

logger = logging.getLogger("train_controller")


@dataclass(frozen=True)
class ControllerArgs:
    model: str = str(DEFAULT_MODEL_DIR)  # model directory with exit heads; the controller is written into it
    texts: tuple[str, ...] = ()  # PubTator files: training texts (labels ignored; targets come from the dense model)
    unlabelled: tuple[str, ...] = ()  # PubMed XML: first half calibrates the threshold, second half held out
    layers: tuple[int, ...] = (1, 2, 3, 4)  # pruning points the controller serves (the MLP default prunes after 1 and 2)
    hidden: int = 32  # MLP width
    epochs: int = 8  # passes over the training tokens
    learning_rate: float = 2e-3  # Adam
    batch_tokens: int = 8192  # tokens per step
    max_entity_pruned: float = 0.002  # calibration: share of dense entity tokens the threshold may prune
    seed: int = 13
    threads: int = 2
    # Leave out the attention entropy and received attention: the layer before each pruning point
    # then runs fused attention (cheaper on CPU); docs/pruning.md compares both on dev.
    without_attention: bool = False


@torch.no_grad()
def collect(model, tokenizer, exit_heads: ExitHeads, texts: list[str], layers: tuple[int, ...],
            batch_size: int = 16) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per pruning point k: (features (N, F), unsafe targets (N,), dense entity (N,)) over content tokens."""
    out = {k: ([], [], []) for k in layers}
    n_layers = len(model.base_model.encoder.layer)
    for ids, valid, content in content_batches(tokenizer, texts, batch_size, "features"):
        n_real = valid.sum(1)
        positions = torch.arange(ids.size(1)).expand_as(ids)
        hidden, attn, feats, exits = embed(model, ids), None, {}, {}
        for j, layer in enumerate(model.base_model.encoder.layer):
            if j in out:
                logits = exit_heads(j, hidden)
                signals = token_signals(attn, logits, valid, hidden, positions, n_real, j / n_layers)
                feats[j], exits[j] = controller_features(signals), logits.argmax(-1)
            hidden, attn = run_layer(layer, hidden, valid, need_signals=(j + 1) in out)
        dense = classify(model, hidden).argmax(-1)  # (B, T)
        entity = (dense != 0) & content
        near_entity = entity | (neighbourhood_max(entity.float(), 1) > 0)
        for k in out:
            unsafe = (exits[k] != dense) | near_entity
            out[k][0].append(feats[k][content])
            out[k][1].append(unsafe[content].float())
            out[k][2].append(entity[content])
    return {k: tuple(torch.cat(x) for x in v) for k, v in out.items()}


def pool(data: dict, layers) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.cat([data[k][i] for k in layers]) for i in range(3))


def train(x: torch.Tensor, y: torch.Tensor, args: ControllerArgs, columns: list[int]) -> LearnedController:
    """x: (N, F) the selected feature ``columns`` of every training token; y: (N,) unsafe targets."""
    controller = LearnedController(x.size(1), args.hidden, columns, uses_attention=not args.without_attention)
    controller.mean.copy_(x.mean(0))
    controller.std.copy_(x.std(0).clamp(min=1e-4))
    opt = torch.optim.Adam(controller.mlp.parameters(), lr=args.learning_rate)
    pos_weight = ((1 - y).sum() / y.sum().clamp(min=1)).clamp(max=20)
    g = torch.Generator().manual_seed(args.seed)
    for _ in tqdm(range(args.epochs), desc="controller", unit="epoch"):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), args.batch_tokens):
            idx = order[i:i + args.batch_tokens]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                controller.unsafe_logit(x[idx]), y[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return controller.eval()


@torch.no_grad()
def rates(controller: LearnedController, x, y, entity, threshold: float) -> dict:
    prune = torch.sigmoid(controller.unsafe_logit(x)) <= threshold
    return {"threshold": threshold, "tokens_pruned": float(prune.float().mean()),
            "entity_tokens_pruned": float((prune & entity).sum() / entity.sum().clamp(min=1)),
            "unsafe_tokens_pruned": float((prune & (y > 0)).sum() / (y > 0).sum().clamp(min=1))}


def main(args: ControllerArgs) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tokenizer, model = load_model(args.model)
    exit_heads = ExitHeads.load(args.model)
    if exit_heads is None or any(k not in exit_heads.layers for k in args.layers):
        raise SystemExit(f"{args.model}: exit heads after layers {args.layers} needed (training/train_exits.py)")
    texts = [d.text for p in args.texts for d in read_pubtator(p)]
    medline = [d.text for p in args.unlabelled for d in iter_pubmed_xml(p)]
    half = len(medline) // 2
    x, y, _ = pool(collect(model, tokenizer, exit_heads, texts, args.layers), args.layers)
    dropped = attention_feature_columns(model.config.num_labels) if args.without_attention else ()
    columns = [c for c in range(x.size(1)) if c not in dropped]
    x = x[:, columns]
    controller = train(x, y, args, columns)
    calib = collect(model, tokenizer, exit_heads, medline[:half], args.layers)
    held = {k: (f[:, columns], t, e) for k, (f, t, e) in
            collect(model, tokenizer, exit_heads, medline[half:], args.layers).items()}
    cx, cy, ce = pool(calib, args.layers)
    cx = cx[:, columns]
    curve = [rates(controller, cx, cy, ce, t) for t in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)]
    ok = [r for r in curve if r["entity_tokens_pruned"] <= args.max_entity_pruned]
    threshold = max(r["threshold"] for r in ok) if ok else curve[0]["threshold"]
    controller.threshold.fill_(threshold)
    controller.save(args.model)
    result = {"args": asdict(args),
              "data": {p: md5(p) for p in list(args.texts) + list(args.unlabelled)},
              "n_features": x.size(1), "columns": columns, "n_train_tokens": len(x), "unsafe_rate_train": float(y.mean()),
              "threshold": threshold, "calibration_curve": curve,
              "held_out": {k: rates(controller, *held[k], threshold) for k in args.layers}}
    Path(args.model, "controller.json").write_text(json.dumps(result, indent=2))
    logger.info("threshold %.3f; held out %s", threshold, result["held_out"])
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_dataclass(ControllerArgs, __doc__))
