"""Async jobs (``async def run``) in a real ``jobkit worker``: one pool child runs many at once,
and what holds for sync jobs holds for them (outputs, retries, ``DeferJob``, timeouts that run
the job's ``finally``, a shutdown's CANCELLED, LOST on a kill -9 of the child, the log context
of each job), and a job that blocks the loop is named in the log."""

from __future__ import annotations

import os
import re
import signal

import pytest
from faults import check_invariants, wait_for
from test_faults import enqueue, finished, history, start_ready

from testapp.async_jobs import (
    AsyncCleansUp,
    AsyncFlaky,
    AsyncLifecycle,
    BlocksTheLoop,
    IgnoresCancel,
    Meet,
    Nap,
)
from testapp.jobs import Record, ledger

pytestmark = pytest.mark.acceptance

ASYNC_JOBS = {"JOBKIT_IMPORTS": "testapp.jobs,testapp.async_jobs"}


def started_keys(settings) -> set[str]:
    return {key for key, phase, _, _ in ledger(settings) if phase == "start"}


def test_one_child_runs_500_async_jobs_that_each_await_a_second_in_a_few_seconds(
    workers, jobkit_runtime, db
):
    requests = jobkit_runtime.enqueue_many([Nap(f"nap-{n}", 1.0) for n in range(500)])
    worker = workers.start(
        "--burst", "--max-processes", "1", "--async-concurrency", "500", env=ASYNC_JOBS
    )
    assert worker.wait_for_exit(60) == 0, worker.output()

    statuses = db.query("SELECT status, count(*) FROM {schema}.results GROUP BY status")
    assert statuses == [("SUCCESSFUL", 500)]
    # 500 seconds of sleeping, side by side: the first start to the last end.
    span = db.value(
        "SELECT extract(epoch FROM max(ended_at) - min(started_at))::float8 FROM {schema}.results"
    )
    assert span < 5, span
    assert jobkit_runtime.get_result(requests[7].id).output == "nap-7"


def test_async_jobs_retry_defer_and_return_outputs(workers, jobkit_runtime, db):
    flaky = AsyncFlaky().run_in_worker(retries=1)
    assert flaky is not None
    worker = workers.start(
        "--burst",
        "--max-processes",
        "1",
        env=ASYNC_JOBS,
        allowed_tracebacks=[r"ValueError: first attempt fails"],
    )
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, flaky.job_id) == [
        (0, "ERRORED", "ValueError", True),
        (1, "DEFERRED", "", True),
        (1, "SUCCESSFUL", "", False),
    ]
    assert jobkit_runtime.get_result(flaky.id).output == "done"


def test_an_async_job_past_its_timeout_is_cancelled_its_finally_runs_and_the_others_go_on(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    slow = AsyncCleansUp("slow", seconds=60).run_in_worker(timeout=1)
    beside = AsyncCleansUp("beside", seconds=2).run_in_worker()
    assert slow is not None and beside is not None
    worker = workers.start("--burst", "--max-processes", "1", env=ASYNC_JOBS)
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, slow.job_id) == [(0, "ERRORED", "JobTimeout", False)]
    assert history(db, beside.job_id) == [(0, "SUCCESSFUL", "", False)]
    rows = ledger(jobkit_settings)
    assert sorted((key, phase) for key, phase, _, _ in rows) == [
        ("beside", "end"),
        ("beside", "start"),
        ("slow", "end"),
        ("slow", "failure JobTimeout: the run passed its timeout of 1 s"),  # as a sync run's
        ("slow", "start"),
    ]
    assert len({pid for _, _, pid, _ in rows}) == 1  # one child ran both and was not ended
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [slow.job_id])
    assert "longer than its timeout of 1 s" in error
    assert "await asyncio.sleep(self.seconds)" in error  # where it was
    assert "jobkit.errors.JobTimeout: the run passed its timeout of 1 s" in error
    assert "did not end within" not in worker.output()


