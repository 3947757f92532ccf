"""The batch annotator on Ray Data: one model per actor, one input file per shard.

    bioprune annotate pubmed/*.xml.gz --output annotated/ --ray --num-actors 8 --cpus-per-actor 2
    # on a cluster: RAY_ADDRESS=auto (or --ray-address ray://head:10001); see docs/batch_annotation.md

The unit of work is an input file (PubMed ships ~1,300 baseline files of up to 30,000 citations).
``ray.data.from_items`` makes one block per file; ``map_batches`` with a fixed
``ActorPoolStrategy`` hands each actor one file at a time. An actor loads the engine once and runs
the single-process loop (:func:`bioprune.batch_run.annotate_files`) on its file: it streams the
records (sharded reads), annotates them chunk by chunk and commits each chunk to
``OUTPUT_DIR/<file stem><ext>`` with its own journal (sharded writes). Only paths and per-file totals
travel through Ray, never the text, so the object store stays small and there is no shuffle;
each output file has its input file's records in input order, byte-identical to a single-process
run of that file with the same settings.

Resume works at two levels: a finished file (output + ``.summary.json``) is skipped, an interrupted
one continues from its journal. Actors always call the loop with ``resume=True``, so a task that
Ray Data retries after an actor died (its actor pools restart actors and retry tasks by default)
picks up where it stopped; the driver decides once, up front, whether this is a fresh run (it
clears old results) or a resume.

Every shard output is checked by the driver before anything is written (none may be an input
file, nor a device, FIFO or symlink: :func:`bioprune.io.output_target.check_paths`); the driver
holds ``OUTPUT_DIR/summary.json.lock`` for the whole job, so a second job on the same directory is
refused, and each actor claims its shard's output and lock through ``annotate_files``, as a
single-process run does.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bioprune.batch_run import DEFAULT_MAX_DOC_CHARS, MEMORY_MODES, RunStats, annotate_files, limit_malloc_growth
from bioprune.config import PruningConfig
from bioprune.errors import InputError
from bioprune.io.checkpoint import completed_state, journal_path, summary_path
from bioprune.io.output_target import check_paths, claim_output
from bioprune.io.outputs import output_format

JOB_SUMMARY = "summary.json"  # the job's totals in the output directory; its lock is summary.json.lock
_KNOWN_SUFFIXES = re.compile(r"(\.(xml|json|jsonl|ndjson|txt|pubtator|bioc|tsv))?(\.gz)?$", re.I)


@dataclass(frozen=True)
class RayJob:
    """Everything an actor needs; plain values only, so it pickles to any node."""

    inputs: tuple[str, ...]
    output_dir: str
    output_format: str = "pubtator"
    input_format: str = "auto"
    model: str | None = None  # None: the shipped model (installed with the package on every node)
    config: dict = field(default_factory=dict)  # PruningConfig fields
    device: str = "cpu"
    batch_size: int = 16
    chunk_size: int = 256
    resume: bool = False
    num_actors: int = 2  # size of the actor pool: models loaded at once
    cpus_per_actor: int = 1  # Ray CPUs per actor, also its torch threads
    address: str | None = None  # Ray cluster address; None: RAY_ADDRESS, else a local Ray
    fingerprint: dict = field(default_factory=dict)  # the job identity, for each file's journal
    quiet: bool = False  # no Ray Data progress bars or progress logging
    memory: str = MEMORY_MODES[0]  # the actors' malloc set-up (bioprune.batch_run.limit_malloc_growth)
    max_doc_chars: int | None = DEFAULT_MAX_DOC_CHARS  # longer documents are failed records; None: no limit

    def shard_fingerprint(self, source: str | Path) -> dict:
        stat = Path(source).stat()
        return {**self.fingerprint, "inputs": [{"path": str(Path(source).resolve()), "size": stat.st_size,
                                                "mtime_ns": stat.st_mtime_ns}]}


def shard_name(path: str | Path) -> str:
    """``medline16n0902.xml.gz`` -> ``medline16n0902``: the stem of a shard's output files."""
    return _KNOWN_SUFFIXES.sub("", Path(path).name) or Path(path).name


def shard_outputs(job: RayJob, extension: str) -> list[Path]:
    """One output path per input file; InputError when two inputs would write the same file."""
    outputs = [Path(job.output_dir) / (shard_name(p) + extension) for p in job.inputs]
    seen: dict[Path, str] = {}
    for path, source in zip(outputs, job.inputs):
        if path in seen:
            raise InputError(source, f"writes the same shard {path.name} as {seen[path]}: with --ray, "
                             "input file names must differ once .xml/.gz/... are removed")
        seen[path] = source
    return outputs


