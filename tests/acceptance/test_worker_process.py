"""The worker as an operator meets it: a supervisor that signals the whole process group, and
--reload in development."""

import os
import signal
import textwrap

import pytest

from testapp.jobs import Record, ledger

pytestmark = pytest.mark.acceptance


def test_sigterm_to_the_whole_group_is_a_graceful_stop(
    start_worker, wait_until, jobkit_runtime, jobkit_settings, ledger_ready
):
    """systemd's default KillMode=control-group signals the children too: they must leave the
    stop to their worker, not die with the job they run."""
    request = Record("group", seconds=2).run_in_worker()
    worker = start_worker("--max-processes", "1", "--shutdown-timeout", "10")
    wait_until(lambda: ("group", "start") in {row[:2] for row in ledger(jobkit_settings)})

    os.killpg(worker.pid, signal.SIGTERM)

    assert worker.wait_for_exit() == 0, worker.output()
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status.value == "SUCCESSFUL", worker.output()
    assert [row[1] for row in ledger(jobkit_settings)] == ["start", "end"]


def test_reload_restarts_the_worker_when_a_python_file_changes(
    start_worker, wait_until, jobkit_runtime, tmp_path, subprocess_env
):
    module = tmp_path / "reloadjobs.py"
    module.write_text("from jobkit import Job, register_job\nVERSION = 1\n")
    worker = start_worker(
        "--reload",
        env={
            "JOBKIT_IMPORTS": "reloadjobs",
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{subprocess_env['PYTHONPATH']}",
        },
        cwd=tmp_path,
    )
    store = jobkit_runtime.store
    first = wait_until(lambda: store.workers(), timeout=30)

    module.write_text(
        module.read_text()
        + textwrap.dedent("""\
        VERSION = 2
    """)
    )

    def replaced():
        ids = {w.id for w in store.workers()}
        return ids and ids.isdisjoint({w.id for w in first})

    wait_until(replaced, timeout=30)
    os.killpg(worker.pid, signal.SIGINT)
    assert worker.wait_for_exit() == 0, worker.output()
    assert len(store.workers()) == 0


def test_the_stats_line_shows_depth_oldest_pending_age_in_flight_and_processes(
    start_worker, wait_until, jobkit_runtime, db
):
    """A request in a queue the worker does not serve stays pending: its age is in the line."""
    Record("elsewhere").run_in_worker(queue="unserved")
    db.query("UPDATE {schema}.requests SET start_at = now() - interval '90 seconds'")
    worker = start_worker("--queue", "default", "--stats-every", "0.2", "--max-processes", "2")

    line = wait_until(
        lambda: next(
            (line for line in worker.output().splitlines() if "worker stats " in line), None
        )
    )

    figures = dict(pair.split("=") for pair in line.partition("worker stats ")[2].split())
    assert list(figures) == [
        "done_successful",
        "done_errored",
        "done_deferred",
        "done_lost",
        "done_cancelled",
        "rate_per_second",
        "in_flight",
        "processes",
        "pending",
        "scheduled",
        "running",
        "oldest_pending_age",
    ]
    assert (figures["pending"], figures["in_flight"], figures["processes"]) == ("1", "0", "2")
    assert 90 <= float(figures["oldest_pending_age"]) < 90 + 300
