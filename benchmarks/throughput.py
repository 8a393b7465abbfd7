"""Throughput and latency of jobkit on this machine.

Measures, each as the median of several runs:
  - enqueue rate, one job per transaction (``run_in_worker``);
  - ``enqueue_many`` rate (10,000 jobs per call);
  - drain rate of 10,000 no-op jobs by one ``jobkit worker`` (default flags, and deeper
    prefetch), from the database's timestamps: first request created to last result written;
    the worker logs at ``--worker-log-level`` (WARNING: failures only; INFO, its default, adds
    a line per job, written to a temporary file);
  - enqueue-to-start latency p50/p95 with an idle worker (created_at to the job's start).

It also records what bounds those figures on this machine: the round trip of ``SELECT 1`` and
the latency of a one-row commit (the disk's flush).

    python benchmarks/throughput.py                   # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/throughput.py --runs 5 --record # also write benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import Noop  # noqa: E402

from jobkit import enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA = "jobkit_bench"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per drain and bulk run")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    parser.add_argument(
        "--worker-log-level",
        default="WARNING",
        choices=["WARNING", "INFO"],
        help="the draining worker's --log-level (INFO logs a line per job)",
    )
    args = parser.parse_args()

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    store = runtime.store
    store.migrate()
    set_runtime(runtime)
    url = runtime.settings.database_url
    assert url is not None

    machine = machine_baseline(url)
    print_line("machine", machine)
    figures: dict[str, object] = {"drain_worker_log_level": args.worker_log_level}

    figures["enqueue_one_per_transaction_per_s"] = median(
        args.runs, lambda: enqueue_single(runtime, 2_000)
    )
    print_line(
        "enqueue, one per transaction",
        f"{figures['enqueue_one_per_transaction_per_s']:,.0f} jobs/s",
    )
    figures["enqueue_many_per_s"] = median(args.runs, lambda: enqueue_bulk(runtime, args.jobs))
    print_line("enqueue_many", f"{figures['enqueue_many_per_s']:,.0f} jobs/s")

    for label, flags in (
        ("drain_default_flags_per_s", []),
        ("drain_pending_50_per_s", ["--max-pending-per-process", "50"]),
    ):
        figures[label] = median(
            args.runs,
            lambda flags=flags: drain(runtime, args.jobs, flags, args.worker_log_level),
        )
        shown_flags = " ".join([*flags, "--log-level", args.worker_log_level])
        print_line(f"drain, worker {shown_flags}", f"{figures[label]:,.0f} jobs/s")

    p50, p95 = latency(runtime, 200)
    figures["latency_p50_ms"], figures["latency_p95_ms"] = p50, p95
    print_line("enqueue-to-start latency, idle worker", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms")

    runtime.close()
    if args.record:
        record(machine, figures, args)


# Measures ---------------------------------------------------------------------------------------


def enqueue_single(runtime: Runtime, count: int) -> float:
    reset(runtime)
    started = time.perf_counter()
    for number in range(count):
        Noop(number).run_in_worker()
    return count / (time.perf_counter() - started)


def enqueue_bulk(runtime: Runtime, count: int) -> float:
    reset(runtime)
    jobs = [Noop(number) for number in range(count)]
    started = time.perf_counter()
    enqueue_many(jobs)
    return count / (time.perf_counter() - started)


def drain(runtime: Runtime, count: int, flags: list[str], log_level: str = "WARNING") -> float:
    """Jobs per second from the first request's creation to the last result, by the database's
    clock, with the worker already running and idle when the jobs arrive."""
    reset(runtime)
    with worker(runtime, flags, log_level):
        enqueue_many([Noop(number) for number in range(count)])
        wait_until(lambda: runtime.store.stats().total.successful >= count, timeout=300)
        seconds = query_one(
            runtime,
            "SELECT extract(epoch FROM max(ended_at) - min(created_at)) FROM {}.results",
        )
    return count / seconds


def latency(runtime: Runtime, count: int) -> tuple[float, float]:
    """Enqueue one job at a time into an idle worker; milliseconds from created_at to start."""
    reset(runtime)
    with worker(runtime, []):
        for number in range(count):
            request = Noop(number).run_in_worker()
            assert request is not None
            wait_until(lambda r=request: runtime.store.get_result(r.id) is not None, timeout=30)
    with psycopg.connect(runtime.settings.database_url) as connection:
        rows = connection.execute(
            sql.SQL(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM {}.results"
            ).format(sql.Identifier(SCHEMA))
        ).fetchall()
    waits = sorted(row[0] for row in rows)
    return statistics.median(waits), waits[int(len(waits) * 0.95) - 1]


# Helpers ----------------------------------------------------------------------------------------


class worker:
    """A `jobkit worker` subprocess, started and registered on entry, stopped on exit. Below
    WARNING, its log goes to a temporary file (as to a supervisor's log, not a terminal)."""

    def __init__(
        self, runtime: Runtime, flags: list[str], log_level: str = "WARNING", schema: str = SCHEMA
    ):
        self.runtime = runtime
        self.flags = flags
        self.log_level = log_level
        self.schema = schema

    def __enter__(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            JOBKIT_DATABASE_URL=self.runtime.settings.database_url or "",
            JOBKIT_SCHEMA=self.schema,
            JOBKIT_IMPORTS="bench_jobs",
            PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        )
        command = [sys.executable, "-m", "jobkit", "worker", "--stats-every", "0"]
        command += ["--log-level", self.log_level, *self.flags]
        self.log = None if self.log_level == "WARNING" else tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: bool(self.runtime.store.workers()), timeout=60)
        time.sleep(0.5)  # let the pool children finish importing before the clock starts
        return self.process

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        if self.log is not None:
            self.log.close()


