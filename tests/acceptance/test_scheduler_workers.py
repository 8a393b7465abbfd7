"""The scheduler in real ``jobkit worker`` processes: several workers enqueue each tick exactly
once, a worker killed right after a tick or in the middle of one neither doubles nor loses it,
``cmd:`` entries run their commands, and bad entries stop the worker at start-up.

Entries tick every few seconds through ``testapp.schedule_plugin`` (``"every N seconds"``); which
worker enqueues a tick is decided by the database alone, as for cron schedules.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import signal
import time
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from jobkit import Status
from testapp.jobs import Noop

pytestmark = pytest.mark.acceptance

PERIOD = 2.0
"""Seconds between the ticks of the test entries."""


@pytest.fixture
def schedule_env():
    """``schedule_env(*entries)``: the environment for workers running those entries."""

    def make(*entries):
        return {
            "JOBKIT_SCHEDULE": json.dumps(list(entries)),
            "JOBKIT_PLUGINS": "testapp.schedule_plugin",
        }

    return make


@pytest.fixture
def db(jobkit_runtime):
    """An autocommit connection to the test database; the tables start empty."""
    with psycopg.connect(jobkit_runtime.settings.database_url, autocommit=True) as connection:
        yield connection


def enqueued_per_tick(db, schema: str) -> Counter[str]:
    """How many requests, processes and results each tick's source has: each tick's job, in
    whatever stage it is."""
    query = sql.SQL(
        "SELECT source FROM {s}.requests UNION ALL SELECT source FROM {s}.processes "
        "UNION ALL SELECT source FROM {s}.results"
    ).format(s=sql.Identifier(schema))
    return Counter(
        source for (source,) in db.execute(query).fetchall() if source.startswith("schedule:")
    )


def tick_times(sources) -> list[datetime.datetime]:
    return sorted(datetime.datetime.fromisoformat(source.rpartition("@")[2]) for source in sources)


def assert_every_tick_once_without_gaps(counts: Counter[str]) -> None:
    assert counts, "no tick was enqueued"
    doubled = {source: count for source, count in counts.items() if count != 1}
    assert doubled == {}
    times = tick_times(counts)
    gaps = [
        (earlier.isoformat(), later.isoformat())
        for earlier, later in itertools.pairwise(times)
        if (later - earlier).total_seconds() != PERIOD
    ]
    assert gaps == []


def recorded_ticks(db, schema: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.schedule_ticks").format(sql.Identifier(schema))
    return db.execute(query).fetchone()[0]


def test_three_workers_enqueue_each_tick_once_even_when_one_is_killed(
    start_worker, schedule_env, jobkit_settings, db, wait_until
):
    env = schedule_env(["testapp.jobs.Noop", f"every {PERIOD:g} seconds"])
    workers = [start_worker("--max-processes", "1", env=env) for _ in range(3)]
    schema = jobkit_settings.schema

    wait_until(lambda: len(enqueued_per_tick(db, schema)) >= 3, 30, message="three ticks")
    # Kill one worker the moment a new tick is in: its scheduler may be the one that won it.
    seen = len(enqueued_per_tick(db, schema))
    wait_until(lambda: len(enqueued_per_tick(db, schema)) > seen, 10, interval=0.01)
    os.killpg(workers[0].pid, signal.SIGKILL)
    wait_until(lambda: len(enqueued_per_tick(db, schema)) >= seen + 4, 30, message="more ticks")
    for worker in workers[1:]:
        worker.send_signal(signal.SIGTERM)
    for worker in workers[1:]:
        assert worker.wait_for_exit() == 0

    counts = enqueued_per_tick(db, schema)
    assert_every_tick_once_without_gaps(counts)
    assert recorded_ticks(db, schema) == len(counts)


def test_a_worker_killed_inside_a_tick_leaves_that_tick_to_a_peer(
    start_worker, schedule_env, jobkit_settings, db, wait_until, tmp_path
):
    # One tick 5 s ago (late, but within the 60 s on-time grace) and the next in 55 s: every
    # worker started meanwhile goes for the same tick, however slowly a busy machine starts them.
    # A second entry ticks every 2 s: the peers must go on with it while the tick is held.
    env = schedule_env(
        {
            "job": "testapp.jobs.Noop",
            "schedule": f"every 60 seconds from {time.time() + 55:.3f}",
            "key": "held",
        },
        {"job": "testapp.jobs.Noop", "schedule": f"every {PERIOD:g} seconds", "key": "often"},
    )
    stall_file = tmp_path / "stalled"
    # The first worker records the tick, then stalls before its commit, holding it.
    stalled = start_worker(
        "--max-processes", "1", env={**env, "SCHEDULE_STALL_FILE": str(stall_file)}
    )
    # The file's content, not its existence: it exists before its text is written.
    stalled_tick = wait_until(
        lambda: stall_file.exists() and stall_file.read_text(),
        30,
        message="the first worker stalls inside the tick",
    )
    peers = [start_worker("--max-processes", "1", env=env) for _ in range(2)]
    schema = jobkit_settings.schema
    for peer in peers:
        wait_until(lambda peer=peer: "started" in peer.output(), 30, message="a peer starts")

    assert stalled_tick.startswith("schedule:held@")
    # Not committed, so nobody sees it yet; and the peers do not wait on it with their other
    # entry (they used to, until the stalled worker ended).
    wait_until(
        lambda: (
            sum(source.startswith("schedule:often@") for source in enqueued_per_tick(db, schema))
            >= 2
        ),
        30,
        message="two ticks of the other entry while the held one waits",
    )
    assert stalled_tick not in enqueued_per_tick(db, schema)
    os.killpg(stalled.pid, signal.SIGKILL)
    try:
        wait_until(lambda: stalled_tick in enqueued_per_tick(db, schema), 30)
    except pytest.fail.Exception:
        said = "\n".join(f"--- peer {peer.pid}:\n{peer.output()[-3000:]}" for peer in peers)
        pytest.fail(f"no peer took the tick over within 30 s; the peers said:\n{said}")
    for worker in peers:
        worker.send_signal(signal.SIGTERM)
    for worker in peers:
        assert worker.wait_for_exit() == 0

    counts = enqueued_per_tick(db, schema)
    assert counts.pop(stalled_tick) == 1
    assert_every_tick_once_without_gaps(counts)  # the other entry's
    assert recorded_ticks(db, schema) == len(counts) + 1


def command_results(db, schema: str) -> dict[str, tuple[str, str]]:
    """The latest (status, error) of each scheduled command's results, by its entry's key."""
    query = sql.SQL(
        "SELECT parameters #>> '{{args,0}}', status, error FROM {}.results "
        "WHERE job_name = 'jobkit.ScheduledCommand' ORDER BY ended_at"
    ).format(sql.Identifier(schema))
    return {command: (status, error) for command, status, error in db.execute(query)}


def test_cmd_entries_run_their_commands_and_record_how_they_ended(
    start_worker, schedule_env, jobkit_settings, db, wait_until, tmp_path
):
    out = tmp_path / "out.txt"
    succeeds, fails = f"echo ran >> {out}", "echo no space left >&2; exit 4"
    env = schedule_env(
        {"job": f"cmd:{succeeds}", "schedule": f"every {PERIOD:g} seconds", "key": "succeeds"},
        {"job": f"cmd:{fails}", "schedule": f"every {PERIOD:g} seconds", "key": "fails"},
    )
    worker = start_worker("--max-processes", "1", env=env)

    results = wait_until(
        lambda: len(found := command_results(db, jobkit_settings.schema)) == 2 and found,
        30,
        message="both commands ran",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0

    assert results["succeeds"] == (Status.SUCCESSFUL.value, "")
    assert out.read_text().startswith("ran\n")
    status, error = results["fails"]
    assert status == Status.ERRORED.value
    assert error.endswith(f"{fails!r} exited with status 4; stderr:\nno space left\n")


# --burst and --no-scheduler ---------------------------------------------------------------------


def test_a_burst_worker_never_leaves_behind_a_tick_its_scheduler_enqueued(
    start_worker, schedule_env, jobkit_runtime, db
):
    """The scheduler enqueues the tick due at start-up slowly, while the main loop finds nothing
    ready: the worker stops its scheduler before it decides to exit (the tick commits first),
    then looks again and runs it."""
    env = {
        **schedule_env(["testapp.jobs.Noop", "every 30 seconds"]),
        "SCHEDULE_SLOW_TICK": "2",
    }
    worker = start_worker("--burst", "--max-processes", "1", env=env)

    assert worker.wait_for_exit() == 0, worker.output()
    stages = db.execute(
        sql.SQL(
            "SELECT 'request' FROM {s}.requests UNION ALL SELECT status FROM {s}.results"
        ).format(s=sql.Identifier(jobkit_runtime.settings.schema))
    ).fetchall()
    assert stages == [("SUCCESSFUL",)], worker.output()


def test_no_scheduler_worker_neither_checks_nor_imports_the_entries(
    start_worker, schedule_env, jobkit_runtime
):
    """Entries for jobs of another codebase are the scheduling workers' business."""
    request = jobkit_runtime.enqueue(Noop())
    env = schedule_env(["elsewhere.jobs.Report", "every 30 seconds"])
    worker = start_worker("--burst", "--no-scheduler", "--max-processes", "1", env=env)

    assert worker.wait_for_exit() == 0, worker.output()
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status is Status.SUCCESSFUL
    assert "scheduler off (--no-scheduler): 1 entries left to other workers" in worker.output()


