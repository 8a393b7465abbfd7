"""Chaos soak: many jobs, several workers, and a random worker killed with SIGKILL (or, with
``--fault freeze``, its main process frozen with SIGSTOP while its pool children run on) every
few seconds; then the promise is checked: no job lost, at most one extra run per fault.

    python benchmarks/chaos.py                       # 20,000 jobs, 3 workers, a kill every 4 s
    python benchmarks/chaos.py --jobs 5000 --minutes 1 --record
    python benchmarks/chaos.py --fault freeze        # freeze a main process for 8 s every 4 s

Each job writes one ledger row per run (over a connection of its own), so executions are counted
apart from jobkit's bookkeeping. For every fault it notes which jobs the worker held, and reports
the longest time from the fault to the next start of one of them. A killed worker is replaced at
once; a frozen one is thawed (SIGCONT) after ``FREEZE_FOR`` seconds, long enough for a peer to
rescue its jobs, and goes on. It also counts runs that no LOST result accounts for: a job that ran
again without its first run being recorded, the window guarantees.md states.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chaos_jobs import LEDGER, Chaos  # noqa: E402

from jobkit import enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA = "jobkit_chaos"
HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT = 1, 5
FREEZE_FOR = HEARTBEAT_TIMEOUT + 3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3, help="how long to keep killing")
    parser.add_argument("--every", type=float, default=4, help="seconds between faults")
    parser.add_argument(
        "--fault",
        choices=["kill", "freeze"],
        default="kill",
        help="kill -9 a worker's process group, or SIGSTOP its main process alone",
    )
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    set_runtime(runtime)
    runtime.store.migrate()
    runtime.store.purge()
    url = runtime.settings.database_url
    assert url is not None
    database = psycopg.connect(url, autocommit=True)
    schema = sql.Identifier(SCHEMA)
    database.execute(sql.SQL("DELETE FROM {}.workers").format(schema))
    database.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (job int, pid int, attempt int, "
            "at timestamptz DEFAULT clock_timestamp())"
        ).format(schema, sql.Identifier(LEDGER))
    )
    database.execute(sql.SQL("TRUNCATE {}.{}").format(schema, sql.Identifier(LEDGER)))

    random.seed(42)
    jobs = [Chaos(number, random.uniform(0, 0.1)) for number in range(args.jobs)]
    requests = enqueue_many(jobs, retries=20)
    job_ids = {request.job_id for request in requests if request is not None}
    print(
        f"enqueued {len(job_ids)} jobs; {args.workers} workers; a kill every {args.every:g} s "
        f"for {args.minutes:g} min; heartbeat {HEARTBEAT_INTERVAL} s, timeout {HEARTBEAT_TIMEOUT} s"
    )

    workers = [start_worker(url) for _ in range(args.workers)]
    kills: list[tuple[datetime.datetime, list[int]]] = []
    frozen: dict[int, float] = {}  # worker index -> when to thaw it
    started = time.monotonic()
    stop_killing = started + args.minutes * 60
    next_kill = started + args.every
    while count_final(database, schema) < len(job_ids) or frozen:
        time.sleep(0.2)
        for index, thaw_at in list(frozen.items()):
            if time.monotonic() >= thaw_at:
                os.kill(workers[index].pid, signal.SIGCONT)
                del frozen[index]
        if time.monotonic() >= next_kill and time.monotonic() < stop_killing:
            victim = random.choice([n for n in range(len(workers)) if n not in frozen])
            if args.fault == "kill":
                held, killed_at = kill(database, schema, workers[victim])
                workers[victim] = start_worker(url)
                what = f"worker pid {workers[victim].pid} replaced"
            else:
                held, killed_at = freeze(database, schema, workers[victim])
                frozen[victim] = time.monotonic() + FREEZE_FOR
                what = f"worker pid {workers[victim].pid} frozen for {FREEZE_FOR} s"
            kills.append((killed_at, held))
            next_kill = time.monotonic() + args.every
            print(
                f"  {args.fault} {len(kills)}: {what}; it held {len(held)} jobs; "
                f"{count_final(database, schema)} of {len(job_ids)} done",
                flush=True,
            )
        if time.monotonic() > stop_killing + 600:
            print("giving up: not done 10 minutes after the last fault")
            break
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)

    report = check(database, schema, job_ids, kills)
    report.update(
        fault=args.fault,
        jobs=len(job_ids),
        workers=args.workers,
        faults=len(kills),
        seconds=round(elapsed),
    )
    for key, value in report.items():
        print(f"{key:45s} {value}")
    if args.record:
        moment = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H%M}"
        name = "chaos" if args.fault == "kill" else "chaos-freeze"
        path = HERE / "results" / f"{name}-{moment}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")
    runtime.close()


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        JOBKIT_DATABASE_URL=url,
        JOBKIT_SCHEMA=SCHEMA,
        JOBKIT_IMPORTS="chaos_jobs",
        JOBKIT_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL),
        JOBKIT_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
    )
    command = [
        sys.executable,
        "-m",
        "jobkit",
        "worker",
        "--stats-every",
        "0",
        "--log-level",
        "ERROR",
    ]
    return subprocess.Popen(command, env=env, start_new_session=True)


def kill(
    database: psycopg.Connection, schema: sql.Identifier, worker: subprocess.Popen[bytes]
) -> tuple[list[int], datetime.datetime]:
    """SIGKILL the worker's whole process group; return the jobs it held and when (DB clock).

    The jobs are read after the kill, so they are exactly what the dead worker left claimed.
    """

    def fault() -> None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    return strike(database, schema, worker, fault)


def freeze(
    database: psycopg.Connection, schema: sql.Identifier, worker: subprocess.Popen[bytes]
) -> tuple[list[int], datetime.datetime]:
    """SIGSTOP the worker's main process alone (its pool children run on); return the jobs it
    held and when (DB clock)."""
    return strike(database, schema, worker, lambda: os.kill(worker.pid, signal.SIGSTOP))


def strike(
    database: psycopg.Connection,
    schema: sql.Identifier,
    worker: subprocess.Popen[bytes],
    fault: Callable[[], None],
) -> tuple[list[int], datetime.datetime]:
    """Hit ``worker`` with ``fault``; return the jobs it held then and when (DB clock)."""
    row = database.execute(
        sql.SQL("SELECT id FROM {}.workers WHERE pid = %s").format(schema), (worker.pid,)
    ).fetchone()
    fault()
    now = database.execute("SELECT now()").fetchone()
    assert now is not None
    if row is None:
        return [], now[0]
    held = database.execute(
        sql.SQL(
            "SELECT (parameters->'args'->>0)::int FROM {}.processes WHERE worker_id = %s"
        ).format(schema),
        (row[0],),
    ).fetchall()
    return [number for (number,) in held], now[0]


def count_final(database: psycopg.Connection, schema: sql.Identifier) -> int:
    row = database.execute(
        sql.SQL("SELECT count(*) FROM {}.results WHERE retry_request_id IS NULL").format(schema)
    ).fetchone()
    return row[0] if row else 0


def check(
    database: psycopg.Connection,
    schema: sql.Identifier,
    job_ids: set,
    kills: list[tuple[datetime.datetime, list[int]]],
) -> dict[str, object]:
    finals = dict(
        database.execute(
            sql.SQL("SELECT job_id, status FROM {}.results WHERE retry_request_id IS NULL").format(
                schema
            )
        ).fetchall()
    )
    lost = len(job_ids - finals.keys())
    not_successful = sum(1 for status in finals.values() if status != "SUCCESSFUL")
    runs = Counter(
        number
        for (number,) in database.execute(
            sql.SQL("SELECT job FROM {}.{}").format(schema, sql.Identifier(LEDGER))
        ).fetchall()
    )
    duplicates = sum(count - 1 for count in runs.values() if count > 1)
    hit_jobs = {number for _, held in kills for number in held}
    worst_restart = 0.0
    for killed_at, held in kills:
        for number in held:
            row = database.execute(
                sql.SQL("SELECT min(at) FROM {}.{} WHERE job = %s AND at > %s").format(
                    schema, sql.Identifier(LEDGER)
                ),
                (number, killed_at),
            ).fetchone()
            if row and row[0]:
                worst_restart = max(worst_restart, (row[0] - killed_at).total_seconds())
    unhit_duplicates = sum(
        count - 1 for number, count in runs.items() if count > 1 and number not in hit_jobs
    )
    lost_results = Counter(
        number
        for (number,) in database.execute(
            sql.SQL(
                "SELECT (parameters->'args'->>0)::int FROM {}.results WHERE status = 'LOST'"
            ).format(schema)
        ).fetchall()
    )
    unrecorded = sum(max(0, count - 1 - lost_results[number]) for number, count in runs.items())
    left = database.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {0}.requests) + (SELECT count(*) FROM {0}.processes)"
        ).format(schema)
    ).fetchone()
    return {
        "jobs_lost (must be 0)": lost,
        "final_results_not_successful": not_successful,
        "rows_left_in_requests_or_processes": left[0] if left else None,
        "duplicate_executions": duplicates,
        "duplicates_of_jobs_no_kill_hit (must be 0)": unhit_duplicates,
        "runs_no_lost_result_accounts_for": unrecorded,
        "jobs_held_by_killed_workers": len(hit_jobs),
        "worst_kill_to_restart_seconds": round(worst_restart, 1),
    }


if __name__ == "__main__":
    main()
