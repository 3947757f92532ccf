"""bioprune against what a user would pick instead, on the same abstracts: speed, F1 and agreement.

    pip install onnxruntime onnx     # the ONNX Runtime peers
    python -m training.benchmark_peers --data DATA/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_peers.json [--limit-docs 200 --rounds 3] \
        [--unlabelled DATA/pubmed/medline16n0902.xml.gz]

Systems (bioprune's and ONNX Runtime's all go through the engine's tokenization, windows, decoding
and post-processing, so among them only the forward differs):
  bioprune dense fp32      the exact dense model (bioprune.DENSE): the baseline of every ratio
  bioprune dense bf16      the dense model at the default precision (auto: bf16 on a CPU with native bf16)
  bioprune default         bioprune.DEFAULT (the MLP after layer 3, frozen context, through the upper
                           layers trained for that pruning; the default precision: auto, mixed on a
                           CPU with native bf16 and oneDNN int8, i.e. int8 but in the layers the
                           calibration keeps bf16, bioprune.int8.mixed_int8_layers)
  bioprune default bf16    the default at precision bf16 (what auto runs on a CPU without oneDNN int8)
  bioprune faithful        bioprune.FAITHFUL (the MLP after layer 4, frozen context: pruning that keeps
                           more of the dense entities) at the default precision
  bioprune dense int8 / default int8
                           dense and the default at precision int8 (bioprune.int8: oneDNN int8 matmuls)
  ORT fp32 / ORT int8      ONNX Runtime on the same model: exported with torch.onnx (opset 17),
                           ONNX Runtime's BERT optimizer (fused attention, layer norm, GELU), then
                           dynamic per-channel int8 quantization of the weights (onnxruntime.quantization)
  HF pipeline              transformers' ``pipeline("token-classification")`` on the same weights,
                           loaded as bioprune loads them (safetensors, fp32: the folder stores fp16 and
                           transformers 5 would otherwise run fp16 on the CPU). Its own tokenization
                           and chunking: ``stride`` (the engine's 128-token window overlap) so abstracts
                           over 512 tokens (45 of the 500 test abstracts) are read whole, not truncated;
                           chunks placed and merged the pipeline's way (of two overlapping entities the
                           longer wins). --hf-aggregation "average" (default) averages the label
                           probabilities over a word's subwords and takes the argmax, so spans fall
                           on word boundaries ("simple" can end an entity inside a word, "first"
                           reads the first subword only). None of the shipped model's own
                           postprocess.json: neither its constrained (Viterbi) decoding nor its
                           abbreviation pass: this is what a pipeline user gets
  spaCy CNN                with --spacy-model: a spaCy `ner` pipeline (efficiency config, scispaCy's
                           architecture) trained here on BC5CDR train+dev (training/train_spacy_peer.py);
                           its own tokenizer, scored by the same exact-match measure
Every bioprune and ORT row runs with MeSH linking off (no peer links; its cost is measured by
training/benchmark_linking.py). Speed: alternating rounds after warm-up (training.analysis.timing), 2 threads for torch and ORT alike,
batch 1 and 16. F1 (exact match, bioprune.evaluation.mention_scores) and entity agreement with
dense fp32 on all the abstracts, every system alike. With ``--unlabelled``, also each system's
agreement with dense fp32 on the held-out second half of that MEDLINE slice (real abstracts unlike
BC5CDR, never used to train or choose a setting: where the test set hides what a faster forward
changes, issue 16).
"""
from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from bioprune.config import DEFAULT, DENSE, FAITHFUL, PruningConfig, dense_twin
from bioprune.forward import ForwardResult
from bioprune.encoding import DEFAULT_OVERLAP_TOKENS
from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine, load_model
from bioprune.evaluation import mention_scores
from bioprune.io.pubtator import read_pubtator
from training.analysis.timing import TimingPlan, cpu_model, time_systems
from bioprune.types import ENTITY_TYPES
from training.analysis.common import command_line, medline_halves, parse_dataclass, write_json_atomic

