"""Fault injection against real ``jobkit worker`` processes: kill -9 of a pool child and of a
whole worker, SIGTERM with short and long jobs, a frozen worker (SIGSTOP), a job that ignores
SIGTERM, terminated connections, poison rows, and many
workers competing for the same jobs.

Workers run with a 1 s heartbeat, a 5 s heartbeat timeout and a 0.5 s poll (``subprocess_env``).
Every test waits for conditions in the database, with deadlines, and ends with
``check_invariants``: one final result per job, nothing claimed or left pending, and no job run
more often than the faults that hit it allow.

The tests that restart or stop PostgreSQL are in test_restarts.py, on a server of their own.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterable, Sequence

import pytest
from faults import (
    WorkerLauncher,
    alive,
    attempts,
    backends_of,
    check_invariants,
    ledger_starts,
    teach_fast_runs,
    terminate_backends,
    wait_for,
)

from jobkit.records import JobRequest
from testapp.fault_jobs import AbortedRaises, IgnoresTerm, IgnoresTermWithTimeout, Sleeper
from testapp.jobs import Record, Tally

pytestmark = pytest.mark.acceptance

GRACE = 3
"""The shutdown grace (``--shutdown-timeout``) the signal tests give their workers."""

SLOW_POLL = {"JOBKIT_WORKER_POLL_INTERVAL": "30"}
"""A poll so slow that a prompt start can only come from a LISTEN/NOTIFY wake-up."""


# Helpers -------------------------------------------------------------------------------------


def keyed(requests: Sequence[JobRequest | None], keys: Iterable[str]) -> dict[uuid.UUID, str]:
    """job_id -> ledger key, for ``check_invariants``."""
    found = {}
    for request, key in zip(requests, keys, strict=True):
        assert request is not None
        found[request.job_id] = key
    return found


def enqueue(runtime, jobs, **options) -> dict[uuid.UUID, str]:
    return keyed(runtime.enqueue_many(jobs, **options), [job.key for job in jobs])


def runs(db, key: str, phase: str = "start") -> list[tuple]:
    """(pid, attempt, at) of the ledger rows of ``key`` with ``phase``, oldest first."""
    return db.query(
        "SELECT pid, attempt, at FROM {schema}.ledger WHERE key = %s AND phase = %s ORDER BY at",
        [key, phase],
    )


def history(db, job_id: uuid.UUID) -> list[tuple]:
    """(retry_attempt, status, error_type, has a retry) of each result of the job."""
    return [
        (a.retry_attempt, a.status, a.error_type, a.retry_request_id is not None)
        for a in attempts(db, [job_id])[job_id]
    ]


def finished(db, job_ids: Iterable[uuid.UUID]) -> bool:
    """Every job has a final result (one without a retry)."""
    job_ids = list(job_ids)
    done = db.value(
        "SELECT count(*) FROM {schema}.results WHERE job_id = ANY(%s) AND retry_request_id IS NULL",
        [job_ids],
    )
    return done == len(job_ids)


def start_latency(db, key: str, request: JobRequest) -> float:
    """Seconds from the enqueue to the first start of ``key`` (both by the database clock)."""
    return db.value(
        "SELECT extract(epoch FROM min(at) - %s)::float8 FROM {schema}.ledger "
        "WHERE key = %s AND phase = 'start'",
        [request.created_at, key],
    )


def database_now(db):
    return db.value("SELECT clock_timestamp()")


def registered(db, worker) -> bool:
    return db.count("workers", "pid = %s", [worker.pid]) == 1


def start_ready(workers: WorkerLauncher, db, *args: str, **options):
    """Start a worker and wait until its pool is up and its heartbeat row is written."""
    worker = workers.start(*args, **options)
    worker.wait_for_log(" started: queues ")
    wait_for(lambda: registered(db, worker), 10, message=f"worker {worker.pid} registered")
    return worker


# kill -9 --------------------------------------------------------------------------------------


def test_kill_9_of_a_child_mid_job_loses_only_that_attempt(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    victim = Record("victim", seconds=3).run_in_worker(retries=1)
    assert victim is not None
    jobs = {victim.job_id: "victim"}
    jobs |= enqueue(jobkit_runtime, [Record(f"before-{n}", seconds=0.5) for n in range(4)])
    worker = workers.start("--max-processes", "2")
    [(pid, _, _)] = wait_for(lambda: runs(db, "victim"), message="the victim's start")
    children = worker.pool_children()
    assert pid in children and len(children) == 2

    os.kill(pid, signal.SIGKILL)
    jobs |= enqueue(jobkit_runtime, [Record(f"after-{n}", seconds=0.2) for n in range(4)])

    wait_for(lambda: finished(db, jobs), 30, message="every job finished")
    assert history(db, victim.job_id) == [
        (0, "LOST", "ChildDied", True),
        (1, "SUCCESSFUL", "", False),
    ]
    [(_, first, _), (rerun_pid, second, _)] = runs(db, "victim")
    assert (first, second) == (0, 1)
    assert not alive(pid)
    # The dead child was replaced: the pool has two children again, and the re-run and the
    # jobs enqueued after the kill ran on the worker's live children.
    children = worker.pool_children()
    assert len(children) == 2 and pid not in children and rerun_pid in children
    later = {pid for key in jobs.values() if key.startswith("after") for pid, _, _ in runs(db, key)}
    assert later <= children
    assert "the pool child running the job died (killed by SIGKILL)" in worker.output()
    assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs, faults={victim.job_id: 1})
    assert ledger_starts(jobkit_settings)["victim"] == 2


@pytest.mark.parametrize("target", ["group", "main"], ids=["whole-group", "main-process-only"])
def test_kill_9_of_a_worker_lets_a_peer_rescue_its_jobs(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db, target
):
    """``group``: kill -9 of the worker's process group; ``main``: of its main process alone,
    whose pool children must then die with it (they must not run on, unowned)."""
    doomed = start_ready(workers, db, "--max-processes", "2")
    teach_fast_runs(jobkit_runtime)
    # Attempt 0 takes 8 s, so the first worker still holds every job when the peer is up; the
    # re-runs (attempt 1) are quick.
    jobs = enqueue(
        jobkit_runtime,
        [Sleeper(f"j{n}", seconds=8, only_first_attempt=True) for n in range(6)],
        retries=1,
    )
    wait_for(lambda: db.count("processes") == 6, message="the first worker claimed every job")
    wait_for(lambda: len(ledger_starts(jobkit_settings)) == 2, message="two jobs started")
    peer = start_ready(workers, db, "--max-processes", "2")
    held = {row[0] for row in db.query("SELECT job_id FROM {schema}.processes")}
    assert len(held) >= 4, "the first worker should still hold most of its jobs"
    doomed_children = doomed.children()

    killed_at = database_now(db)
    if target == "group":
        os.killpg(doomed.pid, signal.SIGKILL)
    else:
        os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in doomed_children), 5, message="children gone")

    wait_for(lambda: finished(db, jobs), 40, message="every job finished")
    started = {job_id for job_id in held if history(db, job_id)[0][1] == "LOST"}
    assert len(started) == 2, "the two jobs running when the worker died are LOST"
    for job_id in started:
        assert history(db, job_id) == [
            (0, "LOST", "WorkerLost", True),
            (1, "SUCCESSFUL", "", False),
        ]
    # The jobs it had claimed but not started went back to the queue and ran once, at attempt 0.
    for job_id in held - started:
        assert history(db, job_id) == [(0, "SUCCESSFUL", "", False)]
    # The rescued jobs restarted on the peer within the heartbeat timeout and a few seconds.
    restarted = db.value(
        "SELECT max(first_start) FROM (SELECT min(at) AS first_start FROM {schema}.ledger "
        "WHERE phase = 'start' AND attempt = 1 GROUP BY key) AS restarts"
    )
    assert (restarted - killed_at).total_seconds() <= 12
    # No child of the dead worker wrote anything after the kill.
    after_kill = db.query(
        "SELECT key, phase, pid FROM {schema}.ledger WHERE at > %s AND pid = ANY(%s)",
        [killed_at, sorted(doomed_children)],
    )
    assert after_kill == []
    assert "recorded 2 of its jobs LOST and returned" in peer.output()
    assert peer.stop(10) == 0, peer.output()
    check_invariants(db, jobkit_settings, jobs, faults=dict.fromkeys(held, 1))


# SIGTERM --------------------------------------------------------------------------------------


def test_sigterm_lets_a_short_job_finish(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = Record("short", seconds=1).run_in_worker()
    assert job is not None
    worker = workers.start("--shutdown-timeout", str(GRACE))
    wait_for(lambda: runs(db, "short"), message="the job's start")

    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit(GRACE + 5) == 0, worker.output()
    assert time.monotonic() - signalled <= GRACE + 1

    assert history(db, job.job_id) == [(0, "SUCCESSFUL", "", False)]
    assert db.count("results", "status = 'CANCELLED'") == 0
    check_invariants(db, jobkit_settings, {job.job_id: "short"})


@pytest.mark.parametrize(
    ("signals", "ignores_sigterm"),
    [(1, False), (1, True), (2, False)],
    ids=["one-SIGTERM", "one-SIGTERM-job-ignores-it", "two-SIGTERMs"],
)
def test_sigterm_cancels_a_long_job_and_requeues_it_without_using_a_retry(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db, signals, ignores_sigterm
):
    """One SIGTERM: the job gets the grace, then is ended (SIGTERM, and SIGKILL a second later
    if it ignores that) and recorded CANCELLED. Two: the second ends it at once (the grace is
    long here, so waiting for it would show)."""
    grace = GRACE if signals == 1 else 10
    long = Sleeper(
        "long", seconds=30, only_first_run=True, ignore_sigterm=ignores_sigterm
    ).run_in_worker(retries=0)
    assert long is not None
    queued = jobkit_runtime.enqueue_many([Record(f"queued-{n}") for n in range(3)])
    jobs = {long.job_id: "long"} | keyed(queued, [f"queued-{n}" for n in range(3)])
    warm_up = teach_fast_runs(jobkit_runtime)
    # One child: after the quick warm-up it is handed all four jobs and starts the long one;
    # three wait behind it.
    worker = workers.start("--max-processes", "1", "--shutdown-timeout", str(grace))
    [(child, _, _)] = wait_for(lambda: runs(db, "long"), message="the long job's start")
    assert db.count("processes") == 4

    worker.send_signal(signal.SIGTERM)
    if signals == 2:
        worker.wait_for_log("SIGTERM received")
        time.sleep(0.5)  # the fault: a second SIGTERM half a second after the first
        worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait_for_exit(grace + 10) == 0, worker.output()
    took = time.monotonic() - signalled
    # The grace, the kill grace (1 s) for a job that ignores SIGTERM, and a second to exit.
    limit = (grace if signals == 1 else 0) + (1 if ignores_sigterm else 0) + 2
    assert took <= limit, f"exit took {took:.1f} s, more than {limit} s"
    assert not alive(child)
    assert runs(db, "long", "end") == []

    [result] = attempts(db, [long.job_id])[long.job_id]
    assert (result.status, result.error_type) == ("CANCELLED", "Cancelled")
    assert result.retry_request_id is not None
    # Enqueued again without using an attempt; the three it never started went back to the
    # queue unchanged (same id, attempt 0) with no result.
    assert sorted(db.query("SELECT id, retry_attempt, retry_of FROM {schema}.requests")) == sorted(
        [(result.retry_request_id, 0, long.id)] + [(r.id, 0, None) for r in queued]
    )
    assert db.count("results", "job_id <> %s", [warm_up.job_id]) == 1
    assert ledger_starts(jobkit_settings) == {"long": 1}

    later = workers.start("--burst")
    assert later.wait_for_exit(30) == 0, later.output()
    finals = check_invariants(db, jobkit_settings, jobs, faults={long.job_id: 1})
    assert finals[long.job_id].retry_attempt == 0
    assert ledger_starts(jobkit_settings)["long"] == 2


# SIGSTOP --------------------------------------------------------------------------------------


def test_a_frozen_worker_is_rescued_and_its_late_result_is_refused(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    frozen = start_ready(workers, db, "--max-processes", "1")
    job = Sleeper("frozen", seconds=8, only_first_run=True).run_in_worker(retries=1)
    assert job is not None
    [(child, _, _)] = wait_for(lambda: runs(db, "frozen"), message="the job's start")
    assert child in frozen.pool_children()
    peer = start_ready(workers, db, "--max-processes", "1")

    # Only the main process stops: its child runs on and finishes the job while the worker's
    # heartbeat is silent. Keep it stopped until the peer has rescued the job and the child's
    # run has ended, so that the worker, once resumed, holds a result for a lost attempt.
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: (0, "LOST", "WorkerLost", True) in history(db, job.job_id),
            20,
            message="the peer rescued the frozen worker's job",
        )
        wait_for(
            lambda: any(pid == child for pid, _, _ in runs(db, "frozen", "end")),
            15,
            message="the end of the frozen worker's run",
        )
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    frozen.wait_for_log("its lease was lost")
    frozen.wait_for_log("was declared dead by another")
    wait_for(lambda: finished(db, [job.job_id]), 20, message="the re-run finished")
    assert history(db, job.job_id) == [
        (0, "LOST", "WorkerLost", True),
        (1, "SUCCESSFUL", "", False),
    ]
    # It registered again and carries on: with the peer gone, new jobs run on its children.
    wait_for(lambda: registered(db, frozen), 10, message="the frozen worker registered again")
    assert peer.stop(10) == 0, peer.output()
    jobs = {job.job_id: "frozen"}
    jobs |= enqueue(jobkit_runtime, [Record(f"after-{n}") for n in range(3)])
    wait_for(lambda: finished(db, jobs), 20, message="jobs enqueued after the freeze")
    assert {pid for n in range(3) for pid, _, _ in runs(db, f"after-{n}")} <= frozen.pool_children()
    assert frozen.stop(10) == 0, frozen.output()
    check_invariants(db, jobkit_settings, jobs, faults={job.job_id: 1})


# Job time limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["argument", "class"])
def test_a_job_that_ignores_sigterm_is_killed_at_its_timeout(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db, limit
):
    if limit == "argument":
        hung = IgnoresTerm("hung").run_in_worker(timeout=2, retries=1)
    else:
        hung = IgnoresTermWithTimeout("hung").run_in_worker(retries=1)
    assert hung is not None and hung.timeout == 2
    jobs = {hung.job_id: "hung"}
    worker = workers.start("--max-processes", "2")
    wait_for(lambda: runs(db, "hung"), message="the hung job's start")
    jobs |= enqueue(jobkit_runtime, [Record(f"other-{n}", seconds=0.2) for n in range(4)])

    wait_for(lambda: finished(db, jobs), 30, message="every job finished")
    assert history(db, hung.job_id) == [
        (0, "ERRORED", "JobTimeout", True),
        (1, "ERRORED", "JobTimeout", False),
    ]
    [(first_pid, first, first_at), (second_pid, second, second_at)] = runs(db, "hung")
    assert (first, second) == (0, 1)
    assert first_pid != second_pid
    assert not alive(first_pid) and not alive(second_pid)
    # SIGTERM at 2 s was ignored; SIGKILL followed after the 1 s grace, and the retry ran. The
    # clock starts when the child starts the job, a moment before the job writes its ledger row
    # (one insert: tens of milliseconds on a loaded machine), hence the slack below 3 s.
    assert 2.9 <= (second_at - first_at).total_seconds() <= 8
    assert "ran longer than its timeout of 2 s" in worker.output()
    assert worker.poll() is None
    jobs |= enqueue(jobkit_runtime, [Record(f"later-{n}") for n in range(3)])
    wait_for(lambda: finished(db, jobs), 20, message="jobs enqueued after the timeouts")
    assert worker.stop(10) == 0, worker.output()
    check_invariants(
        db, jobkit_settings, jobs, faults={hung.job_id: 1}, final_status={hung.job_id: "ERRORED"}
    )


# Connections ------------------------------------------------------------------------------------


def test_terminated_connections_are_replaced(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(workers, db, "--max-processes", "2", env=SLOW_POLL)
    jobs = enqueue(jobkit_runtime, [Record(f"j{n}", seconds=0.5) for n in range(16)])
    wait_for(lambda: db.count("results") >= 2, message="jobs under way")

    connections = backends_of(db.url, worker.pid)
    # The pool's connections and the listener (and any other this process opened).
    names = set(connections.values())
    prefix = f"jobkit:worker:{worker.pid}"
    assert {prefix, f"{prefix}:listener"} <= names
    assert all(name.startswith(prefix) for name in names)
    terminate_backends(db.url, connections)
    worker.wait_for_log("lost the wake-up connection")

    wait_for(lambda: finished(db, jobs), 30, message="every job finished")
    wait_for(
        lambda: any(n.endswith(":listener") for n in backends_of(db.url, worker.pid).values()),
        5,
        message="the worker listening again",
    )
    late = Record("late").run_in_worker()
    assert late is not None
    jobs[late.job_id] = "late"
    wait_for(lambda: runs(db, "late"), 10, message="the late job's start")
    assert start_latency(db, "late", late) < 2
    assert db.count("results", "status = 'LOST'") == 0
    assert worker.poll() is None
    assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs)


# Poison -----------------------------------------------------------------------------------------


def test_a_lost_job_whose_on_aborted_raises_keeps_its_result_and_retry(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = AbortedRaises("aborts", seconds=30, only_first_run=True).run_in_worker(retries=1)
    assert job is not None
    worker = workers.start(
        "--max-processes", "1", allowed_tracebacks=["on_aborted of aborts exploded on purpose"]
    )
    [(pid, _, _)] = wait_for(lambda: runs(db, "aborts"), message="the job's start")
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: finished(db, [job.job_id]), 20, message="the re-run finished")
    assert history(db, job.job_id) == [
        (0, "LOST", "ChildDied", True),
        (1, "SUCCESSFUL", "", False),
    ]
    wait_for(lambda: runs(db, "aborts", "aborted"), 10, message="on_aborted was called")
    worker.wait_for_log(f"on_aborted of testapp.AbortedRaises {job.id} failed; its result stays")
    jobs = {job.job_id: "aborts"} | enqueue(jobkit_runtime, [Record("after")])
    wait_for(lambda: finished(db, jobs), 20, message="a job after the failure")
    assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs, faults={job.job_id: 1})


def test_poison_rows_fail_once_without_retries_and_the_worker_keeps_going(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    poison = {
        "unknown class": ("testapp.NeverRegistered", {"args": [], "kwargs": {}}),
        "an array": ("testapp.Record", [1, 2]),
        "a string": ("testapp.Record", "key"),
        "args not a list": ("testapp.Record", {"args": {"key": "k"}}),
        "an extra field": ("testapp.Record", {"args": ["k"], "kwargs": {}, "more": 1}),
        "too many args": ("testapp.Record", {"args": ["k", 1, 2, 3]}),
        "a missing arg": ("testapp.Record", {"args": [], "kwargs": {"seconds": 1}}),
        "a wrong type": ("testapp.Record", {"args": ["k"], "kwargs": {"seconds": "soon"}}),
    }
    jobs = {}
    for label, (name, parameters) in poison.items():
        job_id = uuid.uuid4()
        jobs[job_id] = f"poison: {label}"
        # Retries allowed, and a higher priority than the normal jobs: met first, never retried.
        db.query(
            "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue, priority, "
            "retries) VALUES (%s, %s, %s, %s, 'default', 10, 3)",
            [job_id, job_id, name, json.dumps(parameters)],
        )
    normal = enqueue(jobkit_runtime, [Record(f"after-{n}") for n in range(5)])

    worker = workers.start("--burst")
    assert worker.wait_for_exit(30) == 0, worker.output()
    for job_id, label in jobs.items():
        expected = "UnknownJobError" if label.endswith("unknown class") else "ParameterError"
        assert history(db, job_id) == [(0, "ERRORED", f"jobkit.errors.{expected}", False)], label
    check_invariants(
        db,
        jobkit_settings,
        jobs | normal,
        final_status=dict.fromkeys(jobs, "ERRORED"),
    )


# Competition ------------------------------------------------------------------------------------


def test_four_workers_run_each_of_10000_jobs_exactly_once(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    count = 10_000
    group = [start_ready(workers, db) for _ in range(4)]
    # Enqueued in one statement once every worker is waiting: all four wake for the same rows.
    jobs = enqueue(jobkit_runtime, [Tally(f"k{n}") for n in range(count)])

    wait_for(lambda: db.count("results") >= count, 90, interval=0.25, message="every job ran")
    for worker in group:
        worker.send_signal(signal.SIGTERM)
    for worker in group:
        assert worker.wait_for_exit(15) == 0, worker.output()

    check_invariants(db, jobkit_settings, jobs)
    assert db.count("results") == count
    starts = ledger_starts(jobkit_settings)
    assert len(starts) == count and set(starts.values()) == {1}
    assert db.value("SELECT count(DISTINCT worker_id) FROM {schema}.results") == 4