def reset(runtime: Runtime) -> None:
    """Empty the tables and vacuum them, so every run starts from the same state even on a
    server with autovacuum off."""
    runtime.store.purge()
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        schema = runtime.settings.schema
        tables = ", ".join(f"{schema}.{table}" for table in ("requests", "processes", "results"))
        connection.execute(f"VACUUM {tables}")


def query_one(runtime: Runtime, query: str) -> float:
    with psycopg.connect(runtime.settings.database_url) as connection:
        row = connection.execute(sql.SQL(query).format(sql.Identifier(SCHEMA))).fetchone()
    assert row is not None
    return float(row[0])


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        time.sleep(0.02)


def median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def machine_baseline(url: str) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as connection:
        started = time.perf_counter()
        for _ in range(500):
            connection.execute("SELECT 1")
        round_trip = (time.perf_counter() - started) / 500 * 1e6
        connection.execute("CREATE TEMP TABLE commit_probe (x int)")
        started = time.perf_counter()
        for _ in range(300):
            connection.execute("INSERT INTO commit_probe VALUES (1)")
        temp_insert = (time.perf_counter() - started) / 300 * 1e6
        connection.execute(
            "CREATE TABLE IF NOT EXISTS jobkit_bench_commit_probe (x int); "
            "TRUNCATE jobkit_bench_commit_probe"
        )
        started = time.perf_counter()
        for _ in range(300):
            connection.execute("INSERT INTO jobkit_bench_commit_probe VALUES (1)")
        commit = (time.perf_counter() - started) / 300 * 1e6
        connection.execute("DROP TABLE jobkit_bench_commit_probe")
        settings = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('server_version', 'fsync', 'synchronous_commit', 'autovacuum')"
            ).fetchall()
        )
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "select_1_round_trip_us": round(round_trip),
        "unlogged_insert_us": round(temp_insert),
        "one_row_commit_us": round(commit),
        **settings,
    }


def print_line(label: str, value: object) -> None:
    print(f"{label:45s} {value}", flush=True)


def record(
    machine: dict[str, object],
    figures: dict[str, object],
    args: argparse.Namespace,
    name: str = "throughput",
) -> None:
    """Write the figures to ``benchmarks/results/<name>-<UTC time>.json``."""
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    path = results / f"{name}-{now:%Y-%m-%dT%H%M}.json"
    payload = {
        "date": now.isoformat(timespec="seconds"),
        "runs": args.runs,
        "jobs": args.jobs,
        "machine": machine,
        "figures": {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded in {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
