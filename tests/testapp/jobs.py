"""Test jobs. Each run writes to a ledger table (in the test session's schema) over its own
autocommit connection, so tests count executions independently of jobkit's bookkeeping."""

from __future__ import annotations

import datetime
import os
import time

import psycopg
from psycopg import sql

from jobkit import DeferJob, Job, Pipeline, register_job
from jobkit.runtime import get_runtime
from jobkit.settings import Settings


def ledger_table(settings: Settings) -> sql.Composed:
    return sql.SQL("{}.ledger").format(sql.Identifier(settings.schema))


def create_ledger(settings: Settings) -> None:
    """Create (or empty) the ledger of the settings' schema."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        table = ledger_table(settings)
        connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text, phase text, pid int, attempt int, "
                "at timestamptz DEFAULT clock_timestamp(), write_id uuid UNIQUE)"
            ).format(table)
        )
        connection.execute(sql.SQL("TRUNCATE {}").format(table))


def ledger(settings: Settings) -> list[tuple[str, str, int, int]]:
    """Every ledger row as (key, phase, pid, attempt), oldest first."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        query = sql.SQL("SELECT key, phase, pid, attempt FROM {} ORDER BY at")
        return connection.execute(query.format(ledger_table(settings))).fetchall()


def record(job: Job, key: str, phase: str) -> int:
    """Write a ledger row for ``job``; return how many rows ``key`` has with ``phase``."""
    settings = get_runtime().settings
    attempt = job.job_process.retry_attempt if job.job_process else -1
    table = ledger_table(settings)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("INSERT INTO {} (key, phase, pid, attempt) VALUES (%s, %s, %s, %s)").format(
                table
            ),
            (key, phase, os.getpid(), attempt),
        )
        row = connection.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE key = %s AND phase = %s").format(table),
            (key, phase),
        ).fetchone()
    return row[0] if row else 0


_tally_connection: psycopg.Connection | None = None


@register_job(name="testapp.Tally")
class Tally(Job):
    """Writes one 'start' row to the ledger over a connection kept for the process: a cheap
    execution count for tests that run thousands of jobs."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        global _tally_connection
        settings = get_runtime().settings
        if _tally_connection is None or _tally_connection.closed:
            _tally_connection = psycopg.connect(settings.database_url, autocommit=True)
        _tally_connection.execute(
            sql.SQL("INSERT INTO {} (key, phase, pid) VALUES (%s, 'start', %s)").format(
                ledger_table(settings)
            ),
            (self.key, os.getpid()),
        )


@register_job
class Noop(Job):
    """Does nothing; for throughput."""

    def __init__(self, number: int = 0):
        self.number = number

    def run(self) -> None:
        pass


@register_job(name="testapp.Record")
class Record(Job):
    """Writes start and end rows to the ledger, sleeping in between."""

    def __init__(self, key: str, seconds: float = 0.0):
        self.key = key
        self.seconds = seconds

    def run(self) -> None:
        record(self, self.key, "start")
        time.sleep(self.seconds)
        record(self, self.key, "end")


@register_job
class Fail(Job):
    """Raises ValueError, every time or for its first ``times`` attempts."""

    def __init__(self, message: str = "boom", times: int | None = None):
        self.message = message
        self.times = times

    def run(self) -> None:
        attempt = self.job_process.retry_attempt if self.job_process else 0
        if self.times is None or attempt < self.times:
            raise ValueError(self.message)


@register_job
class Defer(Job):
    """Raises DeferJob on each of its first ``times`` runs (counted in the ledger)."""

    def __init__(self, key: str, times: int, delay: float = 0, increment_retries: bool = False):
        self.key = key
        self.times = times
        self.delay = delay
        self.increment_retries = increment_retries

    def run(self) -> None:
        runs = record(self, self.key, "run")
        if runs <= self.times:
            raise DeferJob(delay=self.delay, increment_retries=self.increment_retries)


@register_job
class Typed(Job):
    """Writes its typed parameters to the ledger, to check they arrive as they were sent."""

    def __init__(self, when: datetime.datetime, amount: int):
        self.when = when
        self.amount = amount

    def run(self) -> None:
        assert isinstance(self.when, datetime.datetime) and self.when.tzinfo is not None
        record(self, f"{self.when.isoformat()}|{self.amount}", "typed")


UNSTORABLE_OUTPUTS = {
    "object": object,
    "set": lambda: {"tags": {1, 2}},
    "nan": lambda: [1, float("nan")],
    "int key": lambda: {1: "a"},
    "NUL": lambda: {"text": "a\x00b"},
    "surrogate": lambda: "\udce9",
}
"""Outputs no serializer stores, by name: no parameter could carry them to the job."""


@register_job
class Returns(Job):
    """Returns what it is told to: ``value``; or, by ``kind``, ``size`` characters of text
    (``big``), a dict holding a datetime (``when``), one of ``UNSTORABLE_OUTPUTS``, or
    ``value`` after failing its first attempt (``fail-once``)."""

    def __init__(self, kind: str, value: object = None, size: int = 0):
        self.kind = kind
        self.value = value
        self.size = size

    def run(self) -> object:
        if self.kind == "big":
            return "x" * self.size
        if self.kind == "when":
            return {"at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)}
        if self.kind == "fail-once" and self.job_process and self.job_process.retry_attempt == 0:
            raise ValueError("the first attempt fails")
        if self.kind in UNSTORABLE_OUTPUTS:
            return UNSTORABLE_OUTPUTS[self.kind]()
        return self.value


@register_job
class Square(Job):
    """Returns ``n`` squared (a workflow member); with a ``key``, writes a 'start' row to the
    ledger first and sleeps ``seconds``. Enqueued in ``queue``."""

    def __init__(self, n: int, key: str = "", seconds: float = 0.0, queue: str = "default"):
        self.n = n
        self.key = key
        self.seconds = seconds
        self.queue = queue

    def default_queue(self) -> str:
        return self.queue

    def run(self) -> int:
        if self.key:
            record(self, self.key, "start")
            time.sleep(self.seconds)
        return self.n * self.n


@register_job
class Collect(Job):
    """A workflow callback: writes a 'start' row to the ledger under ``key`` and returns what it
    received, as ``[status, output]`` pairs in order."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> list[list[object]]:
        record(self, self.key, "start")
        inputs = self.workflow_inputs()
        return [[None if m.status is None else m.status.value, m.output] for m in inputs]


