"""The ``bioprune`` command line: ``annotate`` documents and ``evaluate`` against gold PubTator.

    bioprune annotate medline.xml.gz notes.txt --output out.pubtator [--format pubtator|jsonl|csv|bioc]
    bioprune annotate pubmed/*.xml.gz --output annotated/ --ray --num-actors 8   # on Ray
    bioprune evaluate --gold CDR_TestSet.PubTator.txt --output results/evaluate_dense.json

``annotate`` exit status: 0 when every record was annotated, 1 when some records failed (they are
in ``OUTPUT.errors.jsonl``; everything else was annotated), 2 for usage and fatal errors (missing
input file, bad option, unreadable model, an interrupted run without --resume, a refused output),
printed as one line naming the file, never a traceback. An interrupted run (killed, Ctrl-C)
continues with --resume. The output is refused when it (or a side file) is an input, or a device,
FIFO, directory or symlink ('-' and /dev/stdout are standard output), or while another run holds
its lock (OUTPUT.lock; the PID is named). Documents over --max-doc-chars are failed records.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from bioprune import __version__
from bioprune.batch_run import (DEFAULT_CHUNK_DOCS, DEFAULT_MAX_DOC_CHARS, MEMORY_MODES, annotate_files,
                                limit_malloc_growth)
from bioprune.config import DENSE, IgnoredSettingWarning
from bioprune.errors import InputError
from bioprune.io.checkpoint import side_path
from bioprune.io.inputs import INPUT_FORMATS
from bioprune.io.output_target import check_output, is_stdout
from bioprune.io.outputs import output_format
from bioprune.io.pubtator import read_pubtator
from bioprune.options import SETTINGS, add_config_arguments, config_from_values
from bioprune.types import format_flops_saved

logger = logging.getLogger("bioprune")


def _config(args):
    """The PruningConfig the flags ask for (:mod:`bioprune.options`); a pruning flag on the dense
    model is an error here.

    The core only warns (IgnoredSettingWarning) about a knob the dense model ignores; on the command
    line it is a mistake (``--lambda 4`` without ``--controller`` would silently run dense).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", IgnoredSettingWarning)
            return config_from_values({s.key: getattr(args, s.key) for s in SETTINGS})
    except IgnoredSettingWarning as ignored:
        flag = {s.field: s.flag for s in SETTINGS}
        flags = ", ".join(flag.get(name, name) for name in ignored.settings)
        raise InputError(flags, "has no effect on the dense model (--controller none, the default): add "
                         "--controller rule or --controller mlp to prune, or drop it") from None
    except ValueError as err:
        raise InputError("command line", str(err)) from None


def _engine(args):
    """The engine the flags ask for, after one-line checks of the device and the model (a directory,
    complete, or a Hub id: :func:`bioprune.model_files.resolve_model_dir`)."""
    from transformers.utils import logging as hf_logging

    from bioprune.devices import resolve_device
    from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
    from bioprune.linking import BUILD_COMMAND, LinkerIndexError
    from bioprune.model_files import ModelNotFoundError, resolve_model_dir
    from bioprune.precision import resolve_precision

    try:
        device = resolve_device(args.device)
    except InputError as err:
        raise InputError(f"--device {args.device}", err.reason) from None
    try:
        path = resolve_model_dir(args.model or DEFAULT_MODEL_DIR)
    except ModelNotFoundError as err:
        raise InputError(err.name, err.reason) from None
    config = _config(args)
    try:  # before the model loads: int8 on a GPU, say
        resolve_precision(config.precision, device)
    except ValueError as err:
        raise InputError(f"--precision {config.precision}", str(err)) from None
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar is noise in CLI output
    try:
        engine = PruningEngine.from_pretrained(path, config=config, device=device)
    except ValueError as err:
        raise InputError(args.model or "shipped model", str(err)) from None
    if config.link:  # now, not in the first chunk: a missing or malformed index is one line, exit 2
        try:
            engine.linker  # noqa: B018 -- loading is the point
        except LinkerIndexError as err:
            raise InputError(err.path, f"{err.reason}; build it with: {BUILD_COMMAND}") from None
    return engine


