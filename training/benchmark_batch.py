"""Batch annotation throughput on the MEDLINE slice: dense vs pruned, single process vs Ray local, peak memory.

    python -m training.benchmark_batch --data ../shared/data/pubmed/medline16n0902.xml.gz \
        --output results/benchmark_batch.json [--model DIR] [--threads 2] [--rounds 2]
    python -m training.benchmark_batch --render docs/batch_annotation.md   # tables from the JSON only

Every measurement is a fresh ``bioprune annotate`` process, so its peak RSS (``os.wait4``) is its
own: the slice is split into ``--shards`` PubMed XML files (whole citations, same text), then

- single process: ``bioprune annotate SHARDS...`` on ``--threads`` torch threads, three settings
  (:data:`SETTINGS`): the exact dense model (``--controller none --precision fp32``), the default
  (no flags: what every face runs) and a faster pruned one (``--controller C --lambda L
  --prune-layers K.. --no-frozen-context``, default precision: the MLP's point before issue 16, which
  trades agreement with dense for throughput); abstracts/s = documents / the run's own annotate time (reading, running and writing;
  model load excluded), the settings alternating for ``--rounds`` rounds, medians reported;
- Ray local: ``bioprune annotate SHARDS... --ray --num-actors A --cpus-per-actor C`` with A*C =
  ``--threads``; abstracts/s = documents / the busiest actor's annotate time (actors run in
  parallel; Ray start-up and model loading are reported apart, as end-to-end seconds);
- memory: the default single-process run on the shards given 1, 4 and ``--memory-repeats`` times,
  in each ``--memory`` mode (:data:`bioprune.batch_run.MEMORY_MODES`): streaming means the peak RSS
  should not grow with the input; the modes trade peak memory for speed.

The cost of annotating all of PubMed (``--pubmed-abstracts``) follows from the measured per-core
throughput and an assumed price per core-hour (``--usd-per-core-hour``, an on-demand cloud vCPU; set
your own), assuming throughput scales linearly with cores (files are independent shards).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bioprune.batch_run import MEMORY_MODES
from bioprune.engine import DEFAULT_MODEL_DIR
from bioprune.types import flops_saved_ratio
from training.analysis.common import command_line, parse_dataclass, write_json_atomic
from training.analysis.timing import cpu_model
from training.render_readme import fill


@dataclass(frozen=True)
class BatchBenchArgs:
    data: str = "../shared/data/pubmed/medline16n0902.xml.gz"  # MEDLINE/PubMed XML slice (plain or .gz)
    output: str = "results/benchmark_batch.json"  # results JSON
    model: str = str(DEFAULT_MODEL_DIR)  # model directory (with exit heads for the pruned runs)
    threads: int = 2  # CPU cores used: torch threads single-process, actors x cpus-per-actor on Ray
    shards: int = 4  # the slice is split into this many XML files (Ray's unit of work)
    limit_docs: int = 0  # 0: every citation of the slice; else the first N (quick checks)
    rounds: int = 2  # rounds of the settings alternating; medians reported
    batch_size: int = 16  # windows per forward pass
    chunk_size: int = 256  # records per committed chunk
    ray: bool = True  # also measure Ray local (needs pip install "bioprune[ray]")
    ray_cpus_per_actor: int = 1  # actors = threads // this
    memory_repeats: int = 16  # memory check: the input given 1, 4 and this many times
    controller: str = "mlp"  # the pruned setting's controller ("rule" or "mlp")
    aggressiveness: float = 6.0  # λ of the pruned setting
    prune_layers: tuple[int, ...] = (1, 2)  # its pruning points (without frozen context)
    pubmed_abstracts: int = 36_000_000  # PubMed records to estimate for (~36M citations, 2024)
    usd_per_core_hour: float = 0.0425  # ASSUMPTION: on-demand x86 vCPU-hour (e.g. a c7i/c6i class VM)
    workdir: str = ""  # scratch directory for shards and outputs ("" = a temporary one)


def split_slice(data: str, workdir: Path, shards: int, limit_docs: int) -> tuple[list[Path], int]:
    """Write the slice's citations round-robin into ``shards`` MedlineCitationSet files."""
    from lxml import etree

    from bioprune.io.compression import open_binary

    parts: list[list[bytes]] = [[] for _ in range(shards)]
    n = 0
    with open_binary(data) as handle:
        for _, element in etree.iterparse(handle, events=("end",), tag="MedlineCitation"):
            parts[n % shards].append(etree.tostring(element))
            element.clear()
            n += 1
            if limit_docs and n >= limit_docs:
                break
    paths = [workdir / f"shard{i:02d}.xml" for i in range(shards)]
    for path, part in zip(paths, parts):
        path.write_bytes(b"<?xml version='1.0' encoding='UTF-8'?>\n<MedlineCitationSet>\n"
                         + b"\n".join(part) + b"\n</MedlineCitationSet>\n")
    return paths, n


