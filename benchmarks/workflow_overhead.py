"""What workflows cost the jobs outside them, and what a workflow's fan-in costs.

The finish path of a plain job is unchanged by workflows but for the two triggers on ``results``
(migration 0012), whose WHEN passes over a result without the workflow or pipeline header. This
drains 10,000 no-op jobs with one ``jobkit worker`` (default flags) with the triggers enabled and
disabled, alternated in one run (each round in the other order); and, with them enabled, the same
10,000 jobs enqueued as 1,000 groups of 9 members and a callback, each member's final result
counted and each callback released by the trigger. Rates run from the first start to the last
end, in a schema of its own (``jobkit_bench_workflows``).

    python benchmarks/workflow_overhead.py                # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/workflow_overhead.py --record       # also write benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import Noop  # noqa: E402
from throughput import machine_baseline, print_line, record, wait_until, worker  # noqa: E402

from jobkit import Group, enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA = "jobkit_bench_workflows"
"""A schema of its own: the triggers are switched off and on in it while it runs."""
GROUP_SIZE = 9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each measure")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per drain")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()
    args.runs = args.rounds

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    runtime.store.migrate()
    set_runtime(runtime)
    assert runtime.settings.database_url is not None
    machine = machine_baseline(runtime.settings.database_url)
    print_line("machine", machine)

    rounds: dict[str, list[float]] = {"trigger_disabled": [], "trigger_enabled": [], "groups": []}
    for number in range(args.rounds):
        # Each round in the other order, so a machine that slows down (or speeds up) within a
        # round favours neither.
        for enabled in (False, True) if number % 2 == 0 else (True, False):
            set_trigger(runtime, enabled=enabled)
            label = "trigger_enabled" if enabled else "trigger_disabled"
            rounds[label].append(drain(runtime, args.jobs))
            shown = label.replace("_", " ").replace("trigger", "triggers")
            print_line(f"drain, plain jobs, {shown}", f"{rounds[label][-1]:,.0f}")
        set_trigger(runtime, enabled=True)
        rounds["groups"].append(drain_groups(runtime, args.jobs))
        print_line("drain, groups of 9 and a callback", f"{rounds['groups'][-1]:,.0f}")
    runtime.close()

    figures: dict[str, object] = {f"{name}_per_s": values for name, values in rounds.items()}
    figures |= {
        f"{name}_median_per_s": statistics.median(values) for name, values in rounds.items()
    }
    if args.record:
        record(machine, figures, args, name="workflow-overhead")


TRIGGERS = ("workflow_member_ended", "pipeline_step_ended")


def set_trigger(runtime: Runtime, *, enabled: bool) -> None:
    statement = "ENABLE" if enabled else "DISABLE"
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        for trigger in TRIGGERS:
            connection.execute(
                sql.SQL("ALTER TABLE {}.results {} TRIGGER {}").format(
                    sql.Identifier(SCHEMA), sql.SQL(statement), sql.Identifier(trigger)
                )
            )


def drain(runtime: Runtime, count: int) -> float:
    """Jobs per second, first start to last result written, of ``count`` no-op jobs."""
    return timed_drain(runtime, count, lambda: enqueue_many([Noop(n) for n in range(count)]))


def drain_groups(runtime: Runtime, count: int) -> float:
    """Jobs per second, first start to last result written, of ``count`` jobs enqueued as
    groups of ``GROUP_SIZE`` members and a callback, in one transaction."""
    groups = count // (GROUP_SIZE + 1)

    def enqueue() -> None:
        with psycopg.connect(runtime.settings.database_url) as connection:
            for number in range(groups):
                members = [Noop(number * GROUP_SIZE + n) for n in range(GROUP_SIZE)]
                Group(members, then=Noop(-number)).run_in_worker(connection=connection)

    return timed_drain(runtime, groups * (GROUP_SIZE + 1), enqueue)


def timed_drain(runtime: Runtime, count: int, enqueue: Callable[[], None]) -> float:
    """Run ``enqueue`` with one idle worker (default flags) waiting, wait for ``count``
    successful results, and return jobs per second from the first start to the last end (the
    time of the enqueue left out: the groups' is one long transaction)."""
    runtime.store.purge()
    schema = sql.Identifier(SCHEMA)
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("VACUUM {}.requests, {}.processes, {}.results").format(schema, schema, schema)
        )
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:

        def ended() -> int:
            query = sql.SQL("SELECT count(*) FROM {}.results WHERE status = 'SUCCESSFUL'")
            row = connection.execute(query.format(schema)).fetchone()
            return row[0] if row else 0

        with worker(runtime, [], schema=SCHEMA):
            enqueue()
            wait_until(lambda: ended() >= count, timeout=300)
        row = connection.execute(
            sql.SQL(
                "SELECT extract(epoch FROM max(ended_at) - min(started_at)) FROM {}.results"
            ).format(schema)
        ).fetchone()
    assert row is not None
    return count / float(row[0])


if __name__ == "__main__":
    main()
