"""Helpers for the fault-injection tests (test_faults.py): workers whose logs may hold expected
tracebacks, the processes and database connections of a worker, waiting through outages, and
the invariant check every fault test ends with.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import psycopg
import pytest

from jobkit import testing
from jobkit.settings import Settings
from testapp.jobs import ledger

T = TypeVar("T")

EXIT_TIMEOUT = 60.0
"""Seconds a worker may take to exit when a test does not say (a hang is a bug)."""

STRAY_TIMEOUT = 10.0
"""Seconds a worker's pool children may take to go after the worker itself exited."""

DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)

_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.MULTILINE)


# Waiting --------------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], T],
    timeout: float = 30.0,
    *,
    message: str = "",
    interval: float = 0.05,
) -> T:
    """``jobkit.testing.wait_for``, where a database error while the condition runs (the
    database being restarted by the test) counts as not yet."""

    def through_outage() -> T | None:
        try:
            return condition()
        except DATABASE_ERRORS:
            return None

    return testing.wait_for(through_outage, timeout, message or str(condition), interval=interval)


def retry_through_outage(action: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``action`` until it does not fail for want of the database (for enqueues and reads
    the test makes right after a restart, whose pooled connections may be dead)."""
    from jobkit.errors import StoreUnavailable

    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except (StoreUnavailable, *DATABASE_ERRORS):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


# Workers ----------------------------------------------------------------------------------------


def teach_fast_runs(runtime: Any) -> Any:
    """Enqueue a no-op job ahead of the others (a higher priority), for tests that need jobs
    claimed and held unstarted: a fresh worker claims one job per child until it has timed a
    run, and once this one has run in a moment its next claim fills its children ten deep.
    Returns the no-op's request."""
    from testapp.jobs import Noop

    return Noop().run_in_worker(priority=100)


def jobkit_command() -> list[str]:
    """The venv's ``jobkit`` console script, or ``python -m jobkit`` when there is none."""
    script = Path(sys.executable).with_name("jobkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobkit"]


class FaultWorker(subprocess.Popen[bytes]):
    """A ``jobkit worker`` subprocess in a session of its own, output to a log file."""

    log_path: Path
    allowed_tracebacks: tuple[str, ...]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.output(), timeout, message=f"worker log line {text!r}")

    def children(self) -> set[int]:
        """Pids of the worker's child processes (its pool children, and any helper process
        multiprocessing started)."""
        found: set[int] = set()
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in (task / "children").read_text().split())
        return found

    def pool_children(self) -> set[int]:
        """Pids of the worker's pool children (its children but multiprocessing's resource
        tracker)."""
        found = set()
        for pid in self.children():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found

    def group_members(self) -> list[int]:
        return live_group_members(self.pid)

    def wait_for_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The exit code once the worker and every process of its group are gone; fails the
        test (showing the log) if it takes longer than ``timeout`` or leaves a process."""
        try:
            code = self.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"jobkit worker {self.pid} did not exit within {timeout} s; log:\n{self.output()}",
                pytrace=False,
            )
        deadline = time.monotonic() + STRAY_TIMEOUT
        while stray := self.group_members():
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"jobkit worker exited ({code}) but left processes {stray}; "
                    f"log:\n{self.output()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        return code

    def stop(self, timeout: float = EXIT_TIMEOUT) -> int:
        """SIGTERM, then the exit code (see ``wait_for_exit``)."""
        self.send_signal(signal.SIGTERM)
        return self.wait_for_exit(timeout)

    def unexpected_tracebacks(self) -> list[str]:
        """Log records with a traceback that no allowed pattern matches."""
        text = self.output()
        starts = [match.start() for match in _LOG_RECORD.finditer(text)]
        records = [text[a:b] for a, b in zip([0, *starts], [*starts, len(text)], strict=True)]
        return [
            record
            for record in records
            if "Traceback (most recent call last)" in record
            and not any(re.search(pattern, record) for pattern in self.allowed_tracebacks)
        ]


class WorkerLauncher:
    """Starts ``jobkit worker`` processes; at the end kills every one's process group and
    fails the test if a worker logged a traceback the test did not expect.

    (The conftest's ``start_worker`` fails on any traceback at all; a fault test may expect
    one, e.g. the traceback of an ``on_aborted`` that raises.)"""

    def __init__(self, env: Mapping[str, str], log_dir: Path):
        self.env = dict(env)
        self.log_dir = log_dir
        self.started: list[FaultWorker] = []

    def start(
        self,
        *args: str,
        env: Mapping[str, str | None] | None = None,
        allowed_tracebacks: Collection[str] = (),
    ) -> FaultWorker:
        """``jobkit worker *args``; ``allowed_tracebacks`` are regular expressions a log
        record with a traceback may match."""
        environment = dict(self.env)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        log_path = self.log_dir / f"worker-{len(self.started) + 1}.log"
        with log_path.open("wb") as log:
            process = FaultWorker(
                [*jobkit_command(), "worker", *args],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path
        process.allowed_tracebacks = tuple(allowed_tracebacks)
        self.started.append(process)
        return process

    def close(self) -> None:
        problems = []
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)  # a test that failed mid-SIGSTOP
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=EXIT_TIMEOUT)
            if unexpected := process.unexpected_tracebacks():
                problems.append(f"jobkit worker (pid {process.pid}) logged a traceback:")
                problems.extend(unexpected)
                problems.append(f"its whole log, {process.log_path}:\n{process.output()}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        state, _, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# Database connections of a process -------------------------------------------------------------


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of the sockets process ``pid`` holds (its database connections)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def backends_of(url: str, pid: int) -> dict[int, str]:
    """The server pids of the database connections held by process ``pid`` itself (not by its
    children, which share its application_name), with their application_name.

    Matched by the client's TCP port: the pool children, and the jobs' own connections, inherit
    ``PGAPPNAME`` from the worker, so the name alone would not tell them apart."""
    ports = local_ports(pid)
    if not ports:
        return {}
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE client_port = ANY(%s) AND client_addr IS NOT NULL",
            [sorted(ports)],
        ).fetchall()
    return dict(rows)


def terminate_backends(url: str, pids: Collection[int]) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(pids)]
        )


def postmaster_start(url: str) -> Any:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


# The invariants ---------------------------------------------------------------------------------


@attrs.frozen
class Attempt:
    """One result row."""

    id: uuid.UUID
    job_id: uuid.UUID
    retry_attempt: int
    status: str
    error_type: str
    retry_request_id: uuid.UUID | None
    worker_id: uuid.UUID | None
    ended_at: Any


def attempts(db: Any, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Attempt]]:
    """Each job's results, oldest first."""
    rows = db.query(
        "SELECT id, job_id, retry_attempt, status, error_type, retry_request_id, worker_id, "
        "ended_at FROM {schema}.results WHERE job_id = ANY(%s) ORDER BY ended_at",
        [list(job_ids)],
    )
    found: dict[uuid.UUID, list[Attempt]] = defaultdict(list)
    for row in rows:
        found[row[1]].append(Attempt(*row))
    return found


