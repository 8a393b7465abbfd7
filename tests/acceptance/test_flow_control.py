"""Flow limits in real ``jobkit worker`` processes: three workers share the ``limits`` setting,
and the ledger the test jobs write (their start and end times, by the database clock) shows
that no limit is ever passed, that a saturated limit is used close to the full, and that an
unlimited queue is not held up by a limited one. Workers poll only every 30 s here, so what
starts a held-back job is the wake-up a freed slot sends, or the worker's own reckoning of when
a rate window reopens."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import signal

import pytest

from testapp.flow_jobs import OneAtATime
from testapp.jobs import Record, Tally

pytestmark = pytest.mark.acceptance

WORKERS = 3
JITTER = 0.5
"""Seconds a claimed job may take to start in its pool child (and write its ledger row over a
new connection), more than another one claimed with it, on a busy machine: limits count claims,
the ledger records starts."""


def limits_env(*limits: dict) -> dict[str, str]:
    return {"JOBKIT_LIMITS": json.dumps(list(limits)), "JOBKIT_WORKER_POLL_INTERVAL": "30"}


def spans(db, key_prefix: str) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """(start, end) of each Record run whose key starts with ``key_prefix``."""
    rows = db.query(
        "SELECT key, min(at) FILTER (WHERE phase = 'start'), min(at) FILTER (WHERE phase = 'end') "
        "FROM {schema}.ledger WHERE key LIKE %s GROUP BY key",
        (key_prefix + "%",),
    )
    return [(start, end) for _, start, end in rows]


def most_at_once(intervals: list[tuple[datetime.datetime, datetime.datetime]]) -> int:
    """The most intervals that overlap at any moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = highest = 0
    for _, change in events:
        running += change
        highest = max(highest, running)
    return highest


def start_workers(start_worker, env: dict[str, str], *args: str) -> list:
    return [
        start_worker("--max-processes", "2", "--max-pending-per-process", "1", *args, env=env)
        for _ in range(WORKERS)
    ]


def wait_showing_workers(wait_until, workers, condition, timeout: float, message: str) -> None:
    """``wait_until``, failing with what the workers logged: a job held past its window by a
    worker that missed when the window reopened waits for the 30 s poll, and only their logs
    say which worker and why."""
    try:
        wait_until(condition, timeout=timeout, message=message)
    except pytest.fail.Exception:
        said = "\n\n".join(f"worker {n}:\n{w.output()}" for n, w in enumerate(workers, 1))
        pytest.fail(f"not within {timeout} s: {message}; the workers logged:\n{said}", False)


def stop(workers) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_for_exit() == 0, worker.output()