logger = logging.getLogger("benchmark_peers")

HfAggregation = Literal["average", "first", "max", "simple"]  # the pipeline's strategies that yield entity spans


@dataclass(frozen=True)
class PeersBenchArgs:
    data: str  # PubTator file with gold mentions (the BC5CDR test set)
    output: str = "results/benchmark_peers.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    threads: int = 2  # torch and ONNX Runtime intra-op threads
    rounds: int = 3  # alternating timed rounds per batch size; medians reported
    limit_docs: int = 0  # abstracts timed (0: all); F1 uses all
    batch_sizes: tuple[int, ...] = (1, 16)  # sequences per forward pass, each timed
    spacy_model: str | None = None  # a spaCy NER pipeline (training/train_spacy_peer.py: runs/spacy-peer/model-best)
    hf_aggregation: HfAggregation = "average"  # the HF pipeline's aggregation_strategy (average: word-level)
    unlabelled: str | None = None  # a PubMed XML slice: agreement with dense fp32 on its held-out second half


class OrtEncoder:
    """Stands in for PrunedEncoder inside a dense engine: the forward runs in an ONNX Runtime session.

    Only ``probs`` carries information; the trace fields are the dense model's (nothing pruned).
    """

    def __init__(self, session, n_layers: int, n_classes: int):
        self.session, self.n_layers, self.n_classes = session, n_layers, n_classes

    def check(self, config: PruningConfig) -> None:
        if config.enabled:
            raise ValueError("ONNX Runtime runs the dense model only")

    def precision_at(self, config: PruningConfig, device) -> str:
        return "onnxruntime"  # the session's own: fp32 or int8, by the file it loaded

    def forward(self, input_ids, attention_mask, special, config) -> ForwardResult:
        logits = self.session.run(["logits"], {"input_ids": input_ids.numpy(),
                                               "attention_mask": attention_mask.numpy()})[0]  # (B, T, C)
        probs = torch.from_numpy(logits).float().softmax(dim=-1)
        B, T = input_ids.shape
        zeros = torch.zeros(B, T, dtype=torch.long)
        return ForwardResult(probs=probs, pruned_layer=zeros, pruned_score=zeros.float(),
                             recovery={}, labels_before=probs.argmax(-1),
                             tokens_per_layer=attention_mask.sum(1, keepdim=True).expand(B, self.n_layers),
                             flops=torch.zeros(B, dtype=torch.float64), dense_flops=torch.zeros(B, dtype=torch.float64))


def unlinked(config: PruningConfig) -> PruningConfig:
    """``config`` without MeSH linking: no peer links, so every row times NER alone (linking's own
    cost: training/benchmark_linking.py)."""
    return replace(config, link=False)


def export_onnx(engine: PruningEngine, folder: Path) -> dict[str, Path]:
    """The model as ONNX: fp32 through ORT's BERT optimizer, and that quantized to dynamic per-channel int8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    raw, fp32, int8 = folder / "model.onnx", folder / "model_fp32.onnx", folder / "model_int8.onnx"
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {0: "batch", 1: "tokens"}
    model = copy.deepcopy(engine.model)
    model.set_attn_implementation("eager")  # the attention pattern ORT's BERT optimizer fuses (SDPA's is not)
    torch.onnx.export(Logits(model).eval(), example, str(raw), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes})
    cfg = engine.model.config
    optimized = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                               hidden_size=cfg.hidden_size)
    logger.info("ORT fusions: %s", optimized.get_fused_operator_statistics())
    optimized.save_model_to_file(str(fp32))
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"fp32": fp32, "int8": int8}


def ort_engine(engine: PruningEngine, path: Path, threads: int) -> PruningEngine:
    """A dense engine on the same tokenizer and post-processing whose forward is ONNX Runtime's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    encoder = OrtEncoder(session, engine.model.config.num_hidden_layers, engine.encoder.n_classes)
    return replace(engine.with_config(unlinked(DENSE)), bundle=replace(engine.bundle, encoder=encoder))


