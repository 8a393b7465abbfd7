"""Jobs with concurrency keys, and lock plugins, for the concurrency-key tests."""

from __future__ import annotations

import contextlib
import threading

import psycopg

from jobkit import DeferJob, Job, hookimpl, register_job
from jobkit.runtime import get_runtime
from testapp.jobs import record

REFUSE_RERUNS = threading.Event()
"""While set, DeferOnce's should_enqueue refuses to run it again."""


@register_job(name="keys.Keyed")
class Keyed(Job):
    def __init__(self, key: str, fail: bool = False):
        self.key = key
        self.fail = fail

    def default_concurrency_key(self) -> str:
        return self.key

    def run(self) -> None:
        if self.fail:
            raise ValueError("failing on purpose")


@register_job(name="keys.DeferOnce")
class DeferOnce(Job):
    """Defers on its first attempt, succeeds after."""

    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def should_enqueue(self, concurrency_key: str) -> bool:
        return not REFUSE_RERUNS.is_set() and super().should_enqueue(concurrency_key)

    def run(self) -> None:
        if self.job_process is not None and self.job_process.retry_of is None:
            raise DeferJob(delay=0)


HOLD_KEY = "SELECT hashtextextended('hold ' || %s, 0)"
"""The advisory lock a test holds to keep ``HeldOneAtATime`` jobs of a key running."""


@register_job(name="keys.HeldOneAtATime")
class HeldOneAtATime(Job):
    """At most one pending or running job per key, counted in the order of the plain.jobs FAQ
    and of jobkit's README: running jobs first, then pending ones. It writes 'start' to the
    ledger, then runs until the test releases the key's advisory lock (``HOLD_KEY``)."""

    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def should_enqueue(self, concurrency_key: str) -> bool:
        return (
            len(self.get_processing_jobs(concurrency_key)) < 1
            and len(self.get_requested_jobs(concurrency_key)) < 1
        )

    def run(self) -> None:
        record(self, self.key, "start")
        with psycopg.connect(get_runtime().settings.database_url, autocommit=True) as connection:
            connection.execute(f"SELECT pg_advisory_lock(({HOLD_KEY}))", [self.key])
        record(self, self.key, "end")


class NullLock:
    """A lock plugin that locks nothing: with it, concurrent producers can both pass the
    concurrency-key check, which is what the race tests must be able to see."""

    @hookimpl(tryfirst=True)
    def jobkit_enqueue_lock(self, job_name, concurrency_key):
        return contextlib.nullcontext()


null_lock = NullLock()


class CountingLock:
    """A replacement lock (threading, so only for one process) that counts its uses."""

    def __init__(self) -> None:
        self.locks: dict[tuple[str, str], threading.Lock] = {}
        self.taken: list[tuple[str, str]] = []

    @hookimpl
    def jobkit_enqueue_lock(self, job_name, concurrency_key):
        lock = self.locks.setdefault((job_name, concurrency_key), threading.Lock())

        @contextlib.contextmanager
        def hold():
            with lock:
                self.taken.append((job_name, concurrency_key))
                yield

        return hold()


counting_lock = CountingLock()
