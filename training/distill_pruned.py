"""Fidelity distillation: train the layers after the pruning point to give the dense model's outputs
on the tokens that stay when the others have left.

    python -m training.distill_pruned --output runs/pruned --controller mlp --lambda 6 --prune-layers 2 \
        --frozen-context --texts DATA/corpora/*.PubTator DATA/bc5cdr/CDR_TrainingSet.PubTator.txt \
        DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt [--unlabelled DATA/pubmed/medline16n0902.xml.gz] [--resume]

Why: on real MEDLINE abstracts pruning's disagreement with the dense model comes from the tokens
that stay — they lose the context of those that left — not from the leavers' exit labels
(results/fidelity_tokens.json). Lowering λ buys fidelity only by giving up the speed.

How (:mod:`bioprune.pruned_layers`): everything before the one pruning point stays as it is —
embeddings, lower layers, exit heads, controller — so the pruning decisions are the model's own
and fixed, and the dense model is untouched. A copy of the layers from the pruning point on and of
the classifier learns, with the kept tokens only (and, with ``--frozen-context``, the leavers'
states as frozen keys and values, exactly as inference runs them), to give the dense model's label
probabilities (soft cross-entropy, Hinton et al. 2015; the teacher is the model's own dense
forward, so the student is anchored to it). Because the lower layers are frozen, the states at the
pruning point, the keep decisions and the teacher's outputs are computed once, before training
(:func:`point_states`); a step then costs only the upper layers' forward and backward.

Text: no labels are used, so any text serves — the corpora in ``../shared/data/corpora`` (guidelines
do not matter here), BC5CDR train and dev, and at most the *first* half of the MEDLINE slice
(``--unlabelled``). The second half is where fidelity is measured; this script never reads it.

Checkpoints every ``checkpoint_steps`` into ``OUTPUT/checkpoint`` (the upper layers as safetensors,
optimiser and schedule state); ``--resume`` recomputes the point states (deterministic) and
continues with the same batches. The result is a model folder in ``--output``: the files of
``--model`` as they are, plus ``pruned_layers.safetensors`` and ``distill_run.json`` (arguments,
data md5s, loss curve, time).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from bioprune.config import PruningConfig
from bioprune.encoding import encode_texts, window_input_ids
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
from bioprune.forward import Sequences, prune
from bioprune.io.pubmed_xml import iter_pubmed_xml
from bioprune.io.pubtator import read_pubtator
from bioprune.layer import classify, run_layer
from bioprune.model_files import copy_model_files
from bioprune.options import add_config_arguments
from bioprune.pruned_layers import PrunedLayers, upper_names
from training.analysis.common import md5, parse_dataclass, pruning_config
from training.multicorpus import adamw, make_batches  # the same optimiser and length-bucketed shuffling

logger = logging.getLogger("distill_pruned")


@dataclass(frozen=True)
class TrainArgs:
    """The command line's options, besides --resume and PruningConfig's (bioprune.options)."""
    output: str  # the new model folder (and its checkpoint/ while training)
    model: str = str(DEFAULT_MODEL_DIR)  # teacher, pruning decisions and starting upper layers
    texts: tuple[str, ...] = ()  # PubTator files whose texts are used (labels ignored)
    unlabelled: tuple[str, ...] = ()  # PubMed XML: only the first half is read (the second is held out)
    epochs: float = 3.0  # passes over the texts (fractions allowed)
    learning_rate: float = 1e-4  # peak AdamW rate
    batch_size: int = 16  # windows per step
    warmup_ratio: float = 0.05  # share of the steps warming the rate up
    weight_decay: float = 0.01  # AdamW
    teacher_temperature: float = 1.0  # T of distillation_loss; 0: the teacher's argmax, one-hot
    max_docs: int = 0  # 0: every text; else a random subset of this many (a quick run)
    checkpoint_steps: int = 200  # steps between checkpoints
    seed: int = 13
    threads: int = 2


@dataclass(frozen=True)
class DistillArgs(TrainArgs):
    config: PruningConfig = field(kw_only=True)  # the pruning the upper layers learn to withstand (--controller ...)


@dataclass(frozen=True)
class PointState:
    """One window at the pruning point: its real tokens' states (n, H) in fp16 (half the memory of
    fp32, 8x finer than bf16 over a layer norm's output range; the student computes in fp32), (n,) True for the tokens that stay, the dense teacher's logits
    (n, C) and (n,) True for [CLS]/[SEP] (never in the loss)."""

    hidden: torch.Tensor
    keep: torch.Tensor
    teacher: torch.Tensor
    special: torch.Tensor


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


def teacher_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(..., C) targets from the teacher's logits: softmax(logits / temperature), or at temperature
    0 the teacher's label as a one-hot."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    return (logits / temperature).softmax(dim=-1)


@torch.no_grad()
def point_states(engine: PruningEngine, windows: list[list[int]], config: PruningConfig,
                 batch_size: int = 16) -> list[PointState]:
    """Each window's :class:`PointState` at ``config``'s one pruning point, in ``windows``' order,
    from the engine's exact fp32 layers and its own pruning decision (:meth:`PrunedEncoder.state_at_point`)."""
    encoder, model = engine.encoder, engine.model
    upper = list(model.base_model.encoder.layer)[config.prune_layers[0]:]
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # little padding per batch
    out: list[PointState | None] = [None] * len(windows)
    for start in tqdm(range(0, len(order), batch_size), desc="point states", unit="batch"):
        rows = order[start:start + batch_size]
        ids, mask, special = engine.batch_inputs([windows[i] for i in rows])
        seqs, keep = encoder.state_at_point(ids, mask, special, config)  # (B, T, H), (B, T)
        hidden = seqs.hidden
        for layer in upper:  # the dense teacher: every token through the model's own upper layers
            hidden = run_layer(layer, hidden, seqs.valid)[0]
        teacher = classify(model, hidden).float()  # (B, T, C)
        for b, i in enumerate(rows):
            n = int(seqs.valid[b].sum())
            out[i] = PointState(hidden=seqs.hidden[b, :n].half().clone(), keep=keep[b, :n].clone(),
                                teacher=teacher[b, :n].clone(), special=special[b, :n].clone())
    return out


