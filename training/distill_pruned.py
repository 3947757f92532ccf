"""Fidelity distillation: teach the model to give the dense model's outputs when tokens are pruned.

    python -m training.distill_pruned --model bioprune/assets/bc5cdr-minilm-l6 --output runs/distill \
        --texts DATA/corpora/*.PubTator DATA/bc5cdr/CDR_TrainingSet.PubTator.txt \
                DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt \
        --unlabelled DATA/pubmed/medline16n0902.xml.gz --controller mlp [--resume]

Why: on real MEDLINE abstracts the MLP default changed 17% of the dense model's entities, and the
diagnosis (issue 16) traced 76% of the lost and 96% of the spurious ones to mentions in which no
token was pruned: the kept tokens lose context, their exit labels are not the problem. Lowering λ
buys fidelity only by giving up the speed. So the remedy is training: the model learns to give,
on the tokens that stay, what it gives with every token present.

How (Learned Token Pruning, Kim et al., KDD 2022, trains with pruning in the loop; here with real
removal, the inference controller's own decisions, and the dense model as teacher as in
knowledge distillation, Hinton et al. 2015):

- **Teacher**: the starting model, dense, frozen; its label probabilities on every token.
- **Which tokens leave**: exactly what inference would prune — the student's own
  :class:`~bioprune.forward.PrunedEncoder` forward at the chosen config (controller, λ,
  pruning layers, frozen context), under ``no_grad``, with λ scaled per step by a random factor in
  ``[lambda_scale_min, lambda_scale_max]`` so the model holds up around the operating point.
- **Loss**: soft cross-entropy to the teacher (``teacher_temperature``: 1 its probabilities, 0 its
  labels) on the kept tokens after the student's pruned
  forward (the same :func:`bioprune.layer.run_layer` inference runs); on a share
  ``dense_step_share`` of the steps the dense forward instead, on every token, so the student's
  dense model stays the teacher (fidelity is measured against the student's own dense fp32).
- **Text**: no labels are used, so any text serves: the corpora in ``../shared/data/corpora``
  (guidelines do not matter here), BC5CDR train and dev, and the *first* half of the MEDLINE slice.
  Its second half is where fidelity is measured; this script never reads it.

Checkpoints every ``checkpoint_steps`` into ``OUTPUT/checkpoint`` (weights as safetensors, optimiser
and schedule state) and ``--resume`` continues from there with the same batches, so a run can span
sessions. The result is a full model folder in ``--output``: weights (fp16, as shipped), config,
tokenizer, the exit heads, controller and ``postprocess.json`` of ``--model`` (retrain the heads
and the controller on the new backbone: training/train_exits.py, training/train_controller.py),
and ``distill_run.json`` (arguments, data md5s, loss curve, time).
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from bioprune.config import PruningConfig
from bioprune.forward import Sequences, merge, prune
from bioprune.layer import classify, embed, run_layer
from bioprune.encoding import encode_texts, window_input_ids
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.io.pubtator import read_pubtator
from bioprune.options import add_config_arguments
from training.analysis.common import md5, parse_dataclass, pruning_config
from training.multicorpus import adamw, make_batches  # the same optimiser and length-bucketed shuffling

logger = logging.getLogger("distill_pruned")

# files of the starting model folder the distilled folder carries over as they are
CARRIED_FILES = ("exit_heads.safetensors", "exit_heads.json", "controller.safetensors", "controller.json",
                 "postprocess.json", "README.md")


@dataclass(frozen=True)
class TrainArgs:
    """The command line's options, besides --resume and PruningConfig's (bioprune.options)."""
    output: str  # the new model folder (and its checkpoint/ while training)
    model: str = str(DEFAULT_MODEL_DIR)  # teacher and starting student
    texts: tuple[str, ...] = ()  # PubTator files whose texts are used (labels ignored)
    unlabelled: tuple[str, ...] = ()  # PubMed XML: only the first half is read (the second is held out)
    epochs: float = 1.0  # passes over the texts (fractions allowed)
    learning_rate: float = 2e-5  # peak AdamW rate: a light touch on a trained model
    batch_size: int = 8  # windows per step
    warmup_ratio: float = 0.05  # share of the steps warming the rate up
    weight_decay: float = 0.01  # AdamW
    dense_step_share: float = 0.25  # steps that distil the dense forward (every token) instead of the pruned one
    teacher_temperature: float = 1.0  # softmax(teacher logits / T) is the target; 0: its argmax, one-hot
    lambda_scale_min: float = 0.5  # lower bound of the per-step λ factor, drawn log-uniformly
    lambda_scale_max: float = 2.0  # upper bound of the per-step λ factor
    train_precision: str = "bf16"  # autocast for the student's forward and backward ("fp32": none)
    max_docs: int = 0  # 0: every text; else a random subset of this many (a quick run)
    checkpoint_steps: int = 200  # steps between checkpoints
    seed: int = 13
    threads: int = 2


@dataclass(frozen=True)
class DistillArgs(TrainArgs):
    config: PruningConfig = field(kw_only=True)  # the pruning the student learns to withstand (--controller ...)


def training_texts(args: DistillArgs) -> list[str]:
    """The texts of ``args.texts`` and the first half of each ``args.unlabelled`` file (held-out half unread)."""
    texts = [d.text for path in args.texts for d in read_pubtator(path)]
    for path in args.unlabelled:
        medline = [d.text for d in iter_pubmed_xml(path)]
        texts += medline[:len(medline) // 2]  # the same split as train_exits / train_controller / fidelity_medline
    texts = [t for t in texts if t.strip()]
    if args.max_docs:
        texts = random.Random(args.seed).sample(texts, min(args.max_docs, len(texts)))
    return texts


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``mask`` (B, T) of -sum_c target log softmax(logits): (B, T, C) each."""
    per_token = -(target * logits.float().log_softmax(dim=-1)).sum(dim=-1)  # (B, T)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def teacher_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, T, C) targets from the teacher's logits: softmax(logits / temperature), or at temperature
    0 the teacher's label as a one-hot. Why sharpen: the kept tokens that pruning flips are the
    ones the dense model is unsure of (results/fidelity_tokens.json), and a soft target teaches the
    student to stay unsure there; the teacher's decision is what fidelity is measured against."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    return (logits / temperature).softmax(dim=-1)


