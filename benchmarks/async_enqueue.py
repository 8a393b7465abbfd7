"""Enqueue rates of the async API next to the sync one's, in one run on one machine.

Measures, each as the median of several runs, the rate and the producer's CPU time per job (the
rate of one-by-one enqueues is bound by the commit's flush, and on a shared machine it wanders;
the CPU time is what the async path adds or saves):
  - one job per transaction: ``run_in_worker()`` in a loop, ``await arun_in_worker()`` in a loop,
    and ``await arun_in_worker()`` from ``--concurrency`` tasks at once (a web app's requests,
    sharing the async pool);
  - the same with a concurrency key on every job (the enqueue lock and ``should_enqueue``; on
    the async path ``should_enqueue`` runs in a thread);
  - bulk: ``enqueue_many()`` and ``await aenqueue_many()``, ``--jobs`` jobs per call.

The measures take turns, round by round, so a shared machine's drift touches all of them alike.

    python benchmarks/async_enqueue.py                   # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/async_enqueue.py --runs 5 --record # also write benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import Noop  # noqa: E402
from throughput import machine_baseline, print_line, record, reset  # noqa: E402

from jobkit import aenqueue_many, enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA = "jobkit_bench_async"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    parser.add_argument("--single", type=int, default=2_000, help="jobs per one-by-one run")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per bulk call")
    parser.add_argument("--concurrency", type=int, default=10, help="tasks enqueueing at once")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    # jobkit's own plugins only: the figures are jobkit's, whatever else is installed.
    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}), load_entrypoints=False)
    runtime.store.migrate()
    set_runtime(runtime)
    assert runtime.settings.database_url is not None
    machine = machine_baseline(runtime.settings.database_url)
    print_line("machine", machine)
    figures: dict[str, object] = {"concurrency": args.concurrency, "single_jobs": args.single}

    measures: dict[str, tuple[str, Callable[[], tuple[float, float]]]] = {}
    for keyed in (False, True):
        tag, what = ("_keyed", ", keyed") if keyed else ("", "")
        measures[f"sync_one_per_transaction{tag}"] = (
            f"sync, one per transaction{what}",
            lambda keyed=keyed: sync_single(runtime, args.single, keyed),
        )
        measures[f"async_one_per_transaction{tag}"] = (
            f"async, one per transaction{what}",
            lambda keyed=keyed: asyncio.run(async_single(runtime, args.single, keyed, 1)),
        )
        measures[f"async_one_per_transaction{tag}_concurrent"] = (
            f"async, one per transaction, {args.concurrency} tasks{what}",
            lambda keyed=keyed: asyncio.run(
                async_single(runtime, args.single, keyed, args.concurrency)
            ),
        )
    measures["sync_enqueue_many"] = ("sync, enqueue_many", lambda: sync_bulk(runtime, args.jobs))
    measures["async_enqueue_many"] = (
        "async, aenqueue_many",
        lambda: asyncio.run(async_bulk(runtime, args.jobs)),
    )
    # Round by round, every measure in each, so the machine's drift touches all alike.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
    for _ in range(args.runs):
        for name, (_, measure) in measures.items():
            runs[name].append(measure())
    for name, (label, _) in measures.items():
        rate = statistics.median(rate for rate, _ in runs[name])
        cpu = statistics.median(cpu for _, cpu in runs[name])
        figures[f"{name}_per_s"], figures[f"{name}_cpu_us_per_job"] = rate, cpu
        print_line(label, f"{rate:,.0f} jobs/s, {cpu:,.0f} µs CPU per job")
    runtime.close()
    if args.record:
        record(machine, figures, args, name="async-enqueue")


def key(number: int, keyed: bool) -> str:
    return f"k{number}" if keyed else ""


class Clock:
    """Wall and CPU time of this process since it was made: ``rate(count)`` is
    ``(jobs/s, µs of CPU per job)``."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rate(self, count: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return count / wall, cpu / count * 1e6


def sync_single(runtime: Runtime, count: int, keyed: bool) -> tuple[float, float]:
    reset(runtime)
    clock = Clock()
    for number in range(count):
        Noop(number).run_in_worker(concurrency_key=key(number, keyed))
    return clock.rate(count)


def sync_bulk(runtime: Runtime, count: int) -> tuple[float, float]:
    reset(runtime)
    jobs = [Noop(number) for number in range(count)]
    clock = Clock()
    enqueue_many(jobs)
    return clock.rate(count)


async def async_single(
    runtime: Runtime, count: int, keyed: bool, tasks: int
) -> tuple[float, float]:
    """``count`` jobs enqueued one by one by ``tasks`` tasks at once (the pool warmed first)."""
    reset(runtime)
    await Noop(-1).arun_in_worker()
    numbers = iter(range(count))

    async def enqueue() -> None:
        for number in numbers:
            await Noop(number).arun_in_worker(concurrency_key=key(number, keyed))

    clock = Clock()
    await asyncio.gather(*(enqueue() for _ in range(tasks)))
    figures = clock.rate(count)
    await runtime.aclose()
    return figures


async def async_bulk(runtime: Runtime, count: int) -> tuple[float, float]:
    reset(runtime)
    await Noop(-1).arun_in_worker()
    jobs = [Noop(number) for number in range(count)]
    clock = Clock()
    await aenqueue_many(jobs)
    figures = clock.rate(count)
    await runtime.aclose()
    return figures


if __name__ == "__main__":
    main()