def test_max_running_holds_across_workers_and_is_used_in_full(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    jobs, seconds, limit = 15, 0.4, 3
    jobkit_runtime.enqueue_many([Record(f"run-{n}", seconds=seconds) for n in range(jobs)])
    workers = start_workers(
        start_worker, limits_env({"job_name": "testapp.Record", "max_running": limit})
    )
    wait_showing_workers(
        wait_until,
        workers,
        lambda: len(spans(db, "run-")) == jobs and all(e for _, e in spans(db, "run-")),
        30,
        "every limited job ran",
    )
    stop(workers)

    runs = spans(db, "run-")
    assert most_at_once(runs) == limit  # reached, never passed
    # Saturated: the slots were busy most of the time, whichever workers ran the jobs (what is
    # lost is a freed slot's wake-up, claim and dispatch: without the wake-up, a 30 s poll).
    elapsed = (max(end for _, end in runs) - min(start for start, _ in runs)).total_seconds()
    busy = sum((end - start).total_seconds() for start, end in runs)
    assert busy / elapsed > 0.6 * limit
    # Each worker runs two at most: the limit of three was kept between workers.
    assert db.value("SELECT count(DISTINCT worker_id) FROM {schema}.results") >= 2


def test_max_starts_holds_across_workers_and_is_used_in_full(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    jobs, per, limit = 9, 2.0, 3
    jobkit_runtime.enqueue_many([Record(f"rate-{n}") for n in range(jobs)], queue="rated")
    workers = start_workers(
        start_worker,
        limits_env({"queue": "rated", "max_starts": limit, "per": per}),
        "--queue",
        "rated",
    )
    wait_showing_workers(
        wait_until, workers, lambda: len(spans(db, "rate-")) == jobs, 30, "every job started"
    )
    stop(workers)

    starts = sorted(start for start, _ in spans(db, "rate-"))
    window = datetime.timedelta(seconds=per - JITTER)
    for first in starts:
        assert sum(first <= start < first + window for start in starts) <= limit
    # Saturated: a window of starts opens every `per` seconds, and the workers use each at once.
    elapsed = (starts[-1] - starts[0]).total_seconds()
    assert (jobs / limit - 1) * per - JITTER <= elapsed <= (jobs / limit - 1) * per + 1.5


def test_an_unlimited_queue_drains_while_a_limited_one_waits(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    jobkit_runtime.enqueue_many([Record(f"gated-{n}", seconds=30) for n in range(3)], queue="gated")
    jobkit_runtime.enqueue_many([Tally(f"free-{n}") for n in range(50)], queue="free")
    workers = start_workers(
        start_worker,
        limits_env({"queue": "gated", "max_running": 1}),
        "--queue",
        "gated",
        "--queue",
        "free",
    )
    wait_until(
        lambda: db.count("ledger", "key LIKE %s", ("free-%",)) == 50,
        timeout=20,
        message="the unlimited queue drained",
    )
    assert db.count("ledger", "key LIKE %s AND phase = 'start'", ("gated-%",)) == 1
    assert db.count("processes", "queue = 'gated'") == 1
    assert db.count("requests", "queue = 'gated'") == 2
    for worker in workers:
        worker.send_signal(signal.SIGKILL)


def test_a_worker_rate_limit_spaces_its_claims(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    gap = 0.3
    jobkit_runtime.enqueue_many([Record(f"spaced-{n}") for n in range(6)])
    worker = start_worker("--max-processes", "2", "--rate-limit", str(gap))
    wait_until(lambda: len(spans(db, "spaced-")) == 6, timeout=20, message="every job started")
    stop([worker])

    starts = sorted(start for start, _ in spans(db, "spaced-"))
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= gap - JITTER / 2
    assert max(gaps) < gap + 1.0  # and no slower than that: not the poll interval


def test_a_killed_workers_running_slots_are_freed_by_the_rescue(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    jobkit_runtime.enqueue_many([Record("held", seconds=60)], queue="gated")
    env = limits_env({"queue": "gated", "max_running": 1})
    doomed = start_worker("--queue", "gated", "--max-processes", "1", env=env)
    wait_until(lambda: spans(db, "held"), timeout=20, message="the first job started")
    jobkit_runtime.enqueue_many([Record("next")], queue="gated")
    survivor = start_worker("--queue", "gated", "--max-processes", "1", env=env)
    wait_until(lambda: db.count("workers") == 2, timeout=20, message="the second worker")
    assert not spans(db, "next")  # held back by the limit

    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool child, as kill -9 of all
    # The survivor's sweep finds the silent worker after heartbeat_timeout (5 s here), records
    # its attempt LOST, which frees the slot: the waiting job runs.
    wait_until(lambda: spans(db, "next"), timeout=20, message="the held-back job started")
    assert db.count("results", "status = 'LOST'") == 1
    stop([survivor])


def test_a_job_class_limit_holds_across_workers(
    start_worker, wait_until, jobkit_runtime, ledger_ready, db
):
    jobkit_runtime.enqueue_many([OneAtATime(f"one-{n}", seconds=0.3) for n in range(5)])
    env = {"JOBKIT_IMPORTS": "testapp.jobs,testapp.flow_jobs", "JOBKIT_WORKER_POLL_INTERVAL": "30"}
    workers = start_workers(start_worker, env)
    wait_until(
        lambda: len(spans(db, "one-")) == 5 and all(end for _, end in spans(db, "one-")),
        timeout=30,
        message="every job ran",
    )
    stop(workers)
    assert most_at_once(spans(db, "one-")) == 1
