"""Tests of the scheduler against the test database: one request per tick however many
schedulers try, the on-time grace, catch-up, declined ticks, a database that does not answer,
and the ``cmd:`` job, which runs only the commands of its own process's schedule.

Ticks come from ``testapp.schedule_plugin``'s ``"every N seconds from T"`` schedules, so a test
can put the latest tick where it needs it (seconds or minutes ago) by the real clock; the
uniqueness and the clock are the database's, as in production.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
import uuid

import attrs
import psycopg
import pytest
from psycopg import sql

import testapp.jobs
import testapp.key_jobs
from jobkit import ParameterError, Status
from jobkit.builtin.cron import (
    BUSY_RETRY,
    MAX_SLEEP,
    ON_TIME_GRACE,
    ScheduledCommand,
    Scheduler,
    load_entries,
)
from jobkit.runtime import Runtime
from jobkit.testing.inline import run_jobs

HOUR = 3600


def every_hour_with_a_tick(seconds_ago: float) -> str:
    """A schedule whose latest tick was ``seconds_ago`` seconds ago and whose next is in about
    an hour."""
    return f"every {HOUR} seconds from {time.time() - seconds_ago:.3f}"


@pytest.fixture
def scheduling(jobkit_runtime_factory):
    """``scheduling(*entries)``: a runtime with those schedule entries (and the seconds-level
    test schedules), and its checked entries."""

    def make(*schedule, **settings):
        runtime = jobkit_runtime_factory(
            schedule=list(schedule), plugins=["testapp.schedule_plugin"], **settings
        )
        return runtime, load_entries(runtime)

    return make


def scheduled_requests(runtime, job_name="testapp.jobs.Noop"):
    requests, processes = runtime.store.find_active(
        job_name=job_name, concurrency_key=None, connection=None
    )
    return sorted([*requests, *processes], key=lambda request: request.source)


def test_a_due_tick_is_enqueued_once_with_its_fire_time_in_the_source(scheduling):
    runtime, entries = scheduling(["testapp.jobs.Noop", every_hour_with_a_tick(5)])
    [entry] = entries
    due = entry.schedule.last_fire_at_or_before(runtime.store.database_now())

    Scheduler(runtime, entries).tick()
    Scheduler(runtime, entries).tick()

    [request] = scheduled_requests(runtime)
    assert request.source == f"schedule:{entry.key}@{due.isoformat()}"
    assert runtime.store.last_ticks([entry.key]) == {entry.key: due}


def test_schedulers_racing_for_one_tick_enqueue_it_once(scheduling, jobkit_runtime_factory):
    schedule = ["testapp.jobs.Noop", every_hour_with_a_tick(2)]
    racers = [scheduling(schedule) for _ in range(4)]
    barrier = threading.Barrier(len(racers))

    def race(runtime, entries):
        barrier.wait()
        Scheduler(runtime, entries).tick()

    threads = [threading.Thread(target=race, args=racer) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(scheduled_requests(racers[0][0])) == 1


class RolledBack(Exception):
    """Ends a test's transaction with a rollback."""


def test_a_tick_another_transaction_holds_leaves_the_other_entries_going(scheduling, caplog):
    """A peer's tick transaction that stays open (in a slow should_enqueue, or frozen) makes
    this scheduler neither wait nor skip: it enqueues its other entries, says once that the
    tick is busy, tries it again within BUSY_RETRY, and enqueues it once the holder rolls back
    (after a commit, it would find it recorded)."""
    held = ["testapp.jobs.Noop", every_hour_with_a_tick(5)]
    other = {
        "job": "testapp.Tally",
        "schedule": every_hour_with_a_tick(5),
        "kwargs": {"key": "other"},
    }
    runtime, entries = scheduling(held, other)
    peer, [peer_entry] = scheduling(held)
    fire_at = peer_entry.schedule.last_fire_at_or_before(peer.store.database_now())
    scheduler = Scheduler(runtime, entries)

    with contextlib.suppress(RolledBack), peer.store.transaction() as holding:
        assert peer.store.record_tick(key=peer_entry.key, fire_at=fire_at, connection=holding)
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="jobkit.scheduler"):
            waits = [scheduler.tick(), scheduler.tick()]
        assert time.monotonic() - started < 2  # no wait on the holder's row
        assert waits == [BUSY_RETRY, BUSY_RETRY]
        assert scheduled_requests(runtime) == []
        assert [r.job_name for r in scheduled_requests(runtime, "testapp.Tally")] == [
            "testapp.Tally"
        ]
        busy = [r.message for r in caplog.records if "trying again every" in r.message]
        assert len(busy) == 1, busy
        assert f"tick {fire_at.isoformat()}: another transaction is recording" in busy[0]
        raise RolledBack

    assert scheduler.tick() == MAX_SLEEP
    [request] = scheduled_requests(runtime)
    assert request.source == f"schedule:{peer_entry.key}@{fire_at.isoformat()}"