class ShardAnnotator:
    """A Ray actor: one engine and (with ``link``) its linker, loaded once; each call annotates whole
    input files."""

    def __init__(self, job: RayJob):
        limit_malloc_growth(job.memory)  # each actor is a long-running process: the same memory set-up
        import torch

        from bioprune.engine import PruningEngine

        torch.set_num_threads(max(1, job.cpus_per_actor))
        config = PruningConfig(**{**job.config, "prune_layers": tuple(job.config.get("prune_layers", ()))}) \
            if job.config else None
        self.engine = PruningEngine.from_pretrained(job.model, config=config, device=job.device)
        if self.engine.config.link:
            self.engine.linker  # noqa: B018 -- loaded now, once per actor, not inside the first file's time
        self.fmt = output_format(job.output_format)
        self.job = job

    def __call__(self, batch: dict) -> dict:
        stats, rss = [], []
        for source, output in zip(batch["input"], batch["output"]):
            result = annotate_files(self.engine, [str(source)], str(output), self.fmt,
                                    input_format=self.job.input_format, chunk_size=self.job.chunk_size,
                                    batch_size=self.job.batch_size, resume=True,
                                    max_doc_chars=self.job.max_doc_chars, fingerprint=self.job.shard_fingerprint(source))
            stats.append(json.dumps(result.to_dict()))
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB -> MiB (Linux)
        return {"input": list(batch["input"]), "stats": stats, "peak_rss_mb": rss,
                "actor": [f"{os.uname().nodename}:{os.getpid()}"] * len(stats)}


def init_local_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS) if given, else start a local Ray with ``num_cpus``.

    Workers of a local Ray get this checkout on their PYTHONPATH, so ``bioprune`` imports there even
    without ``pip install``; on a cluster, install bioprune on every node instead.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false",
                                       "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}})


def run_on_ray(job: RayJob) -> tuple[RunStats, list[dict]]:
    """Annotate every input file of ``job`` on Ray; the summed totals and one row per file (in input
    order; ``peak_rss_mb`` is the peak memory of the actor that ran it, 0 for a file done earlier)."""
    fmt = output_format(job.output_format)
    outputs = shard_outputs(job, fmt.extension)
    for path in outputs:  # before anything is written or cleared: no shard may land on an input
        check_paths(path, job.inputs)
    with claim_output(Path(job.output_dir) / JOB_SUMMARY, job.inputs):  # one job per output directory
        return _run_shards(job, outputs)


def _run_shards(job: RayJob, outputs: list[Path]) -> tuple[RunStats, list[dict]]:
    """:func:`run_on_ray` once the output directory is claimed."""
    import ray

    interrupted = [p for p in outputs if journal_path(p).exists()]
    if interrupted and not job.resume:
        raise InputError(str(journal_path(interrupted[0])), f"an interrupted run left {len(interrupted)} "
                         "journal(s) in the output directory: pass --resume to continue, or delete them to "
                         "start over")
    if not job.resume:  # a fresh run: earlier results of these shards must not count as done
        for path in outputs:
            summary_path(path).unlink(missing_ok=True)
    items, done = [], {}
    for source, output in zip(job.inputs, outputs):
        state = completed_state(output, job.shard_fingerprint(source)) if job.resume else None
        if state is not None:  # finished by an earlier run of this job: no actor needed
            done[str(Path(source).resolve())] = {"stats": json.dumps(state), "peak_rss_mb": 0.0, "actor": ""}
        else:
            items.append({"input": str(Path(source).resolve()), "output": str(output.resolve())})
    rows = []
    if items:
        init_local_ray(num_cpus=job.num_actors * job.cpus_per_actor, address=job.address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = not job.quiet
        if job.quiet:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(ShardAnnotator, fn_constructor_kwargs={"job": job}, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=min(job.num_actors, len(items)),
                                                               max_tasks_in_flight_per_actor=1),
                            num_cpus=job.cpus_per_actor, num_gpus=1 if job.device.startswith("cuda") else None)
        rows = ds.take_all()
    by_input = {**done, **{str(row["input"]): row for row in rows}}
    total, shards = RunStats(), []
    for source in job.inputs:
        row = by_input[str(Path(source).resolve())]
        stats = RunStats.from_dict(json.loads(row["stats"]))
        total.add(stats)
        shards.append({"input": str(source), "actor": str(row["actor"]), "peak_rss_mb": float(row["peak_rss_mb"]),
                       **stats.to_dict()})
    return total, shards


def job_summary(job: RayJob, total: RunStats, shards: list[dict], wall_s: float) -> dict:
    """The run's summary (written to OUTPUT_DIR/summary.json by the CLI)."""
    return {"job": {k: v for k, v in asdict(job).items() if k != "fingerprint"}, "wall_s": wall_s,
            "docs_per_s": total.documents / wall_s if wall_s else 0.0, "totals": total.to_dict(),
            "shards": shards, "python": sys.version.split()[0]}