SETTINGS = ("dense_fp32", "default", "pruned")  # in the order each round runs them
LABELS = {"dense_fp32": "dense fp32 (exact)", "default": "default", "pruned": "pruned"}


def run_annotate(args: BatchBenchArgs, inputs: list[Path], output: Path, setting: str, ray: bool,
                 memory: str = MEMORY_MODES[0]) -> dict:
    """One ``bioprune annotate`` process: its summary, peak RSS and end-to-end seconds."""
    flags = {"dense_fp32": ["--controller", "none", "--precision", "fp32"], "default": [],  # the default: no flags
             "pruned": ["--controller", args.controller, "--lambda", str(args.aggressiveness),
                        "--prune-layers", *map(str, args.prune_layers), "--no-frozen-context"]}[setting]
    cmd = [sys.executable, "-m", "bioprune.cli", "annotate", *map(str, inputs), "--output", str(output),
           "--model", args.model, "--quiet", "--batch-size", str(args.batch_size),
           "--chunk-size", str(args.chunk_size), "--memory", memory, *flags]
    threads = args.ray_cpus_per_actor if ray else args.threads
    if ray:
        cmd += ["--ray", "--num-actors", str(max(1, args.threads // args.ray_cpus_per_actor)),
                "--cpus-per-actor", str(args.ray_cpus_per_actor)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "RAY_ADDRESS": ""}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak RSS
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr.decode()[-3000:]}")
    result = {"end_to_end_s": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024}
    if ray:
        summary = json.loads((output / "summary.json").read_text())
        busy: dict[str, float] = {}
        for shard in summary["shards"]:
            busy[shard["actor"]] = busy.get(shard["actor"], 0.0) + shard["wall_s"]
        totals = summary["totals"]
        result.update(documents=totals["documents"], annotate_s=max(busy.values()), actors=len(busy),
                      actor_peak_rss_mb=max(s["peak_rss_mb"] for s in summary["shards"]),
                      driver_peak_rss_mb=result.pop("peak_rss_mb"), totals=totals)
    else:
        totals = json.loads(Path(f"{output}.summary.json").read_text())["state"]
        result.update(documents=totals["documents"], annotate_s=totals["wall_s"], totals=totals)
    result["abstracts_per_s"] = result["documents"] / result["annotate_s"]
    return result


def _median_entry(runs: list[dict]) -> dict:
    keys = ("abstracts_per_s", "annotate_s", "end_to_end_s")
    entry = {k: statistics.median(r[k] for r in runs) for k in keys}
    for k in ("peak_rss_mb", "actor_peak_rss_mb", "driver_peak_rss_mb"):
        if k in runs[0]:
            entry[k] = max(r[k] for r in runs)
    entry["rounds"] = [{k: r[k] for k in (*keys, "documents")} for r in runs]
    entry["ms_per_abstract"] = 1000 / entry["abstracts_per_s"]
    last = runs[-1]["totals"]
    entry["pruning"] = {"tokens_pruned_ratio": last["tokens_pruned"] / last["tokens"] if last["tokens"] else 0.0,
                        "flops_saved_ratio": flops_saved_ratio(last["flops"], last["dense_flops"])}
    entry["entities"] = last["entities"]
    return entry


def cost_estimate(args: BatchBenchArgs, abstracts_per_s: float, cores: int) -> dict:
    per_core = abstracts_per_s / cores
    core_hours = args.pubmed_abstracts / per_core / 3600
    return {"abstracts_per_s_per_core": per_core, "core_hours": core_hours,
            "usd": core_hours * args.usd_per_core_hour, "usd_per_core_hour_assumed": args.usd_per_core_hour,
            "wall_hours_by_cluster_cores": {str(c): core_hours / c for c in (16, 64, 256, 1024)}}


def run(args: BatchBenchArgs) -> dict:
    with tempfile.TemporaryDirectory(dir=args.workdir or None) as tmp:
        work = Path(tmp)
        shards, n_docs = split_slice(args.data, work, args.shards, args.limit_docs)
        settings = [(w, s) for w in ("single", "ray")[:2 if args.ray else 1] for s in SETTINGS]
        runs: dict[str, list[dict]] = {f"{w}_{s}": [] for w, s in settings}
        for r in range(args.rounds):
            for where, setting in settings:  # the settings alternate within each round
                name = f"{where}_{setting}"
                out = work / f"{name}-{r}" / ("out" if where == "ray" else "out.pubtator")
                out.parent.mkdir()
                runs[name].append(run_annotate(args, shards, out, setting, ray=where == "ray"))
                print(f"round {r} {name}: {runs[name][-1]['abstracts_per_s']:.1f} abstracts/s", file=sys.stderr)
        systems = {name: _median_entry(rs) for name, rs in runs.items()}
        memory: dict[str, dict] = {mode: {} for mode in MEMORY_MODES}
        for mode in MEMORY_MODES:
            for repeats in sorted({1, min(4, args.memory_repeats), args.memory_repeats}):
                out = work / f"memory-{mode}-{repeats}" / "out.pubtator"
                out.parent.mkdir()
                res = run_annotate(args, shards * repeats, out, "default", ray=False, memory=mode)
                memory[mode][str(repeats)] = {k: res[k] for k in ("documents", "peak_rss_mb", "abstracts_per_s")}
                print(f"memory {mode} x{repeats}: {res['peak_rss_mb']:.0f} MB", file=sys.stderr)
    results = {"args": asdict(args), "n_abstracts": n_docs, "python": sys.version.split()[0], "cpu": cpu_model(),
               "systems": systems, "memory_by_mode": memory,
               "memory_growth_ratio": {mode: m[str(args.memory_repeats)]["peak_rss_mb"] / m["1"]["peak_rss_mb"]
                                       for mode, m in memory.items()}}
    for where in ("single", "ray"):
        for setting in ("default", "pruned"):
            if f"{where}_{setting}" in systems:
                results[f"{where}_{setting}_vs_dense_fp32_speedup"] = (
                    systems[f"{where}_{setting}"]["abstracts_per_s"] / systems[f"{where}_dense_fp32"]["abstracts_per_s"])
    for entry in systems.values():
        entry["pubmed_cost_estimate"] = cost_estimate(args, entry["abstracts_per_s"], args.threads)
    # the estimate for what a user runs with no flags: the faster of the default's single-process and Ray runs
    best = max((k for k in systems if k.endswith("_default")), key=lambda k: systems[k]["abstracts_per_s"])
    results["pubmed_cost_estimate"] = {"from": best, **cost_estimate(args, systems[best]["abstracts_per_s"],
                                                                      args.threads)}
    return results


# --- the docs table, from the JSON only ----------------------------------------------------------

def render_markdown(res: dict) -> str:
    a = res["args"]
    layers = a.get("prune_layers")  # older results files: the MLP's point of their day
    pruned = f"pruned ({a['controller']} λ={a['aggressiveness']:g}" + (
        f" after layers {', '.join(map(str, layers))})" if layers else ")")
    names = {f"{where}_{key}": f"{place}, {pruned if key == 'pruned' else LABELS[key]}"
             for where, place in (("single", "single process"), ("ray", "Ray local")) for key in SETTINGS}
    rows = ["| setting | abstracts/s | ms/abstract | vs dense fp32 | end-to-end s | peak RSS MB | tokens pruned "
            "| FLOPs saved |", "|---|---|---|---|---|---|---|---|"]
    for key, label in names.items():
        if key not in res["systems"]:
            continue
        s = res["systems"][key]
        base = res["systems"][key.split("_")[0] + "_dense_fp32"]["abstracts_per_s"]
        rss = s.get("peak_rss_mb") or s.get("actor_peak_rss_mb")
        rows.append(f"| {label} | {s['abstracts_per_s']:.1f} | {s['ms_per_abstract']:.1f} "
                    f"| {s['abstracts_per_s'] / base:.2f}× | {s['end_to_end_s']:.1f} "
                    f"| {rss:.0f} | {s['pruning']['tokens_pruned_ratio']:.1%} | {s['pruning']['flops_saved_ratio']:.1%} |")
    mem = res["memory_by_mode"]
    c = res["pubmed_cost_estimate"]
    hours = ", ".join(f"{h:.1f} h on {cores} cores" for cores, h in c["wall_hours_by_cluster_cores"].items())
    host = f" ({res['cpu']})" if "cpu" in res else ""
    rows += ["", f"{res['n_abstracts']} citations of `{Path(a['data']).name}` in {a['shards']} files, {a['threads']} CPU "
             f"cores{host}, batch {a['batch_size']}, median of {a['rounds']} alternating rounds; Ray peak RSS is per actor.",
             "", "Memory: the default single-process run, the same files given repeatedly, in each `--memory` mode:",
             "", "| `--memory` | " + " | ".join(f"{m['documents']} abstracts" for m in next(iter(mem.values())).values())
             + " | growth |", "|---|" + "---|" * (len(next(iter(mem.values()))) + 1)]
    for mode, runs in res["memory_by_mode"].items():
        rows.append(f"| {mode}{' (default)' if mode == MEMORY_MODES[0] else ''} | "
                    + " | ".join(f"{m['peak_rss_mb']:.0f} MB, {m['abstracts_per_s']:.1f}/s" for m in runs.values())
                    + f" | ×{res['memory_growth_ratio'][mode]:.2f} |")
    rows += ["",
             f"**All of PubMed** ({a['pubmed_abstracts']:,} abstracts) at the measured "
             f"{c['abstracts_per_s_per_core']:.1f} abstracts/s per core ({names[c['from']]}): "
             f"{c['core_hours']:,.0f} core-hours, about **${c['usd']:,.0f}** at an assumed "
             f"${c['usd_per_core_hour_assumed']}/core-hour; {hours} (linear scaling assumed).",
             "", f"`{res.get('command', 'python -m training.benchmark_batch')}` → `{a['output']}`."]
    return "\n".join(rows)


def main(argv=None) -> dict | None:
    args, ns = parse_dataclass(BatchBenchArgs, __doc__, argv, lambda parser: parser.add_argument(
        "--render", metavar="MARKDOWN", help="only fill the results:batch block of this file from --output's JSON"))
    if (render := ns.render):
        body = render_markdown(json.loads(Path(args.output).read_text()))
        Path(render).write_text(fill(Path(render).read_text(encoding="utf-8"), "batch", body), encoding="utf-8")
        return None
    res = run(args)
    res["command"] = command_line("-m training.benchmark_batch", argv)
    write_json_atomic(args.output, res)
    print(render_markdown(res))
    return res


if __name__ == "__main__":
    main()
