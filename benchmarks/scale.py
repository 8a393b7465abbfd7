"""Drain rate at scale: one ``jobkit worker`` (default flags, its default INFO log going to a
file as to a supervisor's) drains ``--jobs`` pending no-op jobs (default 1,000,000), and the rate
is recorded every second, not just on average, so a drain that slows as the queue empties, or as
dead rows pile up, shows. With ``--history N`` the same drain runs with N results already kept
(filled as ``operations_scale.py`` fills them), for the figure with a big history.

    python benchmarks/scale.py                                  # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/scale.py --jobs 10000 --jobs 1000000 --record
    python benchmarks/scale.py --jobs 100000 --history 10000000 --record

Each ``--jobs`` figure is one drain, in its own schema (``jobkit_scale_drain``; emptied and
vacuumed first), after an ``enqueue_many`` of the jobs (whose rate it prints too). The drain is
timed from the worker's start to the last result by the database's clock, and again from the
first job's start (without the worker's start-up). The server's ``autovacuum`` setting is in the
record: the machine's PostgreSQL runs with it off, the embedded server (no JOBKIT_DATABASE_URL)
with it on, as production servers do.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import operations_scale  # noqa: E402
from bench_jobs import Noop  # noqa: E402
from throughput import machine_baseline, print_line, record  # noqa: E402

from jobkit import enqueue_many  # noqa: E402

DRAIN_SCHEMA = "jobkit_scale_drain"
ENQUEUE_CHUNK = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, action="append", help="pending jobs to drain (repeat for several)"
    )
    parser.add_argument("--history", type=int, default=0, help="results kept before the drain")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()
    args.jobs = args.jobs or [1_000_000]
    args.runs = 1

    schema = operations_scale.SCHEMA if args.history else DRAIN_SCHEMA
    runtime = operations_scale.runtime_for(schema)
    url = runtime.settings.database_url
    assert url is not None
    machine = machine_baseline(url)
    print_line("machine", machine)
    if args.history:
        operations_scale.fill(url, args.history)
        runtime.store.maintain()
    figures: dict[str, object] = {"history": args.history, "schema": schema}
    for count in args.jobs:
        figures[f"drain_{count}"] = drain(runtime, count)
    runtime.close()
    if args.record:
        record(machine, figures, args, name="scale")


def drain(runtime, count: int) -> dict[str, object]:
    """Enqueue ``count`` no-op jobs in a queue of their own, then drain them with one worker,
    sampling the results written each second."""
    schema = runtime.settings.schema
    url = runtime.settings.database_url
    queue = f"scale-{count}"
    identifier = sql.Identifier(schema)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DELETE FROM {}.results WHERE queue = %s").format(identifier), [queue]
        )
        for table in ("requests", "processes", "results", "result_count_changes"):
            connection.execute(sql.SQL("VACUUM {}.{}").format(identifier, sql.Identifier(table)))
    started = time.perf_counter()
    for first in range(0, count, ENQUEUE_CHUNK):
        enqueue_many(
            [Noop(number) for number in range(first, min(count, first + ENQUEUE_CHUNK))],
            queue=queue,
        )
    enqueue_rate = count / (time.perf_counter() - started)
    print_line(f"enqueue_many of {count:,}", f"{enqueue_rate:,.0f} jobs/s")

    samples: list[tuple[float, int]] = []
    env = dict(os.environ)
    env.update(
        JOBKIT_DATABASE_URL=url or "",
        JOBKIT_SCHEMA=schema,
        JOBKIT_IMPORTS="bench_jobs",
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "jobkit", "worker", "--queue", queue, "--burst"]
    with psycopg.connect(url, autocommit=True) as connection, tempfile.TemporaryFile() as log:
        start_clock = connection.execute("SELECT clock_timestamp()").fetchone()
        assert start_clock is not None
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            count_query = sql.SQL(
                "SELECT count(*) FROM {}.results WHERE queue = %s AND ended_at >= %s"
            ).format(identifier)
            while worker.poll() is None:
                row = connection.execute(count_query, [queue, start_clock[0]]).fetchone()
                assert row is not None
                samples.append((time.perf_counter(), row[0]))
                time.sleep(1.0)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
        row = connection.execute(
            sql.SQL(
                "SELECT count(*), extract(epoch FROM max(ended_at) - %s)::float8, "
                "extract(epoch FROM max(ended_at) - min(started_at))::float8 "
                "FROM {}.results WHERE queue = %s AND ended_at >= %s"
            ).format(identifier),
            [start_clock[0], queue, start_clock[0]],
        ).fetchone()
    assert row is not None
    done, from_start, from_first_job = row
    if done != count:
        raise RuntimeError(f"the worker wrote {done:,} results of {count:,}")
    per_second = [
        round((later[1] - earlier[1]) / (later[0] - earlier[0]))
        for earlier, later in itertools.pairwise(samples)
    ]
    busy = [rate for rate in per_second if rate > 0]
    figure = {
        "jobs": count,
        "enqueue_many_per_s": round(enqueue_rate),
        "drain_per_s": round(count / from_start),
        "drain_after_first_start_per_s": round(count / from_first_job),
        "seconds": round(from_start, 1),
        "rate_each_second": per_second,
        "rate_first_tenth_median": _median_of(busy[: max(1, len(busy) // 10)]),
        "rate_last_tenth_median": _median_of(busy[-max(1, len(busy) // 10) :]),
    }
    print_line(
        f"drain of {count:,}",
        f"{figure['drain_per_s']:,} jobs/s ({figure['drain_after_first_start_per_s']:,} from the "
        f"first start); first tenth {figure['rate_first_tenth_median']}, last tenth "
        f"{figure['rate_last_tenth_median']} jobs/s",
    )
    return figure


def _median_of(rates: list[int]) -> int | None:
    return round(statistics.median(rates)) if rates else None


if __name__ == "__main__":
    main()