SPACY_PEER = "spaCy CNN (ner efficiency config, trained here)"


def spacy_annotator(path: str):
    """annotate(documents or texts, batch_size) for a spaCy pipeline: its doc.ents as character spans."""
    import spacy

    nlp = spacy.load(path)

    def annotate(items, batch_size: int):
        texts = [getattr(item, "text", item) for item in items]
        return [[(e.start_char, e.end_char, e.label_) for e in doc.ents]
                for doc in nlp.pipe(texts, batch_size=batch_size)]
    return annotate


HF_PEER = "HF pipeline (transformers, fp32)"


def hf_pipeline(model_dir, aggregation: str = "average", stride: int | None = DEFAULT_OVERLAP_TOKENS):
    """transformers' ``pipeline("token-classification")`` over a model folder (or hub id), fp32 on the CPU.

    The weights are read the way
    bioprune reads them (:func:`bioprune.engine.load_model`: safetensors only, fp32), into a copy of
    their own: the shipped folder stores fp16, which transformers 5 would otherwise keep. ``stride``
    is the number of tokens consecutive chunks share, so a text over the tokenizer's length limit is
    read whole; ``None`` truncates it there (the pipeline's default). A tokenizer that states no
    limit (a test fixture's) gets the model's position limit, so a chunk always fits the model.
    """
    from transformers import pipeline

    tokenizer, model = load_model(model_dir)
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    return pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=aggregation,
                    stride=stride, device=-1)


def hf_annotator(pipe):
    """annotate(documents or texts, batch_size) for a token-classification pipeline: its entity groups
    of bioprune's types as (start, end, type) character spans (other groups, if any, are dropped)."""
    def annotate(items, batch_size: int):
        texts = [getattr(item, "text", item) for item in items]
        return [[(int(g["start"]), int(g["end"]), g["entity_group"]) for g in groups
                 if g["entity_group"] in ENTITY_TYPES]
                for groups in pipe(texts, batch_size=batch_size)]
    return annotate


def entity_keys(documents, results) -> list[tuple[str, int, int, str]]:
    """(document id, start, end, type) of every predicted entity: from Annotations or from span lists."""
    spans = ([(e.start, e.end, e.label) for e in r.entities] if hasattr(r, "entities") else r for r in results)
    return [(doc.id, s, e, t) for doc, doc_spans in zip(documents, spans) for s, e, t in doc_spans]


def predicted_keys(annotators: dict, documents: list, batch_size: int = 16, desc: str = "F1") -> dict[str, list]:
    """Each annotator's :func:`entity_keys` on ``documents``, by annotator name."""
    return {name: entity_keys(documents, annotate(documents, batch_size)) for name, annotate in
            tqdm(annotators.items(), desc=desc, unit="system")}