@register_job
class Increment(Job):
    """A chain link: returns the previous link's output plus one (``start`` plus one first)."""

    def __init__(self, start: int = 0):
        self.start = start

    def run(self) -> int:
        inputs = self.workflow_inputs()
        return (inputs[0].output if inputs else self.start) + 1


@register_job
class ImportCats(Pipeline):
    """django-db-queue's example as a pipeline: each step writes a ledger row under the
    workspace's ``key``; ``fail_in`` names a step whose first run raises (retries apply),
    ``slow_in`` one whose first run sleeps 30 s (for a kill), and ``jump`` makes the first step
    go straight to the last (``"end"``: end at once)."""

    steps = ("fetch", "parse", "store")

    def default_retries(self) -> int:
        return 1

    def fetch(self) -> str | None:
        self._step("fetch")
        self.workspace["cats"] = ["tom", "felix"]
        jump = self.workspace.get("jump")
        return Pipeline.END if jump == "end" else jump

    def parse(self) -> None:
        self._step("parse")
        self.workspace["count"] = len(self.workspace["cats"])

    def store(self) -> None:
        self._step("store")
        self.workspace["stored"] = True

    def _step(self, name: str) -> None:
        runs = record(self, f"{self.workspace['key']}-{name}", "start")
        if self.workspace.get("fail_in") == name and runs == 1:
            raise RuntimeError(f"{name} failed once")
        if self.workspace.get("slow_in") == name and runs == 1:
            time.sleep(30)


@register_job(name="testapp.Lifecycle")
class Lifecycle(Job):
    """Writes a ledger row (phase) from each of its lifecycle hooks and from ``run()``, and
    raises in those ``fail_in`` names, comma-separated (``enqueued``, ``before``, ``run``,
    ``failure``, ``after``); ``run()`` defers its first run with ``defer``, and returns
    ``returns``."""

    def __init__(
        self,
        key: str,
        fail_in: str = "",
        retries: int = 0,
        defer: bool = False,
        returns: object = None,
    ):
        self.key = key
        self.fail_in = fail_in
        self.retries = retries
        self.defer = defer
        self.returns = returns

    def default_retries(self) -> int:
        return self.retries

    def _phase(self, phase: str) -> int:
        count = record(self, self.key, phase)
        if phase in self.fail_in.split(","):
            raise RuntimeError(f"{phase} failed")
        return count

    def on_enqueued(self, request) -> None:
        self._phase("enqueued")

    def before_run(self) -> None:
        self._phase("before")

    def run(self) -> object:
        if self._phase("run") == 1 and self.defer:
            raise DeferJob(delay=0)
        return self.returns

    def on_failure(self, error: BaseException) -> None:
        self._phase(f"failure {type(error).__name__}: {error}")
        if "failure" in self.fail_in.split(","):
            raise RuntimeError("failure failed")

    def after_run(self) -> None:
        self._phase("after")