def collate(states: list[PointState], frozen_context: bool
            ) -> tuple[Sequences, Sequences | None, torch.Tensor, torch.Tensor]:
    """A batch as inference runs it after the pruning point: the kept tokens' sequences (B, T', H),
    the leavers' as frozen context (or None), and per kept slot the teacher's logits (B, T', C) and
    whether it counts in the loss (B, T'): a real, non-special token."""
    B, T = len(states), max(len(s.keep) for s in states)
    H, C = states[0].hidden.size(-1), states[0].teacher.size(-1)
    hidden, teacher = torch.zeros(B, T, H), torch.zeros(B, T, C)
    valid, keep, special = (torch.zeros(B, T, dtype=torch.bool) for _ in range(3))
    for b, s in enumerate(states):
        n = len(s.keep)
        hidden[b, :n], teacher[b, :n] = s.hidden.float(), s.teacher
        valid[b, :n], keep[b, :n], special[b, :n] = True, s.keep, s.special
    seqs = Sequences(hidden=hidden, positions=torch.arange(T).expand(B, T), valid=valid)
    kept = prune(seqs, keep)
    frozen = prune(seqs, valid & ~keep) if frozen_context else None
    teacher = teacher.gather(1, kept.positions.unsqueeze(-1).expand(-1, -1, C))  # (B, T', C)
    counts = kept.valid & ~special.gather(1, kept.positions)  # (B, T')
    return kept, frozen, teacher, counts


def upper_forward(student, first_layer: int, kept: Sequences, frozen: Sequences | None) -> torch.Tensor:
    """The student's layers ``first_layer``.. and classifier over the kept tokens: logits (B, T', C)."""
    hidden = kept.hidden
    for layer in list(student.base_model.encoder.layer)[first_layer:]:
        hidden = run_layer(layer, hidden, kept.valid, context=frozen)[0]
    return classify(student, hidden)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``mask`` (B, T) of -sum_c target log softmax(logits): (B, T, C) each."""
    per_token = -(target * logits.float().log_softmax(dim=-1)).sum(dim=-1)  # (B, T)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015) over ``mask`` (B, T) of logits (B, T, C): the
    student and the teacher are both softened by ``temperature`` and the loss scaled by its square,
    so the student's own logits keep the teacher's scale, which the decoding's O bias relies on
    (softening only the teacher would train a student less sure than the teacher at every T != 1).
    At 0: cross-entropy with the teacher's labels."""
    if temperature == 0:
        return soft_cross_entropy(student, teacher_targets(teacher, 0.0), mask)
    return temperature ** 2 * soft_cross_entropy(student / temperature, teacher_targets(teacher, temperature), mask)


