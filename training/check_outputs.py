"""Fingerprint the engine's outputs on a PubTator corpus for every controller and precision.

    python -m training.check_outputs --gold ../shared/data/bc5cdr/CDR_TestSet.PubTator.txt --output runs/outputs-after.json
    python -m training.check_outputs --compare runs/outputs-before.json runs/outputs-after.json

A refactor that must not change behaviour (issue 19) runs this before and after: each setting's
entities (offsets, labels, scores to the last bit, MeSH IDs), its pruning trace (pruned tokens,
recoveries, keep ratio, FLOPs saved) and its PubTator output are hashed per document, and
``--compare`` lists every setting and document that differs (exit 1), or says they are identical.
Only the engine's public surface is used (``PruningEngine``, ``PruningConfig``, ``Annotation.to_dict``,
``format_pubtator``), so the same script runs on the code before and after the change.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# (name, PruningConfig keyword arguments): each controller at each precision, recovery as each ships
SETTINGS = [(f"{controller}-{precision}", {"controller": controller, "precision": precision})
            for controller in ("none", "rule", "mlp") for precision in ("fp32", "bf16", "int8")]
SETTINGS += [(f"{controller}-bf16-recovery", {"controller": controller, "precision": "bf16", "recovery": True})
             for controller in ("rule", "mlp")]


def fingerprint(annotation, document) -> str:
    """sha256 of what a user gets for one document: the entities, the trace and the PubTator lines."""
    from bioprune.io.pubtator import format_pubtator

    record = annotation.to_dict()
    payload = json.dumps({"entities": record.get("entities"), "trace": record.get("trace"),
                          "pubtator": format_pubtator(annotation, document)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def run(gold: str, threads: int, limit: int) -> dict:
    import torch

    from bioprune import PruningConfig, PruningEngine
    from bioprune.io.pubtator import read_pubtator

    torch.set_num_threads(threads)
    documents = [d.to_document() for d in read_pubtator(gold)[: limit or None]]
    engine = PruningEngine.from_pretrained()
    result = {"gold": gold, "n_documents": len(documents), "settings": {}}
    for name, values in SETTINGS:
        annotations = engine.with_config(PruningConfig(**values)).annotate(documents)
        result["settings"][name] = {a.id: fingerprint(a, d) for a, d in zip(annotations, documents)}
        print(f"{name}: {len(annotations)} documents", file=sys.stderr)
    return result


def compare(before: dict, after: dict) -> list[str]:
    """One line per setting or document whose fingerprint differs (empty: identical)."""
    problems = []
    for name in sorted(set(before["settings"]) | set(after["settings"])):
        old, new = before["settings"].get(name), after["settings"].get(name)
        if old is None or new is None:
            problems.append(f"{name}: only in {'after' if old is None else 'before'}")
            continue
        changed = [doc for doc in old if old[doc] != new.get(doc)] + [doc for doc in new if doc not in old]
        if changed:
            problems.append(f"{name}: {len(changed)} of {len(old)} documents differ, e.g. {changed[:3]}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", help="a PubTator file (its texts are annotated)")
    parser.add_argument("--output", help="where the fingerprints go (JSON)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit-docs", type=int, default=0, help="0: every document")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="two fingerprint files")
    ns = parser.parse_args(argv)
    if ns.compare:
        before, after = (json.loads(Path(p).read_text()) for p in ns.compare)
        problems = compare(before, after)
        print("\n".join(problems) if problems else
              f"identical: {len(after['settings'])} settings x {after['n_documents']} documents")
        return 1 if problems else 0
    if not (ns.gold and ns.output):
        parser.error("--gold and --output (or --compare BEFORE AFTER)")
    Path(ns.output).write_text(json.dumps(run(ns.gold, ns.threads, ns.limit_docs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
