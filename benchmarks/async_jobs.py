"""Async jobs against sync ones: jobs that each wait 100 ms (``await asyncio.sleep(0.1)``, or
``time.sleep(0.1)`` for the sync case), drained by one ``jobkit worker --max-processes 2``.

Measures, each as the median of several runs, from the database's timestamps (first request
created to last result written), with the worker already running and idle when the jobs arrive:
  - 10,000 async jobs, at the default ``--async-concurrency`` (100 per child) and at 500;
  - the same jobs as sync ones: a sync job holds its child for its 100 ms, so 10,000 would take
    over eight minutes on two children; ``--sync-jobs`` (default 200) are drained and the time
    for 10,000 is extrapolated from their rate (reported as such);
  - and, for scale, the drain rate of 10,000 no-op sync jobs by the same worker: the floor that
    jobkit's own bookkeeping (claims, results) sets on this machine at this moment.

    python benchmarks/async_jobs.py                    # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/async_jobs.py --runs 3 --record  # also write benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import AsyncNap, Nap  # noqa: E402
from throughput import (  # noqa: E402
    SCHEMA,
    drain,
    machine_baseline,
    median,
    print_line,
    query_one,
    record,
    reset,
    wait_until,
    worker,
)

from jobkit import Job, enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

WAIT = 0.1
"""Seconds each job waits."""
CHILDREN = ["--max-processes", "2"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    parser.add_argument("--jobs", type=int, default=10_000, help="async jobs per drain")
    parser.add_argument("--sync-jobs", type=int, default=200, help="sync jobs per drain")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    runtime.store.migrate()
    set_runtime(runtime)
    assert runtime.settings.database_url is not None
    machine = machine_baseline(runtime.settings.database_url)
    print_line("machine", machine)
    figures: dict[str, object] = {"wait_s": WAIT, "children": 2, "sync_jobs": args.sync_jobs}

    for label, concurrency in (("async_default", None), ("async_concurrency_500", 500)):
        flags = CHILDREN + (
            [] if concurrency is None else ["--async-concurrency", str(concurrency)]
        )
        seconds = median(
            args.runs, lambda flags=flags: drain_waiting(runtime, AsyncNap, args.jobs, flags)
        )
        figures[f"{label}_s"] = seconds
        figures[f"{label}_per_s"] = args.jobs / seconds
        print_line(
            f"{args.jobs:,} async jobs, {' '.join(flags)}",
            f"{seconds:.2f} s ({args.jobs / seconds:,.0f} jobs/s)",
        )

    seconds = median(args.runs, lambda: drain_waiting(runtime, Nap, args.sync_jobs, CHILDREN))
    rate = args.sync_jobs / seconds
    figures["sync_s"] = seconds
    figures["sync_per_s"] = rate
    figures["sync_extrapolated_s"] = args.jobs / rate
    print_line(
        f"{args.sync_jobs:,} sync jobs, {' '.join(CHILDREN)}",
        f"{seconds:.2f} s ({rate:,.1f} jobs/s; {args.jobs:,} would take {args.jobs / rate:,.0f} s)",
    )
    floor = median(args.runs, lambda: drain(runtime, args.jobs, CHILDREN))
    figures["noop_floor_per_s"] = floor
    print_line(f"{args.jobs:,} no-op sync jobs, {' '.join(CHILDREN)}", f"{floor:,.0f} jobs/s")
    runtime.close()
    if args.record:
        record(machine, figures, args, name="async-jobs")


def drain_waiting(runtime: Runtime, job_class: type[Job], count: int, flags: list[str]) -> float:
    """Seconds from the first request's creation to the last result, by the database's clock."""
    reset(runtime)
    with worker(runtime, flags):
        enqueue_many([job_class(number, WAIT) for number in range(count)])
        wait_until(lambda: runtime.store.stats().total.successful >= count, timeout=900)
        return query_one(
            runtime,
            "SELECT extract(epoch FROM max(ended_at) - min(created_at)) FROM {}.results",
        )


if __name__ == "__main__":
    main()