def pruned_logits(model, input_ids: torch.Tensor, valid: torch.Tensor, pruned_layer: torch.Tensor,
                  config: PruningConfig) -> tuple[torch.Tensor, Sequences]:
    """The student's forward with grad, each token leaving after the layer ``pruned_layer`` (B, T)
    says (0: stays to the end), as :class:`~bioprune.forward.PrunedEncoder` removed it.

    Returns the logits of the tokens that stayed (B, T', C) and their sequences (positions say where
    they came from)."""
    B, T = input_ids.shape
    seqs = Sequences(hidden=embed(model, input_ids), positions=torch.arange(T, device=input_ids.device).expand(B, T),
                     valid=valid)
    frozen = None
    points = set(config.prune_layers) if config.enabled else set()
    for i, layer in enumerate(model.base_model.encoder.layer):
        if i in points:
            leaving = seqs.valid & (pruned_layer.gather(1, seqs.positions) == i)  # (B, T')
            if config.frozen_context:
                frozen = merge(frozen, prune(seqs, leaving))
            seqs = prune(seqs, seqs.valid & ~leaving)
        seqs = replace(seqs, hidden=run_layer(layer, seqs.hidden, seqs.valid, context=frozen)[0])
    return classify(model, seqs.hidden), seqs  # (B, T', C)


def step_loss(engine: PruningEngine, teacher, ids: torch.Tensor, mask: torch.Tensor, special: torch.Tensor,
              config: PruningConfig, dense_step: bool, autocast: bool,
              teacher_temperature: float = 1.0) -> tuple[torch.Tensor, float]:
    """One step's loss and the share of content tokens pruned in it."""
    model = engine.model
    valid = mask.bool()
    content = valid & ~special  # (B, T)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        target = teacher_targets(teacher(input_ids=ids, attention_mask=mask).logits, teacher_temperature)  # (B, T, C)
    if dense_step:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, C)
        return soft_cross_entropy(logits, target, content), 0.0
    model.eval()  # decide as inference decides: no dropout
    decided = engine.encoder.forward(ids, mask, special, config)
    model.train()
    pruned_layer = decided.pruned_layer  # (B, T)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits, kept = pruned_logits(model, ids, valid, pruned_layer, config)  # (B, T', C)
    kept_target = target.gather(1, kept.positions.unsqueeze(-1).expand(-1, -1, target.size(-1)))  # (B, T', C)
    kept_content = kept.valid & ~special.gather(1, kept.positions)
    share = float((pruned_layer > 0).sum()) / max(int(content.sum()), 1)
    return soft_cross_entropy(logits, kept_target, kept_content), share


def save_model_folder(engine: PruningEngine, source: Path, out: Path) -> None:
    """``out`` as a full model folder: the student's weights in fp16 (as shipped), its config and
    tokenizer, and the starting folder's exit heads, controller, post-processing and card."""
    student = engine.model
    state = {k: v.detach().half().contiguous() for k, v in student.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    student.config.save_pretrained(out)
    engine.tokenizer.save_pretrained(out)
    for name in CARRIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)