def ledger_starts(settings: Settings) -> Counter[str]:
    """Runs per ledger key (its 'start' rows)."""
    return Counter(key for key, phase, _, _ in ledger(settings) if phase == "start")


def runs_of(db: Any, key: str) -> list[tuple]:
    """The ledger rows of ``key``, oldest first: which process ran it, and when."""
    return db.query(
        "SELECT phase, pid, attempt, at FROM {schema}.ledger WHERE key = %s ORDER BY at", [key]
    )


def check_invariants(
    db: Any,
    settings: Settings,
    jobs: Mapping[uuid.UUID, str],
    *,
    faults: Mapping[uuid.UUID, int] | None = None,
    pending: Collection[uuid.UUID] = (),
    final_status: str | Mapping[uuid.UUID, str] = "SUCCESSFUL",
) -> dict[uuid.UUID, Attempt]:
    """Check what must hold after any fault, and return each finished job's final result.

    ``jobs`` maps each enqueued job (its job_id) to its ledger key. For every job not in
    ``pending``: exactly one final result (no ``retry_request_id``) of ``final_status`` (a
    mapping gives some jobs another status than SUCCESSFUL), no retry pending (every retry a
    result points to has its own result), and no request left; for a job in ``pending``: no
    final result yet and exactly one request. Nothing is claimed (the processes table is
    empty), and no other request is left. Each job ran (ledger 'start' rows) at most 1 + the
    number of faults that hit it (``faults``)."""
    faults = faults or {}
    if isinstance(final_status, str):
        expected_status: Mapping[uuid.UUID, str] = dict.fromkeys(jobs, final_status)
    else:
        expected_status = {job_id: final_status.get(job_id, "SUCCESSFUL") for job_id in jobs}
    problems: list[str] = []
    results = attempts(db, jobs)
    result_ids = {attempt.id for rows in results.values() for attempt in rows}
    requests = Counter(job_id for (job_id,) in db.query("SELECT job_id FROM {schema}.requests"))
    starts = ledger_starts(settings)
    finals: dict[uuid.UUID, Attempt] = {}
    for job_id, key in jobs.items():
        rows = results.get(job_id, [])
        described = f"job {job_id} ({key}): results {[(a.status, a.error_type) for a in rows]}"
        final = [attempt for attempt in rows if attempt.retry_request_id is None]
        dangling = [
            a.retry_request_id
            for a in rows
            if a.retry_request_id is not None and a.retry_request_id not in result_ids
        ]
        if job_id in pending:
            if final or requests[job_id] != 1:
                problems.append(f"{described}; expected pending with one request")
        else:
            if len(final) != 1:
                problems.append(f"{described}; expected exactly one final result")
            elif final[0].status != expected_status[job_id]:
                problems.append(f"{described}; expected it to end {expected_status[job_id]}")
            else:
                finals[job_id] = final[0]
            if dangling or requests[job_id]:
                problems.append(f"{described}; a retry is still pending: {dangling}")
        allowed = 1 + faults.get(job_id, 0)
        if starts[key] > allowed:
            problems.append(
                f"{described}; ran {starts[key]} times, at most {allowed} allowed; its ledger "
                f"(phase, pid, attempt, at): {runs_of(db, key)}"
            )
    strays = {job_id: n for job_id, n in requests.items() if job_id not in pending}
    if strays:
        problems.append(f"requests left that no test expects: {strays}")
    claimed = db.query("SELECT id, job_id, worker_id FROM {schema}.processes")
    if claimed:
        problems.append(f"processes left claimed: {claimed}")
    if problems:
        shown = problems[:20] + (
            [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        )
        pytest.fail("invariants broken:\n" + "\n".join(shown), pytrace=False)
    return finals
