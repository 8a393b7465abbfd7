"""The worker as an operator meets it: a supervisor that signals the whole process group, and
--reload in development."""

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from jobkit import Status
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


@pytest.fixture
def reloading(start_worker, tmp_path, subprocess_env):
    """``reloading(*args)`` starts ``jobkit worker --reload *args`` in ``tmp_path``, importing
    the module ``tmp_path/reloadjobs.py`` (to change) and the test jobs."""
    (tmp_path / "reloadjobs.py").write_text("from jobkit import Job, register_job\nVERSION = 1\n")

    def start(*args: str):
        return start_worker(
            "--reload",
            *args,
            env={
                "JOBKIT_IMPORTS": "reloadjobs,testapp.jobs",
                "PYTHONPATH": f"{tmp_path}{os.pathsep}{subprocess_env['PYTHONPATH']}",
            },
            cwd=tmp_path,
        )

    return start


def session_members(session: int) -> list[int]:
    """Pids of the live processes of ``session``: a reloaded worker leads a session of its own,
    with its pool children."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while we looked
            state, _, _, _, sid = stat[stat.rindex(")") + 2 :].split()[:5]
            if int(sid) == session and state != "Z":
                members.append(int(entry.name))
    return members


def replaced(store, before):
    """Whether every worker registered now is a new one."""
    ids = {w.id for w in store.workers()}
    return ids and ids.isdisjoint({w.id for w in before})


def change_until_replaced(path, store, before, timeout=60.0):
    """Append a line to ``path`` every 5 s until a new worker has replaced ``before``. The
    supervisor starts its worker before its file watcher is set up, so on a loaded machine a
    first change can come before anything watches; a later one must still restart the worker."""
    deadline = time.monotonic() + timeout
    for change in itertools.count(1):
        with path.open("a") as file:
            file.write(f"CHANGE_{change} = {change}\n")
        look_until = min(deadline, time.monotonic() + 5)
        while time.monotonic() < look_until:
            if replaced(store, before):
                return
            time.sleep(0.05)
        if time.monotonic() >= deadline:
            pytest.fail(f"no new worker within {timeout} s of {change} changes to {path.name}")


def test_reload_restarts_the_worker_when_a_python_file_changes(
    reloading, wait_until, jobkit_runtime, tmp_path
):
    worker = reloading()
    store = jobkit_runtime.store
    first = wait_until(lambda: store.workers(), timeout=30)

    change_until_replaced(tmp_path / "reloadjobs.py", store, first)
    os.killpg(worker.pid, signal.SIGINT)
    assert worker.wait_for_exit() == 0, worker.output()
    assert len(store.workers()) == 0
    assert "reloadjobs.py changed: restarting the worker" in worker.output()


def test_reload_restarts_the_worker_when_a_dotenv_file_changes(
    reloading, wait_until, jobkit_runtime, tmp_path
):
    """An app that loads .env files at start-up sees its new values, as under plain.jobs."""
    worker = reloading()
    store = jobkit_runtime.store
    first = wait_until(lambda: store.workers(), timeout=30)

    change_until_replaced(tmp_path / ".env.local", store, first)
    os.killpg(worker.pid, signal.SIGINT)
    assert worker.wait_for_exit() == 0, worker.output()


def test_reload_restart_gives_running_jobs_the_shutdown_timeout(
    reloading, wait_until, jobkit_runtime, jobkit_settings, ledger_ready, tmp_path
):
    """A restart stops the worker as SIGINT does: a job gets --shutdown-timeout to finish (here
    more than the 5 s the supervisor adds to it), and the worker restarts once it has."""
    request = Record("restart", seconds=6).run_in_worker()
    worker = reloading("--max-processes", "1", "--shutdown-timeout", "20")
    wait_until(lambda: ("restart", "start") in {row[:2] for row in ledger(jobkit_settings)})
    first = jobkit_runtime.store.workers()

    (tmp_path / "reloadjobs.py").write_text("VERSION = 2\n")

    wait_until(lambda: replaced(jobkit_runtime.store, first), timeout=40)
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status is Status.SUCCESSFUL, worker.output()
    os.killpg(worker.pid, signal.SIGINT)
    assert worker.wait_for_exit() == 0, worker.output()


def test_reload_ctrl_c_is_one_graceful_stop_and_exits_0(
    reloading, wait_until, jobkit_runtime, jobkit_settings, ledger_ready
):
    """A terminal's Ctrl-C signals the whole foreground group: the worker gets one SIGINT (its
    running job finishes), and the supervisor exits 0 without click's "Aborted!"."""
    request = Record("ctrl-c", seconds=2).run_in_worker()
    worker = reloading("--max-processes", "1", "--shutdown-timeout", "20")
    wait_until(lambda: ("ctrl-c", "start") in {row[:2] for row in ledger(jobkit_settings)})
    (worker_info,) = jobkit_runtime.store.workers()

    os.killpg(worker.pid, signal.SIGINT)

    assert worker.wait_for_exit() == 0, worker.output()
    assert "Aborted!" not in worker.output()
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status is Status.SUCCESSFUL, worker.output()
    assert session_members(worker_info.pid) == []
    assert jobkit_runtime.store.workers() == []


def test_reload_double_ctrl_c_during_a_restart_ends_the_jobs_and_leaves_nothing(
    reloading, wait_until, jobkit_runtime, jobkit_settings, ledger_ready, tmp_path, db
):
    """Ctrl-C twice while a restart waits for a running job: the worker ends the job at once
    (CANCELLED, to run again), and the supervisor waits for it and exits 0, leaving no process
    behind."""
    Record("double", seconds=60).run_in_worker()
    worker = reloading("--max-processes", "1", "--shutdown-timeout", "30")
    wait_until(lambda: ("double", "start") in {row[:2] for row in ledger(jobkit_settings)})
    (worker_info,) = jobkit_runtime.store.workers()
    (tmp_path / "reloadjobs.py").write_text("VERSION = 2\n")
    wait_until(lambda: "restarting the worker" in worker.output(), timeout=30)

    os.killpg(worker.pid, signal.SIGINT)
    os.killpg(worker.pid, signal.SIGINT)

    assert worker.wait_for_exit() == 0, worker.output()
    assert "Aborted!" not in worker.output()
    assert session_members(worker_info.pid) == []
    assert db.query("SELECT status FROM {schema}.results") == [("CANCELLED",)], worker.output()
    assert jobkit_runtime.store.workers() == []


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
