"""Train exit heads on a frozen backbone by self-distillation from the dense model.

    python -m training.train_exits --model bioprune/assets/bc5cdr-minilm-l6 \
        --texts DATA/bc5cdr/CDR_TrainingSet.PubTator.txt DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt \
        --unlabelled DATA/pubmed/medline16n0902.xml.gz --layers 1 2 3 4

One linear head per candidate pruning layer k maps the states after k layers to the label set.
Targets are the dense model's own final-layer probabilities (soft self-distillation), so no gold
labels are needed and any text works: the shipped model is trained on train+dev, so the heads learn
from those texts plus the first half of the MEDLINE slice, and the second half (never seen by the
model or the heads) is held out for the report. Frozen heads leave the dense model bit-identical
(one set of weights serves dense and pruned inference) and train in minutes on a CPU; multi-exit
fine-tuning (exit losses back-propagated into the encoder, as in TOKEE, Li et al., ACL 2021) would
re-run the full fine-tune and move the dense scores — not measured here for lack of CPU budget.

Writes ``exit_heads.safetensors`` and ``exit_heads.json`` (arguments, data md5s, and per layer on
the held-out half: agreement with the dense labels, the share of tokens the head would exit as O at
p(O) >= 0.99, and the share of dense-entity tokens it would wrongly exit) into ``--model``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bioprune.layer import classify, embed, run_layer
from bioprune.encoding import encode_texts, window_input_ids
from bioprune.engine import DEFAULT_MODEL_DIR, _pad, load_model
from bioprune.exits import ExitHeads
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.io.pubtator import read_pubtator
from training.analysis.common import md5, parse_dataclass

logger = logging.getLogger("train_exits")


@dataclass(frozen=True)
class ExitArgs:
    model: str = str(DEFAULT_MODEL_DIR)  # model directory; heads are written into it
    texts: tuple[str, ...] = ()  # PubTator files whose texts are used (labels ignored)
    unlabelled: tuple[str, ...] = ()  # PubMed XML files: first half trains, second half is held out
    layers: tuple[int, ...] = (1, 2, 3, 4)  # candidate pruning points (layers run before the head)
    epochs: int = 20  # passes over the cached states
    learning_rate: float = 3e-3  # Adam
    batch_tokens: int = 4096  # tokens per optimisation step
    seed: int = 13
    threads: int = 2


def content_batches(tokenizer, texts: list[str], batch_size: int, desc: str):
    """(ids, valid, content) per batch of the texts' windows, shortest first: ``valid`` (B, T) the
    real tokens, ``content`` those of them that are not [CLS] or [SEP]."""
    encoded = encode_texts(tokenizer, texts)
    seqs = sorted((window_input_ids(doc, w, tokenizer.cls_token_id, tokenizer.sep_token_id)
                   for doc in encoded for w in doc.windows), key=len)
    for i in tqdm(range(0, len(seqs), batch_size), desc=desc, unit="batch"):
        ids, mask = _pad(seqs[i:i + batch_size], tokenizer.pad_token_id, "cpu")
        valid = mask.bool()
        content = valid.clone()
        content[:, 0] = False
        content[torch.arange(len(ids)), valid.sum(1) - 1] = False  # [SEP]
        yield ids, valid, content


@torch.no_grad()
def collect(model, tokenizer, texts: list[str], layers: tuple[int, ...], batch_size: int = 16):
    """States after each layer in ``layers`` and the dense final probabilities, content tokens only.

    Returns ({k: (N, H)}, (N, C)) over all N real non-special tokens of all windows.
    """
    states = {k: [] for k in layers}
    teacher = []
    for ids, valid, content in content_batches(tokenizer, texts, batch_size, "dense states"):
        hidden = embed(model, ids)
        for j, layer in enumerate(model.base_model.encoder.layer, start=1):
            hidden, _ = run_layer(layer, hidden, valid)
            if j in states:
                states[j].append(hidden[content])  # (n, H)
        teacher.append(classify(model, hidden).softmax(-1)[content])  # (n, C)
    return {k: torch.cat(v) for k, v in states.items()}, torch.cat(teacher)


def train_head(x: torch.Tensor, target: torch.Tensor, args: ExitArgs) -> torch.nn.Linear:
    """Linear head minimising cross-entropy to the soft dense targets."""
    head = torch.nn.Linear(x.size(1), target.size(1))
    opt = torch.optim.Adam(head.parameters(), lr=args.learning_rate)
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), args.batch_tokens):
            idx = order[i:i + args.batch_tokens]
            loss = -(target[idx] * head(x[idx]).log_softmax(-1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


@torch.no_grad()
def report(head: torch.nn.Linear, x: torch.Tensor, target: torch.Tensor) -> dict:
    probs = head(x).softmax(-1)
    dense = target.argmax(-1)
    exits = probs[:, 0] >= 0.99
    entity = dense != 0
    return {"tokens": len(x), "agreement_with_dense": float((probs.argmax(-1) == dense).float().mean()),
            "exit_as_O_at_0.99": float(exits.float().mean()),
            "dense_entity_tokens_wrongly_exited": float((exits & entity).sum() / entity.sum().clamp(min=1))}


def main(args: ExitArgs) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tokenizer, model = load_model(args.model)
    texts = [d.text for path in args.texts for d in read_pubtator(path)]
    medline = [d.text for path in args.unlabelled for d in iter_pubmed_xml(path)]
    half = len(medline) // 2
    train_texts, held_texts = texts + medline[:half], medline[half:]
    logger.info("%d training texts, %d held out", len(train_texts), len(held_texts))
    x_train, t_train = collect(model, tokenizer, train_texts, args.layers)
    x_held, t_held = collect(model, tokenizer, held_texts, args.layers) if held_texts else ({}, None)
    heads = ExitHeads(list(args.layers), model.config.hidden_size, model.config.num_labels)
    metrics = {}
    for k in tqdm(args.layers, desc="exit heads", unit="head"):
        head = train_head(x_train[k], t_train, args)
        heads.heads[str(k)].load_state_dict(head.state_dict())
        metrics[k] = {"train": report(head, x_train[k], t_train)}
        if t_held is not None:
            metrics[k]["held_out"] = report(head, x_held[k], t_held)
        logger.info("layer %d: %s", k, metrics[k])
    heads.save(args.model)
    result = {"args": asdict(args),
              "data": {p: md5(p) for p in list(args.texts) + list(args.unlabelled)},
              "n_train_texts": len(train_texts), "n_held_out_texts": len(held_texts), "layers": metrics}
    Path(args.model, "exit_heads.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(parse_dataclass(ExitArgs, __doc__))
