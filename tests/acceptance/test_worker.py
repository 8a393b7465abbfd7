"""``jobkit worker`` as real processes: burst runs, wake-up on enqueue, shutdown on a signal,
competing workers, poison rows, queues and the pool's flags."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter

import pytest

from jobkit.records import Status
from testapp.jobs import Fail, Noop, Record, Tally, ledger

pytestmark = pytest.mark.acceptance


def ledger_keys(settings, phase):
    return [key for key, row_phase, _, _ in ledger(settings) if row_phase == phase]


def ledger_pids(settings, phase="start"):
    return Counter(pid for _, row_phase, pid, _ in ledger(settings) if row_phase == phase)


def statuses(db):
    """Result counts by (job name, status)."""
    rows = db.query("SELECT job_name, status, count(*) FROM {schema}.results GROUP BY 1, 2")
    return {(name, status): count for name, status, count in rows}


def test_burst_runs_every_ready_job_then_exits(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    runtime = jobkit_runtime
    runtime.enqueue_many([Noop(number) for number in range(20)])
    runtime.enqueue_many([Record(f"r{number}") for number in range(10)])
    runtime.enqueue_many([Fail(times=1) for _ in range(3)], retries=2)  # fails once, then works
    runtime.enqueue_many([Fail() for _ in range(2)], retries=1)  # fails both attempts

    worker = start_worker("--burst")
    assert worker.wait_for_exit() == 0, worker.output()

    assert statuses(db) == {
        ("testapp.jobs.Noop", "SUCCESSFUL"): 20,
        ("testapp.Record", "SUCCESSFUL"): 10,
        ("testapp.jobs.Fail", "ERRORED"): 3 + 2 * 2,
        ("testapp.jobs.Fail", "SUCCESSFUL"): 3,
    }
    assert db.count("results", "job_name = 'testapp.jobs.Fail' AND retry_attempt > 0") == 3 + 2
    assert sorted(ledger_keys(jobkit_settings, "end")) == sorted(f"r{n}" for n in range(10))
    assert db.count("requests") == db.count("processes") == db.count("workers") == 0


def test_a_burst_worker_exits_once_its_last_job_ends_not_at_its_next_poll(
    start_worker, jobkit_runtime, db
):
    """One job for a pool of two: the claim comes up short, and the worker must look again at
    once (finding nothing, it exits) rather than wait for its poll, here 30 s away."""
    jobkit_runtime.enqueue(Noop(1))

    began = time.monotonic()
    worker = start_worker("--burst", env={"JOBKIT_WORKER_POLL_INTERVAL": "30"})
    assert worker.wait_for_exit(timeout=25) == 0, worker.output()

    assert time.monotonic() - began < 25
    assert statuses(db) == {("testapp.jobs.Noop", "SUCCESSFUL"): 1}


def test_idle_worker_starts_a_job_at_once_when_it_is_enqueued(
    start_worker, wait_until, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    # A poll every 30 s: a prompt start can only come from the LISTEN/NOTIFY wake-up.
    start_worker(env={"JOBKIT_WORKER_POLL_INTERVAL": "30"})
    wait_until(lambda: db.count("workers") == 1, message="the worker's heartbeat row")
    # A first job proves the pool is up; the worker then waits idle.
    Record("warm-up").run_in_worker()
    wait_until(lambda: "warm-up" in ledger_keys(jobkit_settings, "end"), message="warm-up job")
    wait_until(lambda: db.count("results") == 1, message="the warm-up job's result")

    request = Record("prompt").run_in_worker()
    assert request is not None
    wait_until(lambda: "prompt" in ledger_keys(jobkit_settings, "start"), timeout=10)
    latency = db.value(
        "SELECT extract(epoch FROM min(at) - %s)::float8 FROM {schema}.ledger "
        "WHERE key = 'prompt' AND phase = 'start'",
        [request.created_at],
    )
    assert 0 <= latency < 1.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_claiming_and_lets_the_running_job_finish(
    start_worker, wait_until, jobkit_runtime, jobkit_settings, ledger_ready, db, signum
):
    # A worker claims one job per child until it has timed a run: the quick first job teaches
    # it that jobs are fast, so the next claim hands the only child the four others at once.
    warm_up = Noop().run_in_worker(priority=1)
    running = Record("running", seconds=2).run_in_worker()
    queued = jobkit_runtime.enqueue_many([Record(f"queued-{n}") for n in range(3)])
    worker = start_worker("--max-processes", "1")
    wait_until(lambda: "running" in ledger_keys(jobkit_settings, "start"), message="job start")
    assert db.count("processes") == 4  # claimed: one running, three waiting in the child

    worker.send_signal(signum)
    name = signal.Signals(signum).name
    wait_until(lambda: f"{name} received" in worker.output(), message=f"{name} acknowledged")
    later = Record("after-signal").run_in_worker()

    assert worker.wait_for_exit() == 0, worker.output()
    assert ledger_keys(jobkit_settings, "start") == ["running"]
    assert ledger_keys(jobkit_settings, "end") == ["running"]
    result = jobkit_runtime.get_result(running.id)
    assert result is not None and result.status is Status.SUCCESSFUL
    assert db.count("results") == 2
    assert jobkit_runtime.get_result(warm_up.id).status is Status.SUCCESSFUL
    # The claimed jobs it never started went back to the queue unchanged, and the job
    # enqueued after the signal was not claimed.
    pending = db.query("SELECT id, retry_attempt FROM {schema}.requests")
    assert sorted(pending) == sorted((r.id, 0) for r in [*queued, later])
    assert db.count("processes") == db.count("workers") == 0


def test_competing_workers_run_each_job_exactly_once(
    start_worker, wait_until, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    jobs = 5000
    requests = jobkit_runtime.enqueue_many([Tally(f"k{number}") for number in range(jobs)])
    workers = [start_worker() for _ in range(3)]

    wait_until(lambda: db.count("results") >= jobs, timeout=90, interval=0.25)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_for_exit() == 0, worker.output()

    rows = db.query("SELECT id, status FROM {schema}.results")
    assert len(rows) == jobs
    assert {row[0] for row in rows} == {request.id for request in requests}
    assert {row[1] for row in rows} == {"SUCCESSFUL"}
    starts = Counter(ledger_keys(jobkit_settings, "start"))
    assert len(starts) == jobs
    assert set(starts.values()) == {1}
    assert db.count("processes") == db.count("requests") == db.count("workers") == 0
    # Every worker took part.
    assert db.value("SELECT count(DISTINCT worker_id) FROM {schema}.results") == 3


def test_poison_rows_are_errored_and_the_worker_keeps_going(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    poison = {
        "testapp.NeverRegistered": {"args": [], "kwargs": {}},
        "testapp.Record": {"args": [], "kwargs": {"colour": "red"}},
    }
    ids = {}
    for name, parameters in poison.items():
        ids[name] = uuid.uuid4()
        # Higher priority than the normal jobs, so the worker meets them first.
        db.query(
            "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue, priority) "
            "VALUES (%s, %s, %s, %s, 'default', 10)",
            [ids[name], ids[name], name, json.dumps(parameters)],
        )
    jobkit_runtime.enqueue_many([Record(f"after-{number}") for number in range(5)])

    worker = start_worker("--burst")
    assert worker.wait_for_exit() == 0, worker.output()

    unknown = jobkit_runtime.get_result(ids["testapp.NeverRegistered"])
    assert unknown is not None and unknown.status is Status.ERRORED
    assert "testapp.NeverRegistered" in unknown.error
    misfit = jobkit_runtime.get_result(ids["testapp.Record"])
    assert misfit is not None and misfit.status is Status.ERRORED
    assert "colour" in misfit.error
    assert sorted(ledger_keys(jobkit_settings, "end")) == [f"after-{n}" for n in range(5)]
    assert db.count("results", "status = 'SUCCESSFUL'") == 5
    assert db.count("requests") == db.count("processes") == 0


def test_queue_flags_limit_the_worker_to_those_queues(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    for queue in ("a", "b", "c"):
        jobkit_runtime.enqueue_many([Record(f"{queue}{n}") for n in range(3)], queue=queue)

    worker = start_worker("--burst", "--queue", "a", "--queue", "b")
    assert worker.wait_for_exit() == 0, worker.output()

    assert sorted(ledger_keys(jobkit_settings, "start")) == [
        f"{queue}{n}" for queue in ("a", "b") for n in range(3)
    ]
    assert db.query("SELECT DISTINCT queue FROM {schema}.requests") == [("c",)]
    assert db.count("requests") == 3


def test_max_jobs_per_process_replaces_the_children(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    jobkit_runtime.enqueue_many([Record(f"k{number}") for number in range(30)])

    worker = start_worker("--burst", "--max-processes", "2", "--max-jobs-per-process", "5")
    assert worker.wait_for_exit() == 0, worker.output()

    assert db.count("results", "status = 'SUCCESSFUL'") == 30
    pids = ledger_pids(jobkit_settings)
    assert sum(pids.values()) == 30
    # No child ran more than 5, so at least 30 / 5 children ran jobs: more than the first 2.
    assert max(pids.values()) <= 5
    assert len(pids) >= 6
    assert worker.pid not in pids


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_max_processes_sets_the_number_of_children(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db, processes
):
    # Enough jobs that each child gets some (a claim spreads them over the children).
    jobkit_runtime.enqueue_many([Record(f"k{n}", seconds=0.1) for n in range(4 * processes)])

    worker = start_worker("--burst", "--max-processes", str(processes))
    assert worker.wait_for_exit() == 0, worker.output()

    assert db.count("results", "status = 'SUCCESSFUL'") == 4 * processes
    pids = ledger_pids(jobkit_settings)
    assert len(pids) == processes
    assert worker.pid not in pids


def test_plugins_middleware_wraps_the_middleware_setting_around_every_job(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready
):
    jobkit_runtime.enqueue_many([Record("a"), Record("b")])

    worker = start_worker(
        "--burst",
        "--max-processes",
        "1",
        env={
            "JOBKIT_PLUGINS": "testapp.integration_jobs:middleware_plugin",
            "JOBKIT_MIDDLEWARE": "testapp.integration_jobs.OuterMiddleware",
        },
    )
    assert worker.wait_for_exit() == 0, worker.output()

    steps = ["plugin:before", "outer:before", "start", "end", "outer:after", "plugin:after"]
    assert [(key, phase) for key, phase, _, _ in ledger(jobkit_settings)] == [
        (key, step) for key in ("a", "b") for step in steps
    ]
    assert worker.pid not in ledger_pids(jobkit_settings, "plugin:before")


def test_a_plugin_middleware_that_is_not_a_class_stops_the_worker_at_start(
    start_worker, jobkit_runtime, db
):
    jobkit_runtime.enqueue(Noop(1))

    worker = start_worker(
        "--burst", env={"JOBKIT_PLUGINS": "testapp.integration_jobs:bad_middleware_plugin"}
    )

    assert worker.wait_for_exit() == 1
    assert (
        "Error: plugin 'testapp.integration_jobs:bad_middleware_plugin' answered "
        "jobkit_add_middleware with 'testapp.integration_jobs.PluginMiddleware', which is not "
        "a middleware class" in worker.output()
    )
    assert db.count("requests") == 1
    assert db.count("workers") == 0
