"""The operations API at scale: 10 million results in history (mixed statuses, 20 queues, 50 job
names, ended over the last six days: inside the default week of ``results_retention``, so a worker
deletes none of them), and how long what an operator does takes then.

    python benchmarks/operations_scale.py               # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/operations_scale.py --results 1000000 --record

It fills its own schema (``jobkit_scale``; filled once, kept for the next run while its size
is right), then times, each the median of ``--runs``: the first page of errored jobs of one
queue, the next page by cursor, the count past its cap, a job by id, ``stats``, and a bulk
retry of 10,000 failed jobs (undone after each run); and what the listing and stats queries read
(their executed plans). Last, the drain rate of one worker (10,000 no-op jobs, default flags)
with that history, against the same in an empty schema, and in the empty schema without the
result count triggers (what counting costs), alternated ``--drains`` times.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import Noop  # noqa: E402
from throughput import machine_baseline, print_line, wait_until, worker  # noqa: E402

from jobkit import Job, enqueue_many, register_job  # noqa: E402
from jobkit.builtin.postgres.store import _filter_params  # noqa: E402
from jobkit.operations import Operations, job_filter  # noqa: E402
from jobkit.records import JobFilter  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA, EMPTY_SCHEMA = "jobkit_scale", "jobkit_scale_empty"
QUEUES, NAMES = 20, 50
FILL_BATCH = 1_000_000
FILLED_BY = "operations_scale fill 4"
"""The ``source`` of the results the fill makes: a change to the fill changes it, so a schema
filled the old way is filled again."""
# Of every 100 results: 80 successful, 10 errored (half of them retried later), 5 deferred,
# 3 lost, 2 cancelled.
STATUS_BY_PERCENT = (
    "CASE WHEN p < 80 THEN 'SUCCESSFUL' WHEN p < 90 THEN 'ERRORED' WHEN p < 95 THEN 'DEFERRED' "
    "WHEN p < 98 THEN 'LOST' ELSE 'CANCELLED' END"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--results", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--drains", type=int, default=3, help="drains of each kind, alternated (medians)"
    )
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    runtime = runtime_for(SCHEMA)
    url = runtime.settings.database_url
    assert url is not None
    machine = machine_baseline(url)
    print_line("machine", machine)
    fill(url, args.results)
    runtime.store.maintain()  # fold the fill's result count changes, as a worker would
    operations = Operations(runtime)
    figures: dict[str, object] = {"results": args.results}

    errored_q1 = job_filter(status="errored", queue="q1")
    page = operations.jobs(errored_q1, limit=50, count=False)
    assert page.next_cursor is not None
    job_ids = [attempt.job_id for attempt in page.attempts]
    measures: dict[str, Callable[[], object]] = {
        "first_page_errored_one_queue_ms": lambda: operations.jobs(
            errored_q1, limit=50, count=False
        ),
        "next_page_by_cursor_ms": lambda: operations.jobs(
            errored_q1, limit=50, cursor=page.next_cursor, count=False
        ),
        "first_page_failed_any_queue_ms": lambda: operations.jobs(
            job_filter(status="failed"), limit=50, count=False
        ),
        "count_errored_one_queue_ms": lambda: runtime.store.count_attempts(
            filter=errored_q1, cap=10_000
        ),
        "job_by_id_ms": lambda: operations.job(job_ids[0]),
        "stats_ms": lambda: runtime.store.stats(heartbeat_timeout=300),
    }
    for label, measure in measures.items():
        figures[label] = median_ms(args.runs, measure)
        print_line(label, f"{figures[label]:.1f} ms")

    figures["plans"] = plans(runtime, errored_q1)
    for label, plan in figures["plans"].items():
        print_line(f"plan of {label}", ", ".join(plan["reads"]))

    # The empty schema drains once more without the result count triggers: what counting costs.
    # Each round runs the three in another order, so that none always runs first or last, and
    # each drain starts from vacuumed queue tables (autovacuum may be off, as on this machine).
    empty = runtime_for(EMPTY_SCHEMA)
    with_history: list[float] = []
    without_history: list[float] = []
    uncounted: list[float] = []
    kinds = [
        (without_history, empty, False),
        (with_history, runtime, False),
        (uncounted, empty, True),
    ]
    for round_ in range(args.drains):
        for rates, drained, counting_off in kinds[round_ % 3 :] + kinds[: round_ % 3]:
            if drained is empty:
                empty.store.purge()
            vacuum_queue_tables(drained)
            if counting_off:
                with result_counting_off(drained):
                    rates.append(drain(drained))
            else:
                rates.append(drain(drained))
    figures["drains_with_history_per_s"] = with_history
    figures["drains_without_history_per_s"] = without_history
    figures["drains_without_history_or_counting_per_s"] = uncounted
    figures["drain_with_history_per_s"] = statistics.median(with_history)
    figures["drain_without_history_per_s"] = statistics.median(without_history)
    figures["drain_without_history_or_counting_per_s"] = statistics.median(uncounted)
    print_line(
        f"drain, {args.results:,} results in history",
        f"{figures['drain_with_history_per_s']:,.0f} jobs/s",
    )
    print_line("drain, empty history", f"{figures['drain_without_history_per_s']:,.0f} jobs/s")
    print_line(
        "drain, empty history, results not counted",
        f"{figures['drain_without_history_or_counting_per_s']:,.0f} jobs/s",
    )

    # Last: its links, set and taken back, leave free space all over the table, where later
    # results would go (each such page a full-page write after a checkpoint), unlike history;
    # so the next run fills again.
    figures["bulk_retry_10000_failed_s"] = statistics.median(
        bulk_retry(runtime, operations) for _ in range(min(args.runs, 3))
    )
    print_line("bulk retry of 10,000 failed jobs", f"{figures['bulk_retry_10000_failed_s']:.2f} s")

    if args.record:
        moment = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H%M}"
        path = HERE / "results" / f"operations-scale-{moment}.json"
        path.write_text(json.dumps({"machine": machine, "figures": figures}, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")


def plans(runtime: Runtime, errored_q1: JobFilter) -> dict[str, dict[str, object]]:
    """What each operations query reads, from its executed plan (EXPLAIN ANALYZE): the scans
    (node type and index or table) and the execution time."""
    page = {"limit": 50, "after_at": None, "after_id": None}
    queries = {
        "first_page_errored_one_queue": (
            "list_results_in_queues",
            _filter_params(errored_q1) | page,
        ),
        "first_page_failed_any_queue": (
            "list_results",
            _filter_params(job_filter(status="failed")) | page,
        ),
        "stats": ("stats", {"include_results": True, "heartbeat_timeout": 300.0, "queues": None}),
    }
    found: dict[str, dict[str, object]] = {}
    url = runtime.settings.database_url
    with psycopg.connect(url, autocommit=True) as connection:
        for label, (query, params) in queries.items():
            explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ")
            explain += runtime.store.queries[query]
            [result] = connection.execute(explain, params).fetchone()[0]
            found[label] = {
                "reads": sorted(_scans(result["Plan"])),
                "execution_ms": result["Execution Time"],
            }
    return found


def vacuum_queue_tables(runtime: Runtime) -> None:
    """VACUUM the tables a drain churns through, so each drain starts without the dead rows of
    the last one (or of a purge)."""
    schema = sql.Identifier(runtime.settings.schema)
    tables = ["requests", "processes", "result_counts", "result_count_changes"]
    if runtime.settings.schema == EMPTY_SCHEMA:
        tables.append("results")  # small there, and just purged
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        for table in tables:
            connection.execute(sql.SQL("VACUUM {}.{}").format(schema, sql.Identifier(table)))


@contextlib.contextmanager
def result_counting_off(runtime: Runtime) -> Iterator[None]:
    """The schema's result count triggers disabled for the block (as before migration 6)."""
    table = sql.SQL("{}.results").format(sql.Identifier(runtime.settings.schema))
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        connection.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        try:
            yield
        finally:
            connection.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))


