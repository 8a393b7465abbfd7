"""Jobs for the fault-injection tests (tests/acceptance/test_faults.py).

They write the same ledger as ``testapp.jobs.Record`` (one autocommit connection per row, so the
test counts executions independently of jobkit), but every write waits out a database outage:
a job running across a PostgreSQL restart must not fail because its own bookkeeping did, or the
test could not tell jobkit's behaviour from the job's.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psycopg
from psycopg import sql

from jobkit import Job, register_job
from jobkit.records import JobResult
from jobkit.runtime import get_runtime
from testapp.jobs import ledger_table

OUTAGE_PATIENCE = 60.0
"""Seconds a ledger write keeps retrying while the database is unreachable."""


def patient_record(key: str, phase: str, attempt: int) -> int:
    """Write a ledger row, retrying through a database outage; return how many rows ``key``
    has with ``phase`` (this one included).

    A retry must not write the row twice: an outage can end the connection after the INSERT
    committed and before its answer (or the count) came back, and the test would count two runs
    where the job ran once. So each write carries an id of its own, and a retry that finds it
    written adds nothing."""
    settings = get_runtime().settings
    table = ledger_table(settings)
    write_id = uuid.uuid4()
    deadline = time.monotonic() + OUTAGE_PATIENCE
    while True:
        try:
            with psycopg.connect(
                settings.database_url, autocommit=True, connect_timeout=2
            ) as connection:
                connection.execute(
                    sql.SQL(
                        "INSERT INTO {} (key, phase, pid, attempt, write_id) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (write_id) DO NOTHING"
                    ).format(table),
                    (key, phase, os.getpid(), attempt, write_id),
                )
                row = connection.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE key = %s AND phase = %s").format(table),
                    (key, phase),
                ).fetchone()
            return row[0] if row else 0
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _attempt(job: Job) -> int:
    return job.job_process.retry_attempt if job.job_process else -1


@register_job(name="testapp.Sleeper")
class Sleeper(Job):
    """Writes 'start', sleeps ``seconds``, writes 'end'. With ``only_first_run`` it sleeps only
    on the first run of its key (counted in the ledger), with ``only_first_attempt`` only on
    attempt 0, so a re-run after a fault is quick; with ``ignore_sigterm`` only SIGKILL ends it
    early."""

    def __init__(
        self,
        key: str,
        seconds: float = 0.0,
        only_first_run: bool = False,
        only_first_attempt: bool = False,
        ignore_sigterm: bool = False,
    ):
        self.key = key
        self.seconds = seconds
        self.only_first_run = only_first_run
        self.only_first_attempt = only_first_attempt
        self.ignore_sigterm = ignore_sigterm

    def run(self) -> None:
        if self.ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runs = patient_record(self.key, "start", _attempt(self))
        quick = (self.only_first_run and runs > 1) or (self.only_first_attempt and _attempt(self))
        if not quick:
            time.sleep(self.seconds)
        patient_record(self.key, "end", _attempt(self))


@register_job(name="testapp.IgnoresTerm")
class IgnoresTerm(Job):
    """Hangs for ever and ignores SIGTERM: only SIGKILL ends it."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        patient_record(self.key, "start", _attempt(self))
        time.sleep(1e9)


@register_job(name="testapp.IgnoresTermWithTimeout")
class IgnoresTermWithTimeout(IgnoresTerm):
    """``IgnoresTerm`` whose class sets a 2 s time limit."""

    def default_timeout(self) -> float:
        return 2


@register_job(name="testapp.AbortedRaises")
class AbortedRaises(Sleeper):
    """A ``Sleeper`` whose ``on_aborted`` writes an 'aborted' ledger row and then raises."""

    def on_aborted(self, result: JobResult) -> None:
        patient_record(self.key, "aborted", result.retry_attempt)
        raise RuntimeError(f"on_aborted of {self.key} exploded on purpose")


@register_job(name="testapp.AbortedHangs")
class AbortedHangs(Sleeper):
    """A ``Sleeper`` whose ``on_aborted`` writes an 'aborted' ledger row and then never returns."""

    def on_aborted(self, result: JobResult) -> None:
        patient_record(self.key, "aborted", result.retry_attempt)
        time.sleep(1e9)