def test_the_options_of_an_entry_reach_the_request(scheduling):
    runtime, entries = scheduling(
        {
            "job": "testapp.Tally",
            "schedule": every_hour_with_a_tick(1),
            "kwargs": {"key": "nightly"},
            "queue": "reports",
            "priority": 7,
            "retries": 3,
        }
    )

    Scheduler(runtime, entries).tick()

    [request] = scheduled_requests(runtime, "testapp.Tally")
    assert (request.queue, request.priority, request.retries) == ("reports", 7, 3)
    assert runtime.rebuild_job(request).key == "nightly"


def test_after_the_tick_the_scheduler_sleeps_until_the_next_one_or_a_minute(scheduling):
    runtime, entries = scheduling(
        ["testapp.jobs.Noop", every_hour_with_a_tick(1)],
        {
            "job": "testapp.Tally",
            "schedule": f"every 2 seconds from {time.time():.3f}",
            "kwargs": {"key": "often"},
        },
    )

    wait = Scheduler(runtime, entries).tick()

    assert 0 < wait <= 2.01
    hourly_only, _ = scheduling(["testapp.jobs.Noop", every_hour_with_a_tick(1)])
    assert Scheduler(hourly_only, load_entries(hourly_only)).tick() == MAX_SLEEP


# Late ticks ----------------------------------------------------------------------------------


def test_a_tick_missed_by_seconds_is_enqueued_when_a_scheduler_starts(scheduling):
    runtime, entries = scheduling(["testapp.jobs.Noop", every_hour_with_a_tick(ON_TIME_GRACE / 2)])

    Scheduler(runtime, entries).tick()

    assert len(scheduled_requests(runtime)) == 1


def test_a_tick_missed_by_longer_than_the_grace_is_skipped_and_logged(scheduling, caplog):
    runtime, entries = scheduling(["testapp.jobs.Noop", every_hour_with_a_tick(ON_TIME_GRACE + 30)])

    with caplog.at_level(logging.WARNING, logger="jobkit.scheduler"):
        wait = Scheduler(runtime, entries).tick()

    assert scheduled_requests(runtime) == []
    assert wait == MAX_SLEEP
    assert runtime.store.last_ticks([entries[0].key]) == {}


def test_catch_up_latest_enqueues_the_latest_missed_tick_once(scheduling):
    spec = every_hour_with_a_tick(10 * 60)
    runtime, entries = scheduling(
        {"job": "testapp.jobs.Noop", "schedule": spec, "catch_up": "latest"}
    )
    [entry] = entries
    latest = entry.schedule.last_fire_at_or_before(runtime.store.database_now())
    earlier = latest - datetime.timedelta(hours=3)
    with runtime.store.transaction() as connection:
        runtime.store.record_tick(key=entry.key, fire_at=earlier, connection=connection)

    Scheduler(runtime, entries).tick()
    Scheduler(runtime, entries).tick()

    [request] = scheduled_requests(runtime)
    assert request.source.endswith(f"@{latest.isoformat()}")  # not the two in between


def test_catch_up_needs_a_tick_of_the_entry_before(scheduling):
    spec = every_hour_with_a_tick(10 * 60)
    runtime, entries = scheduling(
        {"job": "testapp.jobs.Noop", "schedule": spec, "catch_up": "latest"}
    )

    Scheduler(runtime, entries).tick()

    assert scheduled_requests(runtime) == []


def test_without_catch_up_a_long_downtime_enqueues_nothing(scheduling):
    runtime, entries = scheduling(["testapp.jobs.Noop", every_hour_with_a_tick(10 * 60)])
    [entry] = entries
    latest = entry.schedule.last_fire_at_or_before(runtime.store.database_now())
    with runtime.store.transaction() as connection:
        runtime.store.record_tick(
            key=entry.key, fire_at=latest - datetime.timedelta(hours=1), connection=connection
        )

    Scheduler(runtime, entries).tick()

    assert scheduled_requests(runtime) == []


# Declined ticks, the database away ---------------------------------------------------------------


def test_a_tick_should_enqueue_declines_is_recorded_and_not_enqueued(scheduling, caplog):
    runtime, entries = scheduling(
        {"job": "keys.Keyed", "schedule": every_hour_with_a_tick(1), "kwargs": {"key": "k"}}
    )
    testapp.key_jobs.Keyed("k").run_in_worker()  # still pending: the key is taken

    with caplog.at_level(logging.INFO, logger="jobkit.scheduler"):
        Scheduler(runtime, entries).tick()

    requests = scheduled_requests(runtime, "keys.Keyed")
    assert [request.source.startswith("schedule:") for request in requests] == [False]
    assert entries[0].key in runtime.store.last_ticks([entries[0].key])
    assert "not enqueued: should_enqueue() declined it" in caplog.text