def _scans(plan: dict[str, Any]) -> set[str]:
    found = set()
    if "Relation Name" in plan:
        found.add(f"{plan['Node Type']} on {plan.get('Index Name') or plan['Relation Name']}")
    for child in plan.get("Plans", []):
        found |= _scans(child)
    return found


def _history_job(number: int) -> type[Job]:
    def init(self: Job, number: int) -> None:
        self.number = number

    job_class = type(f"HistoryJob{number}", (Job,), {"__init__": init, "run": lambda self: None})
    return register_job(name=f"app.jobs.Job{number}")(job_class)


HISTORY_JOBS = [_history_job(number) for number in range(NAMES)]
"""The classes of the jobs in the filled history, registered so they can be retried."""


def runtime_for(schema: str) -> Runtime:
    runtime = Runtime.from_settings(load_settings({"schema": schema}))
    runtime.store.migrate()
    set_runtime(runtime)
    return runtime


def fill(url: str, count: int) -> None:
    """``count`` results in ``SCHEMA``, unless it holds that many already. The indexes are
    dropped for the fill and built again after it (as CREATE INDEX builds them: faster)."""
    schema = sql.Identifier(SCHEMA)
    with psycopg.connect(url, autocommit=True) as connection:
        have = connection.execute(
            sql.SQL("SELECT count(*) FROM {}.results WHERE source = %s").format(schema),
            [FILLED_BY],
        ).fetchone()
        if have and have[0] == count:
            print_line("results", f"{count:,} (kept from an earlier run)")
            return
        started = time.monotonic()
        connection.execute(
            sql.SQL("TRUNCATE {0}.results, {0}.requests, {0}.processes").format(schema)
        )
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'results' AND indexname <> 'results_pkey'",
            [SCHEMA],
        ).fetchall()
        for name, _ in indexes:
            connection.execute(sql.SQL("DROP INDEX {}.{}").format(schema, sql.Identifier(name)))
        connection.execute(
            sql.SQL("ALTER TABLE {}.results DROP CONSTRAINT results_pkey").format(schema)
        )
        for first in range(0, count, FILL_BATCH):
            rows = min(FILL_BATCH, count - first)
            connection.execute(
                sql.SQL(
                    "INSERT INTO {schema}.results (id, job_id, job_name, parameters, queue, "
                    "priority, retries, retry_attempt, concurrency_key, headers, source, "
                    "start_at, created_at, worker_id, status, error, error_type, started_at, "
                    "ended_at, retry_request_id) "
                    "SELECT id, id, 'app.jobs.Job' || (n % {names}), "
                    "jsonb_build_object('args', jsonb_build_array(n), 'kwargs', '{{}}'::jsonb), "
                    "'q' || (n % {queues}), 0, 3, 0, '', '{{}}', {filled_by}, "
                    "ended - interval '2 s', "
                    "ended - interval '2 s', NULL, status, "
                    "CASE WHEN status = 'ERRORED' THEN 'Traceback ...' || chr(10) || "
                    "'ValueError: failed ' || n ELSE '' END, "
                    "CASE WHEN status = 'ERRORED' THEN 'ValueError' ELSE '' END, "
                    "ended - interval '1 s', ended, "
                    # Half of the errored attempts were retried: they point at a later attempt.
                    "CASE WHEN status = 'ERRORED' AND n % 2 = 0 THEN gen_random_uuid() END "
                    "FROM (SELECT n, gen_random_uuid() AS id, "
                    "now() - make_interval(secs => 518400.0 * (n::float8 / {count})) AS ended, "
                    "{status} AS status FROM (SELECT n, abs(hashtext(n::text)) % 100 AS p "
                    "FROM generate_series({first}, {last}) AS n) AS numbered) AS made"
                ).format(
                    schema=schema,
                    filled_by=sql.Literal(FILLED_BY),
                    names=sql.Literal(NAMES),
                    queues=sql.Literal(QUEUES),
                    count=sql.Literal(count),
                    status=sql.SQL(STATUS_BY_PERCENT),
                    first=sql.Literal(first),
                    last=sql.Literal(first + rows - 1),
                )
            )
            print_line("filled", f"{first + rows:,} results ({time.monotonic() - started:.0f} s)")
        connection.execute(sql.SQL("ALTER TABLE {}.results ADD PRIMARY KEY (id)").format(schema))
        for _, definition in indexes:
            connection.execute(definition)
        connection.execute(sql.SQL("VACUUM ANALYZE {}.results").format(schema))
        print_line("filled and indexed", f"{count:,} results in {time.monotonic() - started:.0f} s")