def test_an_async_job_that_ignores_its_cancellation_has_its_child_ended(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    stubborn = IgnoresCancel("stubborn", seconds=60).run_in_worker(timeout=1)
    beside = AsyncCleansUp("beside", seconds=60).run_in_worker()
    assert stubborn is not None and beside is not None
    worker = start_ready(workers, db, "--max-processes", "1", env=ASYNC_JOBS)
    wait_for(lambda: finished(db, [stubborn.job_id, beside.job_id]), 30, message="both results")
    assert worker.stop(20) == 0, worker.output()

    assert history(db, stubborn.job_id) == [(0, "ERRORED", "JobTimeout", False)]
    assert history(db, beside.job_id) == [(0, "LOST", "ChildDied", False)]
    assert "did not end within 1 s of its task's cancellation" in worker.output()


def test_a_shutdown_cancels_the_async_jobs_left_and_enqueues_them_again(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    jobs = enqueue(jobkit_runtime, [AsyncCleansUp(f"slow-{n}", seconds=60) for n in range(3)])
    worker = start_ready(
        workers, db, "--max-processes", "1", "--shutdown-timeout", "1", env=ASYNC_JOBS
    )
    wait_for(lambda: len(started_keys(jobkit_settings)) == 3, 20, message="three starts")
    assert worker.stop(20) == 0, worker.output()

    for job_id in jobs:
        assert history(db, job_id) == [(0, "CANCELLED", "Cancelled", True)]
    ends = [key for key, phase, _, _ in ledger(jobkit_settings) if phase == "end"]
    assert sorted(ends) == sorted(jobs.values())  # each finally ran
    failures = [phase for _, phase, _, _ in ledger(jobkit_settings) if "failure" in phase]
    assert (
        failures
        == ["failure JobCancelled: the worker is stopping and its shutdown grace period ran out"]
        * 3
    )
    error = db.value("SELECT error FROM {schema}.results LIMIT 1")
    assert "shutdown grace period ran out" in error
    check_invariants(db, jobkit_settings, jobs, pending=list(jobs))


def test_kill_9_of_a_child_running_async_jobs_loses_each_of_them(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    jobs = enqueue(
        jobkit_runtime, [AsyncCleansUp(f"held-{n}", seconds=60) for n in range(3)], retries=1
    )
    worker = start_ready(workers, db, "--max-processes", "1", env=ASYNC_JOBS)
    wait_for(lambda: len(started_keys(jobkit_settings)) == 3, 20, message="three starts")
    (child,) = {pid for _, _, pid, _ in ledger(jobkit_settings)}
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: db.count("results", "status = 'LOST'") == 3, 20, message="three LOST results")
    assert worker.poll() is None, worker.output()
    assert worker.stop(20) == 0, worker.output()

    for job_id in jobs:
        assert history(db, job_id)[0] == (0, "LOST", "ChildDied", True)
    assert "killed by SIGKILL" in worker.output()


def test_a_job_that_blocks_the_loop_is_named_in_the_log(workers, jobkit_runtime, db):
    blocker = BlocksTheLoop(2.0).run_in_worker()
    waiting = Nap("waiting", 0.5).run_in_worker()
    assert blocker is not None and waiting is not None
    worker = workers.start("--burst", "--max-processes", "1", env=ASYNC_JOBS)
    assert worker.wait_for_exit(30) == 0, worker.output()

    output = worker.output()
    line = next((line for line in output.splitlines() if "has not turned for" in line), None)
    assert line is not None, output
    assert f"testapp.BlocksTheLoop (attempt {blocker.id}) blocks it" in line
    assert f"waiting behind it: testapp.Nap (attempt {waiting.id})" in line
    assert finished(db, [blocker.job_id, waiting.job_id])


def test_concurrent_async_jobs_log_with_their_own_context(workers, jobkit_runtime):
    first = Meet("first", party=2).run_in_worker()
    second = Meet("second", party=2).run_in_worker()
    assert first is not None and second is not None
    worker = workers.start("--burst", "--max-processes", "1", env=ASYNC_JOBS)
    assert worker.wait_for_exit(30) == 0, worker.output()

    lines = [line for line in worker.output().splitlines() if "testapp.async_jobs" in line]
    said = [line.rsplit(": ", 1)[1] for line in lines]
    # Both arrived before either left: they ran at once, on one loop.
    assert sorted(said[:2]) == ["first arrives", "second arrives"], lines
    for request, key in ((first, "first"), (second, "second")):
        mine = [line for line in lines if f": {key} " in line]
        assert len(mine) == 2, lines
        for line in mine:
            assert re.search(
                rf"\[job=testapp\.Meet id={request.job_id} attempt=1\]: {key} ", line
            ), line


def test_a_worker_that_imports_async_jobs_refuses_middleware_that_cannot_wrap_them(
    run_cli, jobkit_runtime, db
):
    Nap("waits", 0).run_in_worker()
    sync_only = "unitplugins.middleware.Outer"

    refused = run_cli("worker", "--burst", env={**ASYNC_JOBS, "JOBKIT_MIDDLEWARE": sync_only})
    assert refused.returncode == 1
    assert f"middleware {sync_only} cannot run around async jobs" in refused.stderr
    assert "async def aprocess_job(self, job)" in refused.stderr
    assert db.count("requests") == 1

    both = "unitplugins.middleware.PassThrough"
    done = run_cli("worker", "--burst", env={**ASYNC_JOBS, "JOBKIT_MIDDLEWARE": both})
    assert done.returncode == 0, done.stderr
    assert db.count("results", "status = 'SUCCESSFUL'") == 1


def test_an_operator_cancel_ends_only_that_async_job(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    runaway = AsyncCleansUp("runaway", seconds=60).run_in_worker(retries=3)
    beside = AsyncCleansUp("beside", seconds=3).run_in_worker()
    assert runaway is not None and beside is not None
    worker = start_ready(workers, db, "--max-processes", "1", env=ASYNC_JOBS)
    wait_for(lambda: len(started_keys(jobkit_settings)) == 2, 20, message="two starts")

    done = run_cli("cancel", str(runaway.job_id))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: finished(db, [runaway.job_id, beside.job_id]), 20, message="both results")
    assert worker.stop(10) == 0, worker.output()

    assert history(db, runaway.job_id) == [(0, "CANCELLED", "CancelledByOperator", False)]
    assert history(db, beside.job_id) == [(0, "SUCCESSFUL", "", False)]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [runaway.job_id])
    assert "jobkit.errors.JobCancelled: an operator cancelled this job" in error
    ends = {key for key, phase, _, _ in ledger(jobkit_settings) if phase == "end"}
    assert ends == {"runaway", "beside"}
    failures = [(key, phase) for key, phase, _, _ in ledger(jobkit_settings) if "failure" in phase]
    assert failures == [("runaway", "failure JobCancelled: an operator cancelled this job")]


def test_a_sync_job_runs_alone_between_the_async_jobs_of_its_child(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    before = [AsyncCleansUp(f"before-{n}", seconds=0.3) for n in range(3)]
    after = [AsyncCleansUp(f"after-{n}", seconds=0.3) for n in range(3)]
    jobs = enqueue(jobkit_runtime, before)
    jobs |= enqueue(jobkit_runtime, [Record("sync", seconds=0.3)])
    jobs |= enqueue(jobkit_runtime, after)
    worker = workers.start("--burst", "--max-processes", "1", env=ASYNC_JOBS)
    assert worker.wait_for_exit(30) == 0, worker.output()

    check_invariants(db, jobkit_settings, jobs)
    runs = {
        key: (start, end)
        for key, start, end in db.query(
            "SELECT key, min(at) FILTER (WHERE phase = 'start'), "
            "max(at) FILTER (WHERE phase = 'end') FROM {schema}.ledger GROUP BY key"
        )
    }
    sync_start, sync_end = runs.pop("sync")
    for key, (start, end) in runs.items():
        assert end <= sync_start or start >= sync_end, (key, runs, sync_start, sync_end)
    # The async jobs on either side of it ran at once.
    assert max(runs[f"before-{n}"][0] for n in range(3)) < min(
        runs[f"before-{n}"][1] for n in range(3)
    )


def test_an_async_job_s_lifecycle_hooks_run_around_its_awaited_run(
    workers, jobkit_runtime, jobkit_settings, ledger_ready
):
    AsyncLifecycle("fails", fail_in="run").run_in_worker()
    AsyncLifecycle("fine", returns="done").run_in_worker()
    worker = workers.start(
        "--burst",
        "--max-processes",
        "1",
        env=ASYNC_JOBS,
        allowed_tracebacks=[r"RuntimeError: run failed"],
    )
    assert worker.wait_for_exit(30) == 0, worker.output()

    phases: dict[str, list[str]] = {}
    for key, phase, _, _ in ledger(jobkit_settings):
        phases.setdefault(key, []).append(phase)
    assert phases["fails"] == [
        "enqueued",
        "before",
        "run",
        "failure RuntimeError: run failed",
        "after",
    ]
    assert phases["fine"] == ["enqueued", "before", "run", "after"]
