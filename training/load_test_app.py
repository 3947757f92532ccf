"""Load test for the Gradio app: concurrent Annotate requests through gradio_client, p50/p95 latency.

    python -m training.load_test_app                                 # launches the app here, shipped model
    python -m training.load_test_app --url http://127.0.0.1:7860     # an app already running (python app.py)

All requests are released at once (a barrier), each from its own thread, and each is timed from
its release to its answer, queueing included: that is the latency a person sees when that many
people press *Annotate* together. Each request runs the chosen setting and the dense model on one
example abstract (``bioprune/app/abstracts/*.txt``, in turn). One warm-up request goes first and is not
counted. Writes ``results/app_load.json``; exits 1 when any request failed.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bioprune.options import DEFAULT_SETTINGS, add_config_arguments
from training.analysis.common import command_line, parse_dataclass, write_json_atomic

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("load_test_app")


@dataclass
class LoadTestArgs:
    """Command-line arguments (``--name value``; a boolean is ``--name`` / ``--no-name``)."""

    url: str | None = None  # an app that is already running; None: launch one in this process
    requests: int = 20  # concurrent requests, released together
    warmup: int = 1  # requests before the measured ones (not counted)
    timeout_s: float = 600.0  # give up on a request after this long (counted as failed)
    output: str = "results/app_load.json"


# The setting the requests run (the app's pruning settings, by key: bioprune.options): the rule
# controller with recovery, so each request runs a pruned pass and the dense one.
LOAD_SETTING = {"controller": "rule", "lambda_": 1.0, "recovery": True}


def parse_args(argv: list[str] | None = None) -> tuple[LoadTestArgs, dict]:
    """The run's arguments and the pruning settings of its requests (every setting of
    bioprune.options is a flag, at :data:`LOAD_SETTING` unless given)."""
    args, ns = parse_dataclass(  # the Annotate tab has no link setting
        LoadTestArgs, __doc__, argv, lambda parser: add_config_arguments(parser, without=("link",), defaults=LOAD_SETTING),
        check=lambda a: (a.requests < 1 or a.warmup < 0) and "--requests must be >= 1 and --warmup >= 0")
    values = vars(ns)
    # sent by name, only where they differ from the app's own defaults (those of bioprune.options)
    return args, {k: v for k, v in values.items() if k in DEFAULT_SETTINGS and (k in LOAD_SETTING or v != DEFAULT_SETTINGS[k])}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def launch_local():
    """The app on the shipped model, served in this process on a free port: (url, settings, close)."""
    import torch

    from bioprune import PruningEngine
    from bioprune.app.settings import AppSettings
    from bioprune.app.ui import build_app, launch

    settings = AppSettings()
    torch.set_num_threads(settings.torch_threads())  # as app.py does
    demo = build_app(PruningEngine.from_pretrained(), settings)
    _, url, _ = launch(demo, settings, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return url.rstrip("/"), settings, demo.close


def run(args: LoadTestArgs, payload: dict, argv: list[str] | None) -> dict:
    from gradio_client import Client

    from bioprune.app.examples import load_examples
    from bioprune.app.settings import AppSettings

    texts = [e.text for e in load_examples(AppSettings().examples_dir)]
    if not texts:
        raise SystemExit("no example abstracts in bioprune/app/abstracts/")
    url, settings, close = (args.url, None, None) if args.url is not None else launch_local()
    try:
        client = Client(url, verbose=False)
        for i in range(args.warmup):
            client.predict(texts[i % len(texts)], **payload, api_name="/annotate")
        barrier = threading.Barrier(args.requests + 1)
        latencies: list[float | None] = [None] * args.requests
        failures: list[str] = []

        def one(i: int) -> None:
            barrier.wait()
            started = time.perf_counter()
            try:
                job = client.submit(texts[i % len(texts)], **payload, api_name="/annotate")
                summary = job.result(timeout=args.timeout_s)[0]
                if "latency" not in summary:
                    raise RuntimeError(f"unexpected answer: {summary[:200]!r}")
                latencies[i] = time.perf_counter() - started
            except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                failures.append(f"request {i}: {type(err).__name__}: {err}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.requests)]
        for t in threads:
            t.start()
        load_before = os.getloadavg()[0]
        barrier.wait()
        wall = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall
    finally:
        if close is not None:
            close()
    done = [x for x in latencies if x is not None]
    import torch

    return {
        "command": command_line("-m training.load_test_app", argv),
        "args": asdict(args),
        "setting": payload,
        "app": ("launched in this process on the shipped model" if args.url is None else args.url),
        "requests": args.requests,
        "completed": len(done),
        "failed": len(failures),
        "failures": failures,
        "latency_s": {"p50": percentile(done, 50), "p95": percentile(done, 95), "mean": sum(done) / len(done)
                      if done else None, "min": min(done, default=None), "max": max(done, default=None)},
        "wall_s": wall,
        "requests_per_s": len(done) / wall if wall else None,
        "app_settings": ({"annotate_concurrency": settings.annotate_concurrency,
                          "queue_max_size": settings.queue_max_size, "torch_threads": torch.get_num_threads()}
                         if settings is not None else None),
        "machine": {"cpus": os.cpu_count(), "load_average_1min_at_start": load_before,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gradio": _version("gradio"), "gradio_client": _version("gradio_client")},
        "note": "latency = release to answer, queueing included; each request runs the chosen setting and the "
                "dense model on one abstract",
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, payload = parse_args(argv)
    result = run(args, payload, argv)
    out = Path(args.output)
    write_json_atomic(out, result)
    lat = result["latency_s"]
    print(f"{result['completed']}/{result['requests']} requests answered, {result['failed']} failed; "
          f"latency p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s (wall {result['wall_s']:.1f} s) -> {out}")
    for line in result["failures"]:
        print("  " + line, file=sys.stderr)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
