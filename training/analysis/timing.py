"""Wall-clock timing of systems on the same texts, alternating, after warm-up.

One loop, shared by ``training/benchmark_pruning.py`` (dense vs one pruned configuration) and
``training/eval_suite.py`` (dense vs every timed configuration of the suite), so that every speed
number in the README and docs/ is measured the same way:

* per batch size, each system first annotates ``warmup_docs`` texts (allocator, thread pool and
  tokenizer warm-up, not timed);
* then ``rounds`` rounds, each running every system once over all texts in the given order, so
  that slow drifts of the machine (another job, thermal state) hit all systems alike;
* each system's median round gives abstracts/s and ms/abstract; the speedup of a system over the
  first one (the baseline) is the median of the per-round ratios baseline time / system time.

Torch-free: a system is any callable ``annotate(texts, batch_size)``; the caller sets threads.
"""
from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Annotate = Callable[[Sequence[str], int], object]  # annotate(texts, batch_size=...)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU a timing ran on, as "model name (family F, model M)" from ``/proc/cpuinfo`` (or the
    text given), "unknown" elsewhere. Why: machines of one kind can sit on different hosts (an
    "AMD EPYC" of family 25 or 26 differs twice over in bf16 throughput), so a speed ratio says
    little without it."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return "unknown"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return "unknown"
    return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


@dataclass(frozen=True)
class TimingPlan:
    """How to time: rounds per batch size, warm-up texts per system, the batch sizes."""

    rounds: int = 3  # alternating timed rounds per batch size; medians reported
    warmup_docs: int = 32  # texts each system annotates (untimed) before the rounds of a batch size
    batch_sizes: tuple[int, ...] = (1, 16)

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")


def time_systems(systems: Mapping[str, Annotate], texts: Sequence[str], plan: TimingPlan = TimingPlan(),
                 on_run: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time ``systems`` (the first one is the baseline) on ``texts``; one entry per batch size.

    Returns ``{str(batch_size): {"speedup_median", "speedup_per_round", NAME: {...}, ...}}`` where
    the speedups are those of the *last* system over the baseline (the usual two-system case: dense,
    pruned), every other system gets ``"speedup_median_vs_<baseline>"`` inside its own entry, and
    each system's entry holds ``seconds_per_round``, ``median_s``, ``abstracts_per_s`` and
    ``ms_per_abstract``. ``on_run`` is called after every timed run (a progress bar's update).
    """
    if len(systems) < 1 or not texts:
        raise ValueError("need at least one system and one text to time")
    names = list(systems)
    baseline, last = names[0], names[-1]
    out: dict[str, dict] = {}
    for bs in plan.batch_sizes:
        for name in names:
            systems[name](texts[: plan.warmup_docs], bs)
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(plan.rounds):
            for name in names:
                started = clock()
                systems[name](texts, bs)
                times[name].append(clock() - started)
                if on_run is not None:
                    on_run()
        ratios = [b / s for b, s in zip(times[baseline], times[last])]
        entry: dict = {"speedup_median": statistics.median(ratios), "speedup_per_round": ratios}
        for name, ts in times.items():
            med = statistics.median(ts)
            entry[name] = {"seconds_per_round": ts, "median_s": med, "abstracts_per_s": len(texts) / med,
                           "ms_per_abstract": 1000 * med / len(texts)}
            if name not in (baseline, last):
                entry[name][f"speedup_median_vs_{baseline}"] = statistics.median(
                    b / s for b, s in zip(times[baseline], ts))
        logger.info("batch %d: %s", bs, ", ".join(f"{n} {entry[n]['ms_per_abstract']:.1f} ms/abstract" for n in names))
        out[str(bs)] = entry
    return out