def agreement_with(annotators: dict, documents: list, baseline: str, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Each annotator's entities on ``documents`` scored against ``baseline``'s: exact-match F1 per
    type and micro (:func:`bioprune.evaluation.mention_scores`), by annotator name."""
    keys = predicted_keys(annotators, documents, batch_size, "agreement")
    return {name: {t: v["f1"] for t, v in mention_scores(keys[baseline], k).items()} for name, k in keys.items()}


def main(argv=None) -> dict:
    args = parse_dataclass(PeersBenchArgs, __doc__, argv)
    torch.set_num_threads(args.threads)
    gold = read_pubtator(args.data)
    texts = [d.text for d in gold[: args.limit_docs or None]]
    base = PruningEngine.from_pretrained(args.model, config=unlinked(DENSE))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_files = export_onnx(base, Path(tmp))
        systems = {"bioprune dense fp32": base, "bioprune dense bf16": base.with_config(unlinked(dense_twin(DEFAULT))),
                   "bioprune default": base.with_config(unlinked(DEFAULT)),
                   "bioprune default bf16": base.with_config(unlinked(replace(DEFAULT, precision="bf16"))),
                   "bioprune faithful": base.with_config(unlinked(FAITHFUL)),
                   "bioprune dense int8": base.with_config(unlinked(replace(dense_twin(DEFAULT), precision="int8"))),
                   "bioprune default int8": base.with_config(unlinked(replace(DEFAULT, precision="int8"))),
                   "ORT fp32": ort_engine(base, onnx_files["fp32"], args.threads),
                   "ORT int8": ort_engine(base, onnx_files["int8"], args.threads)}
        annotators = {n: (lambda t, bs, e=e: e.annotate(t, batch_size=bs)) for n, e in systems.items()}
        annotators[HF_PEER] = hf_annotator(hf_pipeline(base.source_dir, args.hf_aggregation, base.overlap_tokens))
        if args.spacy_model:
            annotators[SPACY_PEER] = spacy_annotator(args.spacy_model)
        documents = [d.to_document() for d in gold]
        keys = predicted_keys(annotators, documents)
        gold_keys = [(d.pmid, m.start, m.end, m.type) for d in gold for m in d.mentions if m.type in ENTITY_TYPES]
        baseline = next(iter(systems))
        accuracy = {name: {"f1": {t: v["f1"] for t, v in mention_scores(gold_keys, k).items()},
                           "agreement_with_dense_fp32": mention_scores(keys[baseline], k)["micro"]["f1"]}
                    for name, k in keys.items()}
        if args.unlabelled:
            held_out = medline_halves(args.unlabelled)[1]
            for name, scores in agreement_with(annotators, held_out, baseline).items():
                accuracy[name]["medline_agreement_with_dense_fp32"] = scores
        plan = TimingPlan(rounds=args.rounds, batch_sizes=args.batch_sizes)
        with tqdm(total=len(plan.batch_sizes) * plan.rounds * len(annotators), desc="timing", unit="run") as bar:
            timing = time_systems(annotators, texts, plan, on_run=lambda: bar.update(1))
    result = {"command": command_line("-m training.benchmark_peers", argv), "threads": args.threads, "cpu": cpu_model(),
              "n_abstracts_timed": len(texts), "n_abstracts_scored": len(gold), "torch": torch.__version__,
              "onnxruntime": __import__("onnxruntime").__version__,
              "transformers": __import__("transformers").__version__,
              "hf_pipeline": {"system": HF_PEER, "aggregation_strategy": args.hf_aggregation,
                              "stride": base.overlap_tokens},
              "bioprune_postprocess": list(base.postprocess.passes), "bioprune_decoding": asdict(base.postprocess.decoding),
              "systems": {}}
    if args.unlabelled:
        result["medline"] = {"file": Path(args.unlabelled).name, "half": "second", "n_abstracts": len(held_out)}
    for name in annotators:
        entry = {**accuracy[name], "batch": {}}
        if name in systems and not isinstance(systems[name].bundle.encoder, OrtEncoder):
            entry["runs_at"] = systems[name].precision  # "auto" resolved on this machine
        for bs, t in timing.items():
            s = t[name]
            speedup = 1.0 if name == baseline else s.get(f"speedup_median_vs_{baseline}", t["speedup_median"])
            entry["batch"][bs] = {"abstracts_per_s": s["abstracts_per_s"], "ms_per_abstract": s["ms_per_abstract"],
                                  "speedup_vs_dense_fp32": speedup}
        result["systems"][name] = entry
    write_json_atomic(args.output, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = main()
    for name, e in out["systems"].items():
        medline = e.get("medline_agreement_with_dense_fp32")
        print(f"{name:22s} F1 {e['f1']['micro']:.4f} agreement {e['agreement_with_dense_fp32']:.4f} "
              + (f"MEDLINE {medline['micro']:.4f} " if medline else "")
              + " ".join(f"b{bs} {b['speedup_vs_dense_fp32']:.2f}x" for bs, b in e["batch"].items()))