def test_a_scheduler_whose_database_is_away_logs_and_keeps_trying(jobkit_settings, caplog):
    settings = attrs.evolve(
        jobkit_settings,
        database_url="postgresql://nobody@127.0.0.1:9/nowhere",
        schedule=[["testapp.jobs.Noop", every_hour_with_a_tick(1)]],
        plugins=["testapp.schedule_plugin"],
    )
    runtime = Runtime.from_settings(settings, load_entrypoints=False)
    scheduler = Scheduler(runtime, load_entries(runtime))

    with caplog.at_level(logging.WARNING, logger="jobkit.scheduler"):
        scheduler.start()
        deadline = time.monotonic() + 10
        while "trying again every" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler.stop()

    assert "scheduler: the database is unreachable" in caplog.text
    assert not scheduler._thread.is_alive()


# cmd: entries --------------------------------------------------------------------------------


@pytest.fixture
def run_command(jobkit_runtime_factory):
    """``run_command(command)``: run the ``cmd:`` entry of ``command`` as a tick would enqueue
    it (by its key) and return its result."""

    def run(command):
        runtime = jobkit_runtime_factory(
            schedule=[{"job": f"cmd:{command}", "schedule": "@daily", "key": "the-command"}]
        )
        ScheduledCommand("the-command").run_in_worker()
        [result] = run_jobs(runtime)
        return result

    return run


def test_a_command_that_exits_0_is_successful(run_command, tmp_path):
    marker = tmp_path / "ran"

    result = run_command(f"echo ran > {marker}")

    assert result.status is Status.SUCCESSFUL
    assert marker.read_text() == "ran\n"


def test_a_failing_command_is_errored_with_its_status_and_stderr(run_command):
    result = run_command("echo to stdout; echo disk full >&2; exit 3")

    assert result.status is Status.ERRORED
    assert result.error_type == "jobkit.builtin.cron.CommandFailed"
    assert result.error.endswith(
        "CommandFailed: 'echo to stdout; echo disk full >&2; exit 3' exited with status 3; "
        "stderr:\ndisk full\n"
    )


def test_a_command_killed_by_a_signal_says_so(run_command):
    result = run_command("kill -KILL $$")

    assert result.status is Status.ERRORED
    assert "'kill -KILL $$' was killed by signal 9" in result.error


def test_a_cmd_entry_enqueues_its_key_not_its_command(scheduling):
    runtime, entries = scheduling(["cmd:echo hello", every_hour_with_a_tick(1)])
    [entry] = entries

    Scheduler(runtime, entries).tick()

    [request] = scheduled_requests(runtime, "jobkit.ScheduledCommand")
    assert json.loads(request.parameters) == {"args": [entry.key], "kwargs": {}}
    assert runtime.rebuild_job(request).command == "echo hello"


@pytest.mark.parametrize(
    "key",
    [
        "touch owned.txt",  # a command instead of a key
        "testapp.jobs.Noop @daily",  # the key of an entry that is not a cmd:
    ],
)
def test_a_key_that_names_no_cmd_entry_is_refused_without_a_retry(jobkit_runtime_factory, key):
    runtime = jobkit_runtime_factory(
        schedule=[["cmd:true", "@daily"], ["testapp.jobs.Noop", "@daily"]]
    )
    with pytest.raises(ParameterError, match="runs only the cmd: entries of this process"):
        ScheduledCommand(key)
    # Written straight into the table, as anyone who can write to the database could.
    query = sql.SQL(
        "INSERT INTO {}.requests (id, job_id, job_name, parameters, queue, retries) "
        "VALUES (%(id)s, %(id)s, 'jobkit.ScheduledCommand', %(parameters)s, 'default', 3)"
    ).format(sql.Identifier(runtime.settings.schema))
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        parameters = json.dumps({"args": [key], "kwargs": {}})
        connection.execute(query, {"id": uuid.uuid4(), "parameters": parameters})

    [result] = run_jobs(runtime)

    assert result.status is Status.ERRORED
    assert result.error_type == "jobkit.errors.ParameterError"
    assert f"none has the key {key!r}" in result.error
    assert result.retry_request_id is None


def test_the_operations_describe_each_entry_through_the_hook(scheduling):
    from jobkit.operations import Operations

    runtime, [entry] = scheduling(
        {"job": "testapp.jobs.Noop", "schedule": "0 9 * * MON-FRI", "queue": "reports"},
        timezone="Europe/Berlin",
    )
    Scheduler(runtime, [entry]).tick()  # nothing due: no tick recorded
    [described] = Operations(runtime).schedules()
    assert described["key"] == entry.key and described["job"] == "testapp.jobs.Noop"
    assert (described["schedule"], described["timezone"]) == ("0 9 * * MON-FRI", "Europe/Berlin")
    assert described["queue"] == "reports" and described["last_tick"] is None
    assert len(described["next"]) == 3
    assert all(moment.endswith(("+01:00", "+02:00")) for moment in described["next"])
    assert "T09:00:00" in described["next"][0]
    runtime.pm.set_blocked("jobkit.builtin.cron")
    assert Operations(runtime).schedules() == []
