"""What an adversarial review broke in the worker, each against a real ``jobkit worker`` and a real
PostgreSQL, with a ledger counting runs: jobs that fork, raise ``BaseException``s, or carry
parameters no parser can read must neither crash nor wedge the worker, nor run anything twice.

Every test ends with ``check_invariants`` (one final result per job, nothing left claimed, no job
run more often than the faults that hit it allow)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from faults import check_invariants, ledger_starts, wait_for
from test_faults import enqueue, finished, history, runs, start_ready

from jobkit.pool import PIPE_DEPTH
from testapp.async_jobs import Nap
from testapp.hardening_jobs import (
    BacksOffForever,
    CleansUp,
    DefersForever,
    Forks,
    HugeError,
    RaisesBase,
    RefusedResult,
    SlowToReconcile,
    SurrogateError,
)
from testapp.jobs import Noop, Record, ledger

pytestmark = pytest.mark.acceptance


def test_a_job_that_forks_runs_nothing_twice_and_the_worker_survives(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(workers, db, "--max-processes", "1", "--max-pending-per-process", "10")
    # One claim hands the forking job and the ten after it to the only pool child.
    fork = Forks("fork").run_in_worker(priority=1)
    assert fork is not None
    jobs = {fork.job_id: "fork"} | enqueue(
        jobkit_runtime, [Record(f"queued-{n}") for n in range(10)]
    )
    wait_for(lambda: finished(db, jobs), 30, message="the fork and the jobs queued behind it")
    later = enqueue(jobkit_runtime, [Record(f"later-{n}") for n in range(5)])
    wait_for(lambda: finished(db, later), 30, message="jobs enqueued after the fork")

    assert worker.poll() is None, worker.output()
    assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs | later)
    assert set(ledger_starts(jobkit_settings).values()) == {1}
    assert "which it was not running" not in worker.output()


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit"])
def test_a_base_exception_from_run_is_errored_with_its_traceback(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db, kind
):
    job = RaisesBase(kind.lower(), kind).run_in_worker(retries=1)
    assert job is not None
    jobs = {job.job_id: kind.lower()} | enqueue(jobkit_runtime, [Record("after")])
    worker = workers.start("--burst", "--max-processes", "1")
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, job.job_id) == [(0, "ERRORED", kind, True), (1, "ERRORED", kind, False)]
    errors = db.query(
        "SELECT error FROM {schema}.results WHERE job_id = %s ORDER BY retry_attempt",
        [job.job_id],
    )
    assert all("Traceback" in error and "on purpose" in error for (error,) in errors)
    check_invariants(
        db,
        jobkit_settings,
        jobs,
        faults={job.job_id: 1},
        final_status={job.job_id: "ERRORED"},
    )


def test_parameters_too_deep_to_read_are_errored_once_without_killing_the_child(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job_id = uuid.uuid4()
    # Written by hand: Python's own json module cannot nest this deep either.
    parameters = '{"args": ["deep"], "kwargs": {"data": ' + "[" * 3000 + "0" + "]" * 3000 + "}}"
    db.query(
        "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue, priority, "
        "retries) VALUES (%s, %s, 'testapp.TakesAnything', %s, 'default', 10, 3)",
        [job_id, job_id, parameters],
    )
    jobs = {job_id: "deep"} | enqueue(jobkit_runtime, [Record(f"after-{n}") for n in range(3)])
    worker = workers.start("--burst", "--max-processes", "1")
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, job_id) == [(0, "ERRORED", "RecursionError", False)]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [job_id])
    assert "cannot be read back" in error
    assert "died" not in worker.output()
    check_invariants(db, jobkit_settings, jobs, final_status={job_id: "ERRORED"})


def test_an_async_run_is_awaited_by_the_worker_that_imports_it(run_cli, jobkit_runtime):
    request = Nap("awaited", 0.01).run_in_worker()
    assert request is not None
    done = run_cli("worker", "--burst", env={"JOBKIT_IMPORTS": "testapp.async_jobs"})
    assert done.returncode == 0, done.stderr
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status.value == "SUCCESSFUL", done.stderr
    assert result.output == "awaited"


def test_a_run_past_its_timeout_gets_job_timeout_and_its_finally_runs(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = CleansUp("slow", seconds=60).run_in_worker(timeout=1)
    assert job is not None
    worker = workers.start("--burst", "--max-processes", "1")
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, job.job_id) == [(0, "ERRORED", "JobTimeout", False)]
    assert [phase for _, phase, _, _ in ledger(jobkit_settings)] == ["start", "end"]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [job.job_id])
    assert "longer than its timeout of 1 s" in error
    assert "in run" in error and "time.sleep(self.seconds)" in error  # where it was
    assert "jobkit.errors.JobTimeout: the run passed its timeout of 1 s" in error
    check_invariants(db, jobkit_settings, {job.job_id: "slow"}, final_status="ERRORED")


def test_every_pool_child_gets_job_timeout_not_only_the_first(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    # The children after the first once started with SIGTERM blocked (a signal mask inherited
    # from the worker's start of them), so a run there past its timeout was killed, its
    # finally never ran and its error had no traceback.
    jobs = [CleansUp(f"slow{n}", seconds=60).run_in_worker(timeout=2) for n in range(3)]
    worker = workers.start("--burst", "--max-processes", "3")
    assert worker.wait_for_exit(60) == 0, worker.output()

    assert sorted(key for key, phase, _, _ in ledger(jobkit_settings) if phase == "end") == [
        "slow0",
        "slow1",
        "slow2",
    ]
    for job in jobs:
        assert history(db, job.job_id) == [(0, "ERRORED", "JobTimeout", False)]
        error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [job.job_id])
        assert "time.sleep(self.seconds)" in error  # raised in the run, where it was
    keys = {job.job_id: f"slow{n}" for n, job in enumerate(jobs)}
    check_invariants(db, jobkit_settings, keys, final_status="ERRORED")


def test_a_run_ended_by_a_shutdown_gets_job_cancelled_and_its_finally_runs(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = CleansUp("slow", seconds=60).run_in_worker()
    assert job is not None
    worker = start_ready(workers, db, "--max-processes", "1", "--shutdown-timeout", "1")
    wait_for(lambda: ledger(jobkit_settings), 20, message="the job's start")
    assert worker.stop(20) == 0, worker.output()

    assert history(db, job.job_id) == [(0, "CANCELLED", "Cancelled", True)]
    assert [phase for _, phase, _, _ in ledger(jobkit_settings)] == ["start", "end"]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [job.job_id])
    assert "jobkit.errors.JobCancelled" in error and "time.sleep(self.seconds)" in error
    check_invariants(db, jobkit_settings, {job.job_id: "slow"}, pending=[job.job_id])


def peak_rss_mb(pid: int) -> float:
    """The most resident memory process ``pid`` has used (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_a_huge_error_is_cut_in_the_child_and_never_reaches_the_worker_whole(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    huge = HugeError("huge", 200_000_000).run_in_worker()
    assert huge is not None
    jobs = {huge.job_id: "huge"} | enqueue(
        jobkit_runtime, [HugeError(f"big-{n}", 1_000_000) for n in range(20)]
    )
    worker = start_ready(workers, db, "--max-processes", "2")
    baseline = peak_rss_mb(worker.pid)
    wait_for(lambda: finished(db, jobs), 60, message="every job's result")
    grown = peak_rss_mb(worker.pid) - baseline
    assert worker.stop(10) == 0, worker.output()

    errors = db.query(
        "SELECT length(error), left(error, 200), right(error, 200) FROM {schema}.results"
    )
    assert len(errors) == 21
    for length, head, tail in errors:
        assert length <= 65536
        assert head.startswith("Traceback (most recent call last)")
        assert "TAIL" in tail
    assert (
        db.value(
            "SELECT count(*) FROM {schema}.results WHERE error LIKE %s",
            ["%characters cut (error_max_length = 65536)%"],
        )
        == 21
    )
    print(f"the worker's main process grew by {grown:.1f} MB")
    assert grown < 100, f"the worker's main process grew by {grown:.0f} MB"
    check_invariants(db, jobkit_settings, jobs, final_status="ERRORED")


def test_a_result_the_database_refuses_is_errored_and_every_other_result_is_written_once(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(
        workers,
        db,
        "--max-processes",
        "2",
        env={"JOBKIT_PLUGINS": "testapp.refusing_plugin"},
    )
    refused = RefusedResult("refused").run_in_worker(retries=3)
    assert refused is not None
    jobs = {refused.job_id: "refused"} | enqueue(
        jobkit_runtime, [Record(f"batch-{n}") for n in range(20)]
    )
    wait_for(lambda: finished(db, jobs), 30, message="every result, the refused one included")
    later = enqueue(jobkit_runtime, [Record(f"later-{n}") for n in range(5)])
    wait_for(lambda: finished(db, later), 30, message="jobs after the refused result")
    assert worker.poll() is None, worker.output()
    assert worker.stop(10) == 0, worker.output()

    assert history(db, refused.job_id) == [(0, "ERRORED", "ResultNotWritten", False)]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [refused.job_id])
    assert error.startswith("the result of this attempt (DEFERRED) could not be written")
    check_invariants(db, jobkit_settings, jobs | later, final_status={refused.job_id: "ERRORED"})
    assert set(ledger_starts(jobkit_settings).values()) == {1}


def test_the_poison_outcomes_the_review_found_leave_the_worker_running(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(workers, db, "--max-processes", "2")
    poison = [SurrogateError("surrogate"), DefersForever("defers"), BacksOffForever("backs-off")]
    jobs = enqueue(jobkit_runtime, poison)
    jobs |= enqueue(jobkit_runtime, [Record(f"batch-{n}") for n in range(20)])
    wait_for(lambda: finished(db, jobs), 30, message="every result")
    later = enqueue(jobkit_runtime, [Record(f"later-{n}") for n in range(5)])
    wait_for(lambda: finished(db, later), 30, message="jobs after the poison")
    assert worker.poll() is None, worker.output()
    assert worker.stop(10) == 0, worker.output()

    ids = {key: job_id for job_id, key in jobs.items()}
    assert [status for _, status, _, _ in history(db, ids["surrogate"])] == ["ERRORED"]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [ids["surrogate"]])
    assert "/data/caf\\udce9.csv" in error
    for key, says in [
        ("defers", "DeferJob(delay=10000000000000.0): a delay cannot be longer than 100 years"),
        ("backs-off", "Not retried: calculate_retry_delay(1): a delay cannot be longer than"),
    ]:
        [(attempt, status, _, retried)] = history(db, ids[key])
        assert (attempt, status, retried) == (0, "ERRORED", False), key
        error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [ids[key]])
        assert says in error, error
    check_invariants(
        db,
        jobkit_settings,
        jobs | later,
        final_status=dict.fromkeys([ids["surrogate"], ids["defers"], ids["backs-off"]], "ERRORED"),
    )


def test_idle_workers_share_slow_jobs_instead_of_one_hoarding_them(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    group = [start_ready(workers, db, "--max-processes", "2") for _ in range(3)]
    enqueued_at = db.value("SELECT clock_timestamp()")
    jobs = enqueue(jobkit_runtime, [Record(f"slow-{n}", seconds=3) for n in range(12)])
    wait_for(lambda: finished(db, jobs), 40, message="the twelve slow jobs")
    makespan = db.value(
        "SELECT extract(epoch FROM max(at) - %s)::float8 FROM {schema}.ledger WHERE phase = 'end'",
        [enqueued_at],
    )
    per_worker = db.query(
        "SELECT count(*) FROM {schema}.results GROUP BY worker_id ORDER BY count(*) DESC"
    )
    for worker in group:
        assert worker.stop(15) == 0, worker.output()

    print(f"makespan {makespan:.1f} s; jobs per worker {per_worker}")
    # 12 jobs of 3 s on 6 children: two rounds, 6 s; one worker holding them all takes 18 s.
    assert makespan <= 7, f"makespan {makespan:.1f} s; jobs per worker {per_worker}"
    check_invariants(db, jobkit_settings, jobs)


def test_a_worker_gives_back_what_it_claimed_ahead_when_a_slow_job_holds_its_child(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    """Fast jobs teach a worker to claim far ahead; when a slow one then holds its only child,
    what it claimed behind the slow one waits in its backlog, not in the child, and goes back
    to the queue for an idle peer (only the few in the child's pipe wait for the slow one)."""
    first = start_ready(workers, db, "--max-processes", "1", "--max-pending-per-process", "1000")
    slow = Record("slow", seconds=4)
    requests = jobkit_runtime.enqueue_many(
        [*(Noop() for _ in range(300)), slow, *(Noop() for _ in range(200))]
    )
    behind = [request.job_id for request in requests[301:]]
    jobs = [request.job_id for request in requests]
    second = start_ready(workers, db, "--max-processes", "1")
    wait_for(lambda: finished(db, jobs), 40, message="every job")
    for worker in (first, second):
        assert worker.stop(15) == 0, worker.output()

    waited_for_slow = db.value(
        "SELECT count(*) FROM {schema}.results WHERE job_id = ANY(%s) AND ended_at > "
        "(SELECT ended_at FROM {schema}.results WHERE job_id = %s)",
        [behind, requests[300].job_id],
    )
    assert waited_for_slow < PIPE_DEPTH, f"{waited_for_slow} jobs waited behind the slow one"
    assert "jobs claimed ahead go back to the queue for other workers" in first.output()
    ran_behind = db.value(
        "SELECT count(DISTINCT worker_id) FROM {schema}.results WHERE job_id = ANY(%s)", [behind]
    )
    assert ran_behind == 2, "the idle peer ran some of the jobs given back"


def test_on_aborted_returns_before_the_retry_of_a_lost_job_starts(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = SlowToReconcile("reconcile").run_in_worker(retries=1)
    assert job is not None
    worker = start_ready(workers, db, "--max-processes", "2")
    [(pid, _, _)] = wait_for(lambda: runs(db, "reconcile"), message="the first attempt's start")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: finished(db, [job.job_id]), 30, message="the retry's result")
    assert worker.stop(10) == 0, worker.output()

    assert history(db, job.job_id) == [(0, "LOST", "ChildDied", True), (1, "SUCCESSFUL", "", False)]
    phases = [
        (phase, at)
        for phase, at in db.query(
            "SELECT phase, at FROM {schema}.ledger WHERE key = 'reconcile' ORDER BY at"
        )
    ]
    assert [phase for phase, _ in phases] == ["start", "aborted", "reconciled", "start"], phases
    check_invariants(db, jobkit_settings, {job.job_id: "reconcile"}, faults={job.job_id: 1})


def test_a_job_name_from_a_row_cannot_forge_a_line_of_the_worker_log(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job_id = uuid.uuid4()
    forged = "2026-01-01 00:00:00,000 ERROR jobkit.worker: forged"
    db.query(
        "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue) "
        "VALUES (%s, %s, %s, %s, 'default')",
        [job_id, job_id, f"app.Job\n{forged}", '{"args": [], "kwargs": {}}'],
    )
    worker = workers.start("--burst")
    assert worker.wait_for_exit(30) == 0, worker.output()

    assert history(db, job_id) == [(0, "ERRORED", "jobkit.errors.UnknownJobError", False)]
    assert not any(line.startswith(forged) for line in worker.output().splitlines())
    assert "'app.Job\\n2026-01-01" in worker.output()
