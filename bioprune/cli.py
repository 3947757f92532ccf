"""The ``bioprune`` command line: ``annotate`` documents and ``evaluate`` against gold PubTator.

    bioprune annotate abstracts.pubtator notes.txt --output out.pubtator [--format pubtator|jsonl]
    bioprune evaluate --gold CDR_TestSet.PubTator.txt --output results/evaluate_dense.json

Bad input ends the run with one line naming the file and line, and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from bioprune.errors import InputError

logger = logging.getLogger("bioprune")
CHUNK_DOCS = 256  # documents tokenised, run and written together: bounds memory on big inputs


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _all_documents(paths: list[str], fmt: str):
    from bioprune.io.inputs import iter_documents

    for path in paths:
        yield from iter_documents(path, fmt)


def _config(args, has_exit_heads: bool):
    from bioprune.config import PruningConfig

    controller = args.controller or ("rule" if has_exit_heads else "none")
    try:
        return PruningConfig(controller=controller, aggressiveness=args.aggressiveness,
                             min_keep_ratio=args.min_keep_ratio, prune_layers=tuple(args.prune_layers),
                             recovery=args.recovery)
    except ValueError as err:
        raise InputError("command line", str(err)) from None


def _engine(args):
    from bioprune.engine import DEFAULT_MODEL_DIR, PruningEngine
    from bioprune.exits import EXIT_HEADS_FILE

    if args.model is not None and not Path(args.model).is_dir():
        raise InputError(args.model, "model directory not found")
    has_exits = Path(args.model or DEFAULT_MODEL_DIR, EXIT_HEADS_FILE).is_file()
    try:
        return PruningEngine.from_pretrained(args.model, config=_config(args, has_exits), device=args.device)
    except ValueError as err:
        raise InputError(args.model or "shipped model", str(err)) from None


def cmd_annotate(args) -> int:
    from tqdm import tqdm

    from bioprune.io.jsonl import format_jsonl
    from bioprune.io.pubtator import format_pubtator

    for path in args.inputs:  # fail before loading the model or touching the output
        if not Path(path).is_file():
            raise InputError(path, "no such file")
    engine = _engine(args)
    formatter = format_pubtator if args.format == "pubtator" else format_jsonl
    counts: Counter = Counter()
    n_docs = 0
    started = time.time()
    to_stdout = args.output == "-"
    tmp = Path(f"{args.output}.partial")  # renamed into place only when the whole run succeeded
    out = sys.stdout if to_stdout else open(tmp, "w", encoding="utf-8")
    try:
        with tqdm(desc="annotate", unit="doc", file=sys.stderr, disable=args.quiet) as bar:
            for chunk in _chunks(_all_documents(args.inputs, args.input_format), CHUNK_DOCS):
                for annotation, document in zip(engine.annotate(chunk, batch_size=args.batch_size), chunk):
                    out.write(formatter(annotation, document))
                    counts.update(e.label for e in annotation.entities)
                n_docs += len(chunk)
                bar.update(len(chunk))
    finally:
        if not to_stdout:
            out.close()
    if not to_stdout:
        if n_docs == 0:
            tmp.unlink()
        else:
            os.replace(tmp, args.output)
    if n_docs == 0:
        raise InputError(", ".join(args.inputs), "no documents found")
    summary = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items())) or "no entities"
    print(f"annotated {n_docs} documents in {time.time() - started:.1f} s ({summary}) -> {args.output}",
          file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from bioprune.evaluation import evaluate_engine
    from bioprune.io.pubtator import read_pubtator

    from dataclasses import asdict

    from bioprune.config import DENSE

    gold = read_pubtator(args.gold)
    engine = _engine(args)
    started = time.time()
    scores = evaluate_engine(engine, gold, batch_size=args.batch_size)
    result = {
        "command": "bioprune " + " ".join(sys.argv[1:]),
        "gold": {"path": str(args.gold), "md5": hashlib.md5(Path(args.gold).read_bytes()).hexdigest()},
        "model": str(args.model or "shipped"),
        "config": asdict(engine.config),
        "elapsed_s": time.time() - started,
        **scores,
    }
    print(format_scores(scores))
    if engine.config.enabled:  # the dense model on the same weights, same run: the F1 drop
        dense = evaluate_engine(engine.with_config(DENSE), gold, batch_size=args.batch_size)
        result["dense"] = {k: dense[k] for k in ("mention", "seqeval")}
        result["f1_drop_points"] = {t: 100 * (dense["mention"][t]["f1"] - scores["mention"][t]["f1"])
                                    for t in scores["mention"]}
        print(format_pruning(result))
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
    return "\n".join(rows)


def format_pruning(result: dict) -> str:
    p = result["pruning"]
    drop = result["f1_drop_points"]["micro"]
    return (f"dense micro F1 {result['dense']['mention']['micro']['f1']:.4f}, pruned "
            f"{result['mention']['micro']['f1']:.4f} (drop {drop:.2f} points); tokens pruned "
            f"{p['tokens_pruned_ratio']:.1%}, FLOPs saved {p['flops_saved_ratio']:.1%}, "
            f"recovery on {p['recovery_rate_documents']:.1%} of documents")


def build_parser() -> argparse.ArgumentParser:
    from bioprune.config import PruningConfig

    parser = argparse.ArgumentParser(prog="bioprune", description="Chemical and disease NER with adaptive token pruning.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", help="model directory (default: the shipped model)")
        p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device (default cpu)")
        d = PruningConfig()
        p.add_argument("--controller", choices=["none", "rule", "mlp"],
                       help=f"pruning controller; none = dense (default {d.controller} when the model "
                            "has exit heads, else none)")
        p.add_argument("--lambda", dest="aggressiveness", type=float, default=d.aggressiveness,
                       help=f"pruning aggressiveness λ (default {d.aggressiveness})")
        p.add_argument("--min-keep-ratio", type=float, default=d.min_keep_ratio,
                       help=f"fraction of tokens that always stay (default {d.min_keep_ratio})")
        p.add_argument("--prune-layers", type=int, nargs="+", default=list(d.prune_layers),
                       help=f"prune after this many layers (default {' '.join(map(str, d.prune_layers))})")
        p.add_argument("--no-recovery", dest="recovery", action="store_false",
                       help="never re-insert pruned tokens")

    p = sub.add_parser("annotate", help="annotate PubTator or plain-text files")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="PubTator file or text file (one document per line)")
    p.add_argument("--output", required=True, help="output file ('-' for standard output)")
    p.add_argument("--format", default="pubtator", choices=["pubtator", "jsonl"], help="output format")
    p.add_argument("--input-format", default="auto", choices=["auto", "pubtator", "text"],
                   help="input format (default: detected from the first line)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("evaluate", help="score against gold PubTator (exact mention match + seqeval)")
    p.add_argument("--gold", required=True, help="gold PubTator file")
    p.add_argument("--output", help="results JSON to write")
    common(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        print(f"bioprune: error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except InputError as err:
        if args.command == "annotate" and args.output != "-":
            Path(f"{args.output}.partial").unlink(missing_ok=True)
        print(f"bioprune: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"bioprune: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