def median_ms(runs: int, measure: Callable[[], object]) -> float:
    measure()  # warm the caches the first run would pay for
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        measure()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def bulk_retry(runtime: Runtime, operations: Operations) -> float:
    """Seconds to retry 10,000 failed jobs; then the retries are taken back out."""
    started = time.perf_counter()
    reports = operations.retry_failed(
        job_filter(), limit=10_000, delay=datetime.timedelta(days=1), source="benchmark"
    )
    took = time.perf_counter() - started
    assert sum(report.done for report in reports) == len(reports) == 10_000
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        schema = sql.Identifier(SCHEMA)
        connection.execute(
            sql.SQL(
                "UPDATE {0}.results SET retry_request_id = NULL WHERE retry_request_id IN "
                "(SELECT id FROM {0}.requests WHERE source = 'retried by benchmark')"
            ).format(schema)
        )
        connection.execute(sql.SQL("DELETE FROM {}.requests").format(schema))
        # The links left free space on pages all over the table: the next run fills afresh
        # (its drains would put new results there), so this fill no longer counts as whole.
        connection.execute(
            sql.SQL(
                "UPDATE {}.results SET source = 'operations_scale retried' WHERE id = "
                "(SELECT id FROM {}.results WHERE source = %s LIMIT 1)"
            ).format(schema, schema),
            [FILLED_BY],
        )
    return took


def drain(runtime: Runtime, count: int = 10_000) -> float:
    """Jobs per second one worker (default flags) drains ``count`` no-op jobs at, from the first
    request's creation to the last result, by the database's clock."""
    schema = runtime.settings.schema
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    set_runtime(runtime)  # enqueue_many sends to the current runtime's schema
    with worker(runtime, ["--queue", queue], schema=schema):
        enqueue_many([Noop(number) for number in range(count)], queue=queue)
        wait_until(
            lambda: (
                runtime.store.count_attempts(
                    filter=job_filter(status="successful", queue=queue), cap=count
                )[0]
                >= count
            ),
            timeout=600,
        )
    with psycopg.connect(runtime.settings.database_url) as connection:
        row = connection.execute(
            sql.SQL(
                "SELECT extract(epoch FROM max(ended_at) - min(created_at))::float8 "
                "FROM {}.results WHERE queue = %s"
            ).format(sql.Identifier(schema)),
            [queue],
        ).fetchone()
    assert row is not None
    return count / row[0]


if __name__ == "__main__":
    main()
