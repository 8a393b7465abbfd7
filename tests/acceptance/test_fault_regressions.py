"""Faults that found bugs once, kept as regression tests: a job enqueued while the listener was
down, a killed worker's unstarted jobs, a hanging on_aborted, and a
claim's reply or a release lost on the way."""

from __future__ import annotations

import os
import signal

import pytest
from faults import (
    backends_of,
    teach_fast_runs,
    terminate_backends,
    wait_for,
)
from test_faults import (
    SLOW_POLL,
    enqueue,
    finished,
    history,
    ledger_starts,
    runs,
    start_latency,
    start_ready,
)

from testapp.fault_jobs import AbortedHangs, Sleeper
from testapp.jobs import Record

pytestmark = pytest.mark.acceptance


def test_a_job_enqueued_while_the_listener_is_down_starts_promptly(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(workers, db, "--max-processes", "1", env=SLOW_POLL)
    listener = [
        p for p, name in backends_of(db.url, worker.pid).items() if name.endswith(":listener")
    ]
    terminate_backends(db.url, listener)
    worker.wait_for_log("lost the wake-up connection")
    # Enqueued after the worker noticed the loss, before it LISTENs again (within 1 s).
    gap = Record("gap").run_in_worker()
    wait_for(lambda: runs(db, "gap"), 40, message="the gap job's start")
    assert start_latency(db, "gap", gap) < 2  # fails: ~30 s, the poll interval


def test_a_killed_worker_s_unstarted_jobs_still_run_without_retries(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    doomed = start_ready(workers, db, "--max-processes", "2")
    teach_fast_runs(jobkit_runtime)
    jobs = enqueue(jobkit_runtime, [Record(f"j{n}", seconds=3) for n in range(6)], retries=0)
    wait_for(lambda: db.count("processes") == 6, message="all claimed by the first worker")
    wait_for(lambda: len(ledger_starts(jobkit_settings)) == 2, message="two started")
    start_ready(workers, db, "--max-processes", "2")
    os.killpg(doomed.pid, signal.SIGKILL)
    wait_for(lambda: finished(db, jobs), 40, message="every job finished")
    never_ran = [key for key in jobs.values() if not runs(db, key)]
    assert never_ran == []  # fails: 4 jobs LOST (final) that never started


def test_a_hanging_on_aborted_blocks_neither_rescue_nor_exit(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    worker = start_ready(workers, db, "--max-processes", "1", "--shutdown-timeout", "3")
    job = AbortedHangs("hangs", seconds=30, only_first_run=True).run_in_worker(retries=1)
    [(pid, _, _)] = wait_for(lambda: runs(db, "hangs"), message="start")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: runs(db, "hangs", "aborted"), 10, message="on_aborted called")
    wait_for(lambda: finished(db, [job.job_id]), 20, message="re-run finished")
    # A peer dies holding a job: the worker with the hung on_aborted must still rescue it.
    doomed = start_ready(workers, db, "--max-processes", "1", "--max-pending-per-process", "1")
    worker.send_signal(signal.SIGSTOP)  # so that the doomed worker claims the next job
    try:
        orphan = Record("orphan", seconds=30).run_in_worker(retries=1)
        wait_for(lambda: runs(db, "orphan"), message="orphan start")
    finally:
        worker.send_signal(signal.SIGCONT)
    os.killpg(doomed.pid, signal.SIGKILL)
    wait_for(lambda: history(db, orphan.job_id), 30, message="rescue")  # fails: never rescued
    assert worker.stop(20) == 0  # fails: logs "stopped" but never exits


class CuttingProxy:
    """A TCP proxy to the test database that, once armed, forwards the next client message
    holding ``marker`` and then cuts that client's connection: the server runs (and, in
    autocommit, commits) the statement, but the client never reads the answer."""

    def __init__(self, url: str):
        import socket
        import threading
        import urllib.parse

        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(url)
        self.target = (str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        parts = urllib.parse.urlsplit(url)
        netloc = f"{parts.username or 'postgres'}@127.0.0.1:{self.port}"
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self.marker: bytes | None = None
        self.forward = True
        self.cut = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes, *, forward: bool = True) -> None:
        """Cut the connection that sends ``marker`` next: after forwarding it (the statement
        runs, its answer is lost) or, with ``forward=False``, instead (it never runs)."""
        self.forward = forward
        self.marker = marker

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, destination, from_client: bool) -> None:
        import contextlib
        import socket

        try:
            while data := source.recv(65536):
                marked = from_client and self.marker is not None and self.marker in data
                if marked:
                    with self.lock:
                        marked, self.marker = self.marker is not None, None
                if not marked or self.forward:
                    destination.sendall(data)
                if marked:
                    self.cut.set()
                    return  # the finally below cuts both sides
        except OSError:
            pass
        finally:
            for sock in (source, destination):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_a_claim_whose_reply_is_lost_is_not_stranded(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    jobs = enqueue(jobkit_runtime, [Record(f"j{n}") for n in range(3)])
    proxy = CuttingProxy(db.url)
    try:
        proxy.arm(b"'claimed'")  # the worker's first finish_and_claim round trip
        worker = workers.start("--max-processes", "1", env={"JOBKIT_DATABASE_URL": proxy.url})
        assert proxy.cut.wait(30), "the worker never claimed"
        # fails: the three claimed rows stay in processes, owned by the live worker, for ever
        wait_for(lambda: finished(db, jobs), 20, message="the jobs whose claim reply was lost")
        assert worker.stop(10) == 0
    finally:
        proxy.close()


def test_unstarted_jobs_whose_release_failed_are_not_stranded(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    victim = Sleeper("victim", seconds=30, only_first_run=True).run_in_worker(retries=1)
    jobs = {victim.job_id: "victim"}
    jobs |= enqueue(jobkit_runtime, [Record(f"queued-{n}") for n in range(3)])
    teach_fast_runs(jobkit_runtime)
    proxy = CuttingProxy(db.url)
    try:
        # One child, handed all four jobs after the quick warm-up; when it dies, the three it
        # never started are released, and that release is lost on the way to the database.
        worker = workers.start("--max-processes", "1", env={"JOBKIT_DATABASE_URL": proxy.url})
        [(pid, _, _)] = wait_for(lambda: runs(db, "victim"), message="the victim's start")
        proxy.arm(b"released AS", forward=False)
        os.kill(pid, signal.SIGKILL)
        assert proxy.cut.wait(10), "the worker never released the unstarted jobs"
        # fails: the three stay claimed by the live worker for ever
        wait_for(lambda: finished(db, jobs), 20, message="the released jobs")
        assert worker.stop(10) == 0
    finally:
        proxy.close()
