"""Page faults and time of the dense engine at the default precision with glibc's malloc thresholds fixed and left alone.

    python -m training.benchmark_allocator --data ../shared/data/bc5cdr/CDR_TestSet.PubTator.txt \
        --output results/benchmark_allocator.json

What :mod:`bioprune.allocator` buys. The thresholds are process state that cannot be undone, so
each mode runs in a process of its own: "fixed" is the engine as shipped, "glibc default" the same
engine with :func:`bioprune.allocator.keep_freed_memory` made a no-op before it loads. Each process
annotates the first ``--limit-docs`` abstracts one call per abstract (batch 1: how an app or
spaCy's ``nlp(text)`` meets them, lengths in document order), then all in one call at batch 16,
each after a warm-up at its batch size (``--warmup-docs`` abstracts), linking off; the modes alternate ``--rounds`` times. Reported per mode and batch
size: the median round's ms per abstract and minor page faults per abstract (pages the kernel had
to zero and map for the process), and the median of the per-round ratios of the two times.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

from bioprune.engine import DEFAULT_MODEL_DIR
from training.analysis.common import command_line, parse_dataclass, write_json_atomic
from training.analysis.timing import cpu_model

MODES = ("glibc default", "fixed")
BATCH_SIZES = (1, 16)


@dataclass(frozen=True)
class AllocatorArgs:
    data: str  # PubTator file whose abstracts are annotated (BC5CDR test)
    output: str = "results/benchmark_allocator.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory
    limit_docs: int = 100  # abstracts annotated per round
    warmup_docs: int = 16  # abstracts annotated before each timed pass, at its batch size, not timed
    rounds: int = 3  # processes per mode, alternating
    threads: int = 2  # torch intra-op threads
    worker: str = ""  # internal: run one round in this mode and print its JSON


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(args: AllocatorArgs) -> dict:
    """One round in this process: {batch size: (seconds, minor page faults)} over the abstracts, and
    {"n": how many abstracts were timed} (fewer than ``limit_docs`` in a short file)."""
    import torch

    import bioprune.engine
    from bioprune.config import DEFAULT, dense_twin
    from bioprune.engine import PruningEngine
    from bioprune.io.pubtator import read_pubtator

    if args.worker == "glibc default":  # the name the engine calls when it is created
        bioprune.engine.keep_freed_memory = lambda: False
    torch.set_num_threads(args.threads)
    engine = PruningEngine.from_pretrained(args.model, config=replace(dense_twin(DEFAULT), link=False))  # measured dense
    texts = [d.text for d in read_pubtator(args.data)][: args.warmup_docs + args.limit_docs]
    warmup, texts = texts[: args.warmup_docs], texts[args.warmup_docs:]
    out: dict = {"n": len(texts)}
    for batch in BATCH_SIZES:  # batch 1 first: a process that has only ever seen single abstracts
        if batch == 1:
            for text in warmup:
                engine.annotate([text], batch_size=1)
        else:
            engine.annotate(warmup, batch_size=batch)
        faults, started = _faults(), time.perf_counter()
        if batch == 1:
            for text in texts:
                engine.annotate([text], batch_size=1)
        else:
            engine.annotate(texts, batch_size=batch)
        out[batch] = (time.perf_counter() - started, _faults() - faults)
    return out


def main(args: AllocatorArgs) -> dict:
    rounds: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            argv = [sys.executable, "-m", "training.benchmark_allocator", "--data", args.data, "--model", args.model,
                    "--limit-docs", str(args.limit_docs), "--warmup-docs", str(args.warmup_docs),
                    "--threads", str(args.threads), "--worker", mode]
            ran = subprocess.run(argv, capture_output=True, text=True, check=True)
            measured = json.loads(ran.stdout.splitlines()[-1])
            n = measured.pop("n")
            rounds[mode].append({int(b): v for b, v in measured.items()})
            print(f"round {r + 1}/{args.rounds} {mode}: " + ", ".join(
                f"batch {b} {s:.2f} s, {f} faults" for b, (s, f) in rounds[mode][-1].items()), flush=True)
    result = {"args": asdict(args), "command": command_line("-m training.benchmark_allocator"), "cpu": cpu_model(),
              "n_abstracts": n, "batch": {}}
    for batch in BATCH_SIZES:
        per_mode = {mode: {"ms_per_abstract": 1e3 * statistics.median(r[batch][0] for r in rounds[mode]) / n,
                           "page_faults_per_abstract": statistics.median(r[batch][1] for r in rounds[mode]) / n,
                           "seconds_per_round": [r[batch][0] for r in rounds[mode]]}
                    for mode in MODES}
        ratios = [d[batch][0] / f[batch][0] for d, f in zip(rounds["glibc default"], rounds["fixed"])]
        result["batch"][str(batch)] = {**per_mode, "speedup_median": statistics.median(ratios)}
    write_json_atomic(args.output, result)
    print(json.dumps(result["batch"], indent=2))
    return result


if __name__ == "__main__":
    parsed = parse_dataclass(AllocatorArgs, __doc__)
    if parsed.worker:
        if parsed.worker not in MODES:
            raise SystemExit(f"--worker must be one of {', '.join(MODES)}")
        print(json.dumps(worker(parsed)))
    else:
        main(parsed)