def distill(args: DistillArgs, resume: bool = False) -> dict:
    if not args.teacher_temperature >= 0:
        raise SystemExit(f"--teacher-temperature must be >= 0 (0: the teacher's labels), got {args.teacher_temperature}")
    if not args.config.enabled or len(args.config.prune_layers) != 1:
        raise SystemExit("--prune-layers must name one pruning point (the layers after it are trained; "
                         f"got {args.config.prune_layers if args.config.enabled else 'controller none'})")
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

    config = replace(args.config, recovery=False, precision="fp32", link=False)  # decide as exact fp32 inference
    engine = PruningEngine.from_pretrained(args.model, config=config)
    point = config.prune_layers[0]
    tokenizer = engine.tokenizer
    texts = training_texts(args)
    windows = [window_input_ids(doc, w, tokenizer.cls_token_id, tokenizer.sep_token_id)
               for doc in encode_texts(tokenizer, texts) for w in doc.windows]
    logger.info("%d texts -> %d windows (%d tokens); states after layer %d", len(texts), len(windows),
                sum(map(len, windows)), point)
    states = point_states(engine, windows, config)
    batches = make_batches([(s.keep,) for s in states], args.batch_size, random.Random(args.seed))
    steps = math.ceil(args.epochs * len(batches))

    student = PrunedLayers.from_model(engine.model, point, config.frozen_context).model(engine.model)
    trained = set(upper_names(student, point))
    for name, p in student.named_parameters():
        p.requires_grad_(name in trained)
    optimizer = adamw(student, args.learning_rate, args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    done, history = 0, []
    if resume:
        student.load_state_dict(load_file(str(checkpoint / "pruned_layers.safetensors")), strict=False)
        state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        done, history = saved["step"], saved["history"]
        logger.info("resuming at step %d of %d", done, steps)

    def upper_state() -> dict[str, torch.Tensor]:
        state = student.state_dict()
        return {n: state[n].detach().contiguous() for n in sorted(trained)}

    def save_checkpoint(step: int) -> None:
        save_file(upper_state(), str(checkpoint / "pruned_layers.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   checkpoint / "optimizer.pt")
        run = {"args": asdict(args), "step": step, "steps": steps, "history": history}
        run_file.write_text(json.dumps(run, indent=1, default=str))

    student.train()
    started = time.time()
    total, n = 0.0, 0
    progress = tqdm(total=steps, initial=done, desc="distill", unit="step")
    for step in range(done, steps):
        kept, frozen, teacher, counts = collate([states[i] for i in batches[step % len(batches)]],
                                                config.frozen_context)
        logits = upper_forward(student, point, kept, frozen)
        loss = distillation_loss(logits, teacher, counts, args.teacher_temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in student.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total, n = total + loss.item(), n + 1
        progress.update(1)
        progress.set_postfix(loss=f"{total / n:.4f}")
        if (step + 1) % args.checkpoint_steps == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": total / n, "elapsed_s": time.time() - started})
            total, n = 0.0, 0
            save_checkpoint(step + 1)
    progress.close()
    copy_model_files(Path(engine.source_dir), out)
    PrunedLayers(point, config.frozen_context, {k: v.half() for k, v in upper_state().items()}).save(out)  # fp16, as shipped
    kept_share = sum(int(s.keep.sum()) for s in states) / max(sum(len(s.keep) for s in states), 1)
    result = {"args": asdict(args), "data": {p: md5(p) for p in list(args.texts) + list(args.unlabelled)},
              "n_texts": len(texts), "n_windows": len(windows), "kept_token_share": kept_share, "steps": steps,
              "history": history, "versions": {"torch": torch.__version__}}
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
