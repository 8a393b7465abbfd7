"""Jobs that misbehave the ways an adversarial review found (tests/acceptance/test_hardening.py):
each writes the ledger like ``testapp.jobs.Record``, so the tests count runs independently."""

from __future__ import annotations

import os
import time

from jobkit import DeferJob, Job, JobResult, register_job
from testapp.jobs import record


@register_job(name="testapp.Forks")
class Forks(Job):
    """Forks, and lets the copy return from ``run()`` as the job does, without ``os._exit``."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "start")
        os.fork()


@register_job(name="testapp.RaisesBase")
class RaisesBase(Job):
    """Raises a ``BaseException`` that is not an ``Exception`` (by name: KeyboardInterrupt,
    SystemExit, GeneratorExit)."""

    def __init__(self, key: str, kind: str = "KeyboardInterrupt"):
        self.key = key
        self.kind = kind

    def run(self) -> None:
        record(self, self.key, "start")
        raise {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit}[self.kind](
            f"{self.kind} raised by the job on purpose"
        )


@register_job(name="testapp.TakesAnything")
class TakesAnything(Job):
    """Takes any JSON; its run records the key."""

    def __init__(self, key: str, data: object = None):
        self.key = key
        self.data = data

    def run(self) -> None:
        record(self, self.key, "start")


@register_job(name="testapp.CleansUp")
class CleansUp(Job):
    """Sleeps past its timeout; its ``finally`` writes an 'end' ledger row."""

    def __init__(self, key: str, seconds: float):
        self.key = key
        self.seconds = seconds

    def run(self) -> None:
        record(self, self.key, "start")
        try:
            time.sleep(self.seconds)
        finally:
            record(self, self.key, "end")


@register_job(name="testapp.HugeError")
class HugeError(Job):
    """Raises an error whose message is ``size`` characters long, starting ``HEAD`` and ending
    ``TAIL``."""

    def __init__(self, key: str, size: int):
        self.key = key
        self.size = size

    def run(self) -> None:
        record(self, self.key, "start")
        raise ValueError("HEAD" + "x" * self.size + "TAIL")


@register_job(name="testapp.RefusedResult")
class RefusedResult(Job):
    """Runs like ``Record``; ``testapp.refusing_plugin`` turns its outcome into one the database
    refuses to store."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "start")


@register_job(name="testapp.SurrogateError")
class SurrogateError(Job):
    """Raises an error whose text holds a lone surrogate, as ``surrogateescape``-decoded file
    names do."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "start")
        raise FileNotFoundError(b"/data/caf\xe9.csv".decode("utf-8", "surrogateescape"))


@register_job(name="testapp.DefersForever")
class DefersForever(Job):
    """Defers itself by 10**13 seconds, past what PostgreSQL's timestamps can hold."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "start")
        raise DeferJob(delay=1e13)


@register_job(name="testapp.BacksOffForever")
class BacksOffForever(Job):
    """Fails, and asks to be retried after a delay past what PostgreSQL's timestamps can
    hold (as ``2**attempt`` gets there at attempt 44)."""

    def __init__(self, key: str):
        self.key = key

    def default_retries(self) -> int:
        return 3

    def calculate_retry_delay(self, attempt: int) -> float:
        return 2.0**44

    def run(self) -> None:
        record(self, self.key, "start")
        raise ValueError("fails, to be retried much later")


@register_job(name="testapp.SlowToReconcile")
class SlowToReconcile(Job):
    """Runs for ever on its first attempt (a test kills its pool child); its ``on_aborted``
    takes two seconds, writing 'aborted' and 'reconciled' ledger rows around them."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "start")
        if self.job_process is not None and self.job_process.retry_attempt == 0:
            time.sleep(3600)

    def on_aborted(self, result: JobResult) -> None:
        record(self, self.key, "aborted")
        time.sleep(2)
        record(self, self.key, "reconciled")