def _fingerprint(args, engine) -> dict:
    """What makes two annotate runs the same job: a resume with anything else is refused."""
    inputs = []
    for path in args.inputs:
        stat = Path(path).stat()
        inputs.append({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {"inputs": inputs, "input_format": args.input_format, "format": args.format,
            "chunk_size": args.chunk_size, "batch_size": args.batch_size, "max_doc_chars": args.max_doc_chars,
            "model": str(Path(args.model).resolve()) if args.model else "shipped", "config": asdict(engine.config)}


def _check_annotate_args(args) -> None:
    """Refuse bad arguments before anything loads or is written; normalises ``args.max_doc_chars``
    (0, no limit, becomes None), which the journal fingerprint and the Ray job read."""
    for path in args.inputs:  # fail before loading the model or touching the output
        if not Path(path).is_file():
            raise InputError(path, "no such file" if not Path(path).is_dir() else "is a directory, not a file")
    for name in ("chunk_size", "num_actors", "cpus_per_actor"):
        if getattr(args, name) < 1:
            raise InputError("--" + name.replace("_", "-"), f"must be >= 1, got {getattr(args, name)}")
    if args.max_doc_chars < 0:
        raise InputError("--max-doc-chars", f"must be >= 0 (0: no limit), got {args.max_doc_chars}")
    args.max_doc_chars = args.max_doc_chars or None  # 0: no limit
    if is_stdout(args.output) and (args.resume or args.ray):
        raise InputError(f"--output {args.output}", "--resume and --ray need an output path, not standard output")
    if not args.ray and not is_stdout(args.output):  # the output's own checks (bioprune.io.output_target)
        check_output(args.output, args.inputs, resume=args.resume)


def cmd_annotate(args) -> int:
    _check_annotate_args(args)
    fmt = output_format(args.format)
    if args.ray:
        return _annotate_on_ray(args)
    to_stdout = is_stdout(args.output)
    engine = _engine(args)
    stats = annotate_files(engine, args.inputs, None if to_stdout else args.output, fmt,
                           input_format=args.input_format, chunk_size=args.chunk_size,
                           batch_size=args.batch_size, resume=args.resume, max_doc_chars=args.max_doc_chars,
                           fingerprint=_fingerprint(args, engine), progress=not args.quiet)
    where = "" if to_stdout else f" -> {args.output}"
    if stats.errors and not to_stdout:
        where += f" (errors: {side_path(Path(args.output), 'errors')})"
    print(stats.summary_line(controller=engine.config.controller) + where, file=sys.stderr)
    return 1 if stats.errors else 0


def _annotate_on_ray(args) -> int:
    try:
        import ray

        from bioprune.ray import RayJob, job_summary, run_on_ray
    except ImportError as err:
        raise InputError("--ray", f'needs Ray ({err}): pip install "bioprune[ray]"') from None

    if Path(args.output).is_file():
        raise InputError(args.output, "is a file: with --ray, --output is a directory (one file per input)")
    engine = _engine(args)  # validates the model and the pruning options before any actor starts
    job = RayJob(inputs=tuple(args.inputs), output_dir=args.output, output_format=args.format,
                 input_format=args.input_format, model=str(Path(args.model).resolve()) if args.model else None,
                 config=asdict(engine.config), device=args.device, batch_size=args.batch_size,
                 chunk_size=args.chunk_size, resume=args.resume, num_actors=args.num_actors,
                 cpus_per_actor=args.cpus_per_actor, address=args.ray_address, quiet=args.quiet, memory=args.memory,
                 max_doc_chars=args.max_doc_chars,
                 fingerprint={k: v for k, v in _fingerprint(args, engine).items() if k != "inputs"})
    del engine
    started = time.perf_counter()
    try:
        total, shards = run_on_ray(job)
    except ray.exceptions.RayError as err:
        raise InputError("--ray", f"the Ray job failed: {str(err).strip().splitlines()[0]}") from None
    wall_s = time.perf_counter() - started
    summary = job_summary(job, total, shards, wall_s)
    Path(args.output, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [s["input"] for s in shards if s["errors"]]
    line = (total.summary_line(wall_s=wall_s, controller=job.config.get("controller"))
            + f" on Ray (actors: {args.num_actors}) -> {args.output}/")
    if failed:
        line += f" (errors in {len(failed)} file(s): see *.errors.jsonl)"
    print(line, file=sys.stderr)
    return 1 if total.errors else 0


def cmd_evaluate(args) -> int:
    from bioprune.evaluation import evaluate_engine

    gold = read_pubtator(args.gold)
    engine = _engine(args)
    started = time.time()
    # Anything but the exact dense fp32 model (pruning, bf16) is also compared with it, same weights,
    # same run: the F1 drop and the entity agreement (fidelity). The reference links as the run does:
    # linking drops gene products and unsure unlinked entities (PruningEngine.annotate), so it moves entities.
    reference = engine.with_config(DENSE.with_(link=engine.config.link)) if engine.config.with_(link=DENSE.link) != DENSE else None
    scores = evaluate_engine(engine, gold, batch_size=args.batch_size, progress=not args.quiet, reference=reference)
    result = {
        "command": "bioprune " + " ".join(sys.argv[1:]),
        "gold": {"path": str(args.gold), "md5": hashlib.md5(Path(args.gold).read_bytes()).hexdigest()},
        "model": str(args.model or "shipped"),
        "config": asdict(engine.config),
        "precision": engine.precision,
        "elapsed_s": time.time() - started,
        **scores,
    }
    print(format_scores(scores))
    if reference is not None:
        print(format_reference(result))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
        print(f"scores written to {args.output}", file=sys.stderr)
    return 0


def format_scores(scores: dict) -> str:
    rows = ["measure     type      precision  recall  f1      gold  pred"]
    for name, key in (("exact", "mention"), ("seqeval", "seqeval")):
        for t, s in scores[key].items():
            gold, pred = s.get("n_gold", s.get("support", "")), s.get("n_pred", "")
            rows.append(f"{name:<11} {t:<9} {s['precision']:.4f}     {s['recall']:.4f}  {s['f1']:.4f}  "
                        f"{gold:<5} {pred}")
    if linking := scores.get("linking"):
        rows.append(format_linking(linking))
    return "\n".join(rows)


def format_linking(linking: dict) -> str:
    """The linking measures (bioprune.evaluation.linking_scores): accuracy on gold mentions, then
    the CDR document-level ID measure from our mentions and mention+ID exact match."""
    rows = ["linking     type      accuracy on gold mentions  document ID P/R/F1 (CDR)  mention+ID F1"]
    for t, acc in linking["normalization_accuracy"].items():
        doc, both = linking["document_from_predicted"][t], linking["mention_and_id"][t]
        accuracy = f"{acc['accuracy']:.4f} ({acc['correct']}/{acc['n']})"
        rows.append(f"{'':<11} {t:<9} {accuracy:<26} {doc['precision']:.4f}/{doc['recall']:.4f}/{doc['f1']:.4f}"
                    f"    {both['f1']:.4f}")
    return "\n".join(rows)


def format_reference(result: dict) -> str:
    """One line comparing the run with the exact dense fp32 model: F1 drop, agreement, what pruning did."""
    drop = result["f1_drop_points"]["micro"]
    line = (f"dense fp32 micro F1 {result['dense']['mention']['micro']['f1']:.4f}, this run "
            f"{result['mention']['micro']['f1']:.4f} (drop {drop:.2f} points, {result['precision']}); "
            f"entity agreement with dense fp32 {result['agreement']['micro']['f1']:.4f}")
    if p := result.get("pruning"):
        line += (f"; tokens pruned {p['tokens_pruned_ratio']:.1%}, FLOPs saved "
                 f"{format_flops_saved(p['flops_saved_ratio'])}, recovery on {p['recovery_rate_documents']:.1%} "
                 "of documents")
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioprune", description="Chemical and disease NER with adaptive token pruning.")
    parser.add_argument("--version", action="version", version=f"bioprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", help="model directory (default: the shipped model)")
        p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
        p.add_argument("--device", default="cpu",
                       help="torch device: cpu, cuda or cuda:N (default cpu; checked before the model loads)")
        add_config_arguments(p)  # --controller, --lambda, ..., --precision: one per PruningConfig face setting

    p = sub.add_parser("annotate", help="annotate PubMed XML, PubTator, BioC, JSONL or plain-text files")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="input files (.xml/.xml.gz PubMed, BioC XML/JSON, PubTator, JSONL, text; gzip ok)")
    p.add_argument("--output", required=True,
                   help="output file ('-' or /dev/stdout for standard output); a directory with --ray. Never an "
                        "input, a device, FIFO or symlink; locked while the run lasts (OUTPUT.lock)")
    p.add_argument("--format", default="pubtator", choices=["pubtator", "jsonl", "csv", "bioc"],
                   help="output format (bioc is BioC JSON)")
    p.add_argument("--input-format", default="auto", choices=list(INPUT_FORMATS),
                   help="input format (default: detected from the content of each file)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_DOCS,
                   help=f"records read, annotated and committed together (default {DEFAULT_CHUNK_DOCS})")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run on the same output (no duplicates, no gaps)")
    p.add_argument("--max-doc-chars", type=int, default=DEFAULT_MAX_DOC_CHARS,
                   help=f"longer documents are failed records, not annotated (default {DEFAULT_MAX_DOC_CHARS}; "
                        "0: no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--memory", default=MEMORY_MODES[0], choices=MEMORY_MODES,
                   help="fast (default): tensors reuse the heap, no page is faulted in twice; flat: every "
                        "tensor mapped afresh and given back, for the lowest peak memory, about half the "
                        "speed on 2 cores (docs/batch_annotation.md)")
    ray_group = p.add_argument_group("Ray (pip install \"bioprune[ray]\")")
    ray_group.add_argument("--ray", action="store_true",
                           help="run on Ray Data: one actor per model, one input file per shard")
    ray_group.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    ray_group.add_argument("--num-actors", type=int, default=2, help="actors (loaded models) in the pool (default 2)")
    ray_group.add_argument("--cpus-per-actor", type=int, default=1,
                           help="CPUs (and torch threads) per actor (default 1)")
    common(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("evaluate", help="score against gold PubTator (exact mention match + seqeval)")
    p.add_argument("--gold", required=True, help="gold PubTator file")
    p.add_argument("--output", help="results JSON to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_malloc_growth(getattr(args, "memory", MEMORY_MODES[0]))  # before torch or the tokenizer start threads
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        print(f"bioprune: error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except InputError as err:
        print(f"bioprune: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"bioprune: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if args.command == "annotate" and args.output != "-" else ""
        print(f"bioprune: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
