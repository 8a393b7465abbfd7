"""Operating jobs against real workers and a real PostgreSQL: a cancelled running job really
stops, a paused queue really is not drained while another is, a bulk retry of failed jobs runs
each once more, and the ``jobkit`` commands say what they did with the exit statuses they
document (0 done, 1 nothing matched or nothing to do, 2 bad input)."""

from __future__ import annotations

import json
import signal

import pytest
from faults import check_invariants, wait_for
from test_faults import enqueue, finished, history, runs, start_ready

from testapp.hardening_jobs import SlowToReconcile
from testapp.jobs import Fail, Record

pytestmark = pytest.mark.acceptance


def test_a_cancelled_running_job_stops_and_does_not_run_again(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = SlowToReconcile("runaway").run_in_worker(retries=3)
    assert job is not None
    worker = start_ready(workers, db, "--max-processes", "1")
    wait_for(lambda: runs(db, "runaway"), 20, message="the job's start")

    done = run_cli("cancel", str(job.job_id))
    assert done.returncode == 0, done.stderr
    assert "asked worker" in done.stdout
    wait_for(lambda: finished(db, [job.job_id]), 10, message="the cancelled result")
    wait_for(lambda: runs(db, "runaway", "reconciled"), 10, message="on_aborted")
    assert worker.stop(10) == 0, worker.output()

    assert history(db, job.job_id) == [(0, "CANCELLED", "CancelledByOperator", False)]
    error = db.value("SELECT error FROM {schema}.results WHERE job_id = %s", [job.job_id])
    assert error.startswith("cancelled by an operator (cli ")
    assert "JobCancelled: an operator cancelled this job" in error  # raised inside the run
    assert [
        phase for _, phase, *_ in db.query("SELECT key, phase FROM {schema}.ledger ORDER BY at")
    ] == ["start", "aborted", "reconciled"]
    check_invariants(db, jobkit_settings, {job.job_id: "runaway"}, final_status="CANCELLED")


def test_a_cancelled_waiting_job_never_runs_and_a_second_cancel_says_so(
    run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = Record("later").run_in_worker(delay=3600)
    assert job is not None
    first = run_cli("cancel", str(job.job_id))
    again = run_cli("cancel", str(job.job_id))

    assert (first.returncode, first.stdout.strip()) == (
        0,
        f"{job.job_id}: cancelled while it waited",
    )
    assert again.returncode == 1
    assert "nothing to cancel: it ended CANCELLED" in again.stdout
    assert history(db, job.job_id) == [(0, "CANCELLED", "CancelledByOperator", False)]
    assert db.count("requests") == 0


def test_a_paused_queue_is_not_drained_while_another_is(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    assert run_cli("pause", "emails").returncode == 0
    again = run_cli("pause", "emails")
    assert again.returncode == 1 and "paused already" in again.stdout
    held = enqueue(jobkit_runtime, [Record(f"mail-{n}") for n in range(5)], queue="emails")
    free = enqueue(jobkit_runtime, [Record(f"other-{n}") for n in range(5)])
    worker = start_ready(workers, db, "--queue", "emails", "--queue", "default")
    wait_for(lambda: finished(db, free), 20, message="the other queue's jobs")
    workers_listed = json.loads(run_cli("workers", "--json").stdout)
    assert [(entry["pid"], entry["paused_queues"]) for entry in workers_listed] == [
        (worker.pid, ["emails"])
    ]
    assert "emails (paused),default" in run_cli("workers").stdout
    assert db.count("requests", "queue = 'emails'") == 5  # all still pending

    assert run_cli("resume", "emails").returncode == 0
    wait_for(lambda: finished(db, held), 20, message="the paused queue's jobs, once resumed")
    assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, held | free)


def test_a_bulk_retry_runs_each_failed_job_once_more(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    failed = {
        request.job_id: "fail"
        for request in jobkit_runtime.enqueue_many([Fail("once", times=1) for _ in range(20)])
        if request is not None
    }
    fine = enqueue(jobkit_runtime, [Record(f"fine-{n}") for n in range(3)])
    worker = start_ready(workers, db, "--max-processes", "2")
    wait_for(lambda: finished(db, failed | fine), 30, message="every first attempt")

    preview = run_cli("retry", "--failed", "--dry-run")
    lines = preview.stdout.splitlines()
    assert (preview.returncode, lines[-1]) == (0, "would retry 20 failed jobs")
    assert {line.split(":")[0].strip() for line in lines[:-1]} == {str(id) for id in failed}
    unconfirmed = run_cli("retry", "--failed")  # no terminal to ask on
    assert unconfirmed.returncode == 2
    assert "20 failed jobs match: retry them with --yes" in unconfirmed.stderr
    listed = json.loads(run_cli("jobs", "--status", "failed", "--json").stdout)
    assert listed["total"] == 20 and not listed["total_is_estimate"]
    done = run_cli("retry", "--failed", "--yes")
    assert (done.returncode, done.stdout.strip()) == (0, "retried 20 of 20 failed jobs")
    wait_for(
        lambda: (
            db.count("results", "status = 'SUCCESSFUL' AND job_name = 'testapp.jobs.Fail'") == 20
        ),
        30,
        message="the retries",
    )
    nothing = run_cli("retry", "--failed", "--yes")
    assert (nothing.returncode, nothing.stdout.strip()) == (1, "no failed job matches")
    assert worker.stop(10) == 0, worker.output()

    for job_id in failed:
        assert history(db, job_id) == [
            (0, "ERRORED", "ValueError", True),
            (1, "SUCCESSFUL", "", False),
        ]
    check_invariants(db, jobkit_settings, fine)


def test_a_retry_of_a_job_that_waits_does_nothing_and_says_so(
    run_cli, jobkit_runtime, ledger_ready, db
):
    job = Record("waiting").run_in_worker(delay=3600)
    assert job is not None
    done = run_cli("retry", str(job.job_id))
    assert done.returncode == 1
    assert f"it has an attempt scheduled already ({job.id})" in done.stdout


def test_run_now_starts_a_scheduled_job_at_once_and_delete_takes_jobs_that_do_not_run(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = Record("tomorrow").run_in_worker(delay=86400)
    waiting = Record("in an hour").run_in_worker(delay=3600)
    assert job is not None and waiting is not None
    worker = start_ready(workers, db, "--max-processes", "1")
    done = run_cli("run-now", str(job.job_id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{job.job_id}: starts now (it was scheduled for ")
    wait_for(lambda: finished(db, [job.job_id]), 10, message="the job made to run now")
    again = run_cli("run-now", str(job.job_id))
    assert again.returncode == 1
    assert "it ended SUCCESSFUL: retry it to run it again" in again.stdout
    assert worker.stop(10) == 0, worker.output()

    ids = [str(job.job_id), str(waiting.job_id)]
    unconfirmed = run_cli("delete", *ids)  # no terminal to ask on
    assert unconfirmed.returncode == 2
    assert "deleting 2 jobs cannot be undone" in unconfirmed.stderr
    preview = run_cli("delete", "--dry-run", *ids)
    assert preview.returncode == 0
    assert preview.stdout.splitlines() == [
        f"{job.job_id}: would delete testapp.Record (successful, 1 attempt)",
        f"{waiting.job_id}: would delete testapp.Record (scheduled, 1 attempt)",
    ]
    assert (db.count("results"), db.count("requests")) == (1, 1)
    deleted = run_cli("delete", "--yes", "--json", *ids)
    assert deleted.returncode == 0, deleted.stderr
    assert [(r["job_id"], r["done"]) for r in json.loads(deleted.stdout)] == [
        (ids[0], True),
        (ids[1], True),
    ]
    assert (db.count("results"), db.count("requests")) == (0, 0)
    gone = run_cli("delete", "--yes", ids[0])
    assert gone.returncode == 1 and "no job has the id" in gone.stderr


def test_listing_and_showing_jobs_from_the_command_line(
    run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    Fail("table stakes").run_in_worker()
    from jobkit.testing import run_jobs

    run_jobs(jobkit_runtime)
    table = run_cli("jobs", "--status", "errored")
    assert table.returncode == 0, table.stderr
    header, row, footer = table.stdout.strip().splitlines()
    assert header.split() == ["JOB", "STATE", "NAME", "QUEUE", "ATTEMPT", "WHEN", "ERROR"]
    assert "errored" in row and "ValueError: table stakes" in row
    assert footer == "1 of 1"
    job_id = row.split()[0]
    shown = run_cli("show", job_id)
    assert shown.returncode == 0
    assert "attempt 1: errored" in shown.stdout and "ValueError: table stakes" in shown.stdout

    assert run_cli("jobs", "--status", "lost").returncode == 1
    assert run_cli("jobs", "--status", "nonsense").returncode == 2
    assert run_cli("jobs", "--since", "yesterday-ish").returncode == 2
    assert run_cli("show", "not-a-uuid").returncode == 2
    missing = run_cli("show", "00000000-0000-0000-0000-000000000001")
    assert missing.returncode == 1 and "no job has the id" in missing.stderr


def test_a_worker_that_is_stopped_mid_cancel_still_records_it(
    workers, run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    job = SlowToReconcile("stopped").run_in_worker(retries=3)
    assert job is not None
    worker = start_ready(workers, db, "--max-processes", "1", "--shutdown-timeout", "30")
    wait_for(lambda: runs(db, "stopped"), 20, message="the job's start")
    worker.send_signal(signal.SIGTERM)  # stopping, with a long grace: the job keeps running
    worker.wait_for_log("SIGTERM received")
    assert run_cli("cancel", str(job.job_id)).returncode == 0
    assert worker.wait_for_exit(20) == 0, worker.output()
    assert history(db, job.job_id) == [(0, "CANCELLED", "CancelledByOperator", False)]