def distill(args: DistillArgs, resume: bool = False) -> dict:
    if not args.teacher_temperature >= 0:
        raise SystemExit(f"--teacher-temperature must be >= 0 (0: the teacher's labels), got {args.teacher_temperature}")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    checkpoint = out / "checkpoint"
    run_file = checkpoint / "run.json"
    if resume:
        if not run_file.is_file():
            raise SystemExit(f"--resume: no checkpoint in {checkpoint}; start without --resume")
        saved = json.loads(run_file.read_text())
        if saved["args"] != json.loads(json.dumps(asdict(args), default=str)):
            raise SystemExit(f"--resume: {checkpoint} was made with other arguments; use them or a new --output")
    elif run_file.is_file():
        raise SystemExit(f"{checkpoint} holds a run: add --resume to continue it, or choose a new --output")
    checkpoint.mkdir(parents=True, exist_ok=True)

    engine = PruningEngine.from_pretrained(args.model, config=args.config)
    teacher = PruningEngine.from_pretrained(args.model).model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    tokenizer = engine.tokenizer
    texts = training_texts(args)
    encoded = encode_texts(tokenizer, texts)
    windows = [window_input_ids(doc, w, tokenizer.cls_token_id, tokenizer.sep_token_id)
               for doc in encoded for w in doc.windows]
    batches = make_batches([(w,) for w in windows], args.batch_size, random.Random(args.seed))  # same per seed: resume repeats them
    steps = math.ceil(args.epochs * len(batches))
    logger.info("%d texts -> %d windows (%d tokens), %d steps", len(texts), len(windows),
                sum(map(len, windows)), steps)

    model = engine.model
    model.train()
    optimizer = adamw(model, args.learning_rate, args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    done, history = 0, []
    if resume:
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
        state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        done, history = saved["step"], saved["history"]
        logger.info("resuming at step %d of %d", done, steps)

    def save_checkpoint(step: int) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   checkpoint / "optimizer.pt")
        run = {"args": asdict(args), "step": step, "steps": steps, "history": history}
        run_file.write_text(json.dumps(run, indent=1, default=str))

    autocast = args.train_precision == "bf16"
    # decisions on the live fp32 weights: a bf16 copy (PrunedEncoder.weights_at) would be made once and go stale
    config = replace(args.config, recovery=False, precision="fp32")
    started = time.time()
    total, shares, n = 0.0, 0.0, 0
    progress = tqdm(total=steps, initial=done, desc="distill", unit="step")
    for step in range(done, steps):
        rng = random.Random(f"{args.seed}-{step}")  # per step: the same draws on resume
        dense_step = rng.random() < args.dense_step_share
        scale = math.exp(rng.uniform(math.log(args.lambda_scale_min), math.log(args.lambda_scale_max)))
        step_config = replace(config, aggressiveness=config.aggressiveness * scale)
        ids, mask, special = engine.batch_inputs([windows[i] for i in batches[step % len(batches)]])
        loss, share = step_loss(engine, teacher, ids, mask, special, step_config, dense_step, autocast,
                                args.teacher_temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total, shares, n = total + loss.item(), shares + share, n + 1
        progress.update(1)
        progress.set_postfix(loss=f"{total / n:.4f}", pruned=f"{shares / n:.2f}")
        if (step + 1) % args.checkpoint_steps == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": total / n, "pruned_share": shares / n,
                            "elapsed_s": time.time() - started})
            total, shares, n = 0.0, 0.0, 0
            save_checkpoint(step + 1)
    progress.close()
    model.eval()
    save_model_folder(engine, Path(engine.source_dir), out)
    result = {"args": asdict(args), "data": {p: md5(p) for p in list(args.texts) + list(args.unlabelled)},
              "n_texts": len(texts), "n_windows": len(windows), "steps": steps, "history": history,
              "versions": {"torch": torch.__version__}}
    (out / "distill_run.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def parse_args(argv=None) -> tuple[DistillArgs, bool]:
    args, ns = parse_dataclass(TrainArgs, __doc__, argv, lambda parser: add_config_arguments(parser, controllers=("mlp", "rule")),
                               # not a field: the arguments a checkpoint was made with are compared with --resume's
                               lambda parser: parser.add_argument("--resume", action="store_true",
                                                                  help="continue the run checkpointed in OUTPUT/checkpoint"))
    return DistillArgs(**vars(args), config=pruning_config(ns)), ns.resume


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    distill(*parse_args())