# Start-up errors and `jobkit schedule` ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            ["testapp.jobs.Noop", "0 9 * * 8"],
            'Error: schedule setting, entry 1 (["testapp.jobs.Noop", "0 9 * * 8"]): ',
        ),
        (
            ["app.jobs.Gone", "@daily"],
            'Error: schedule setting, entry 1 (["app.jobs.Gone", "@daily"]): no job is '
            "registered as 'app.jobs.Gone'",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "timezone": "Europe/Gotham"},
            "Error: schedule setting, entry 1 (job=testapp.jobs.Noop, schedule=@daily, "
            "timezone=Europe/Gotham): unknown timezone 'Europe/Gotham'",
        ),
    ],
)
def test_a_bad_entry_stops_the_worker_before_it_registers(
    run_cli, schedule_env, jobkit_runtime, entry, message
):
    result = run_cli("worker", env=schedule_env(entry))

    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert jobkit_runtime.store.workers() == []


def test_jobkit_schedule_lists_entries_with_their_next_ticks(run_cli, schedule_env, jobkit_runtime):
    env = schedule_env(
        {
            "job": "testapp.jobs.Noop",
            "schedule": "30 2 * * *",
            "timezone": "America/New_York",
            "queue": "nightly",
            "catch_up": "latest",
        },
        ["cmd:./cleanup.sh", "@hourly"],
    )

    listed = run_cli("schedule", "--json", env=env)
    text = run_cli("schedule", env=env)

    assert listed.returncode == 0, listed.stderr
    nightly, cleanup = json.loads(listed.stdout)
    assert nightly["key"] == "testapp.jobs.Noop 30 2 * * * America/New_York"
    assert (nightly["job"], nightly["schedule"], nightly["timezone"]) == (
        "testapp.jobs.Noop",
        "30 2 * * *",
        "America/New_York",
    )
    assert (nightly["queue"], nightly["catch_up"], nightly["last_tick"]) == (
        "nightly",
        "latest",
        None,
    )
    firings = [datetime.datetime.fromisoformat(moment) for moment in nightly["next"]]
    assert len(firings) == 3
    assert all((f.hour, f.minute) == (2, 30) for f in firings)
    assert [(b - a).days for a, b in itertools.pairwise(firings)] == [1, 1]
    assert cleanup["key"] == "cmd:./cleanup.sh @hourly"
    assert text.returncode == 0, text.stderr
    assert (
        "testapp.jobs.Noop 30 2 * * * America/New_York\n    job        testapp.jobs.Noop\n"
        in text.stdout
    )
    assert "    schedule   30 2 * * * (America/New_York)\n" in text.stdout
    assert "    last tick  never\n" in text.stdout


def test_jobkit_schedule_reports_a_bad_entry(run_cli, schedule_env):
    result = run_cli("schedule", env=schedule_env(["testapp.jobs.Noop", "every second"]))

    assert result.returncode == 1
    assert "schedule setting, entry 1" in result.stderr
    assert "write 'every N seconds'" in result.stderr


def test_jobkit_schedule_without_entries_says_how_to_add_them(run_cli):
    result = run_cli("schedule")

    assert result.returncode == 0
    assert result.stdout.startswith("no schedule entries: add them to the schedule setting")
