"""The jobs the benchmarks run: a no-op, so what is measured is jobkit; and jobs that wait, sync
and async, for ``async_jobs.py``."""

import asyncio
import time

from jobkit import Job, enqueue_many, register_job


@register_job(name="bench.Noop")
class Noop(Job):
    def __init__(self, number: int):
        self.number = number

    def run(self) -> None:
        pass


def pending_noops(runtime, count: int) -> None:
    """Empty the runtime's schema (migrated first), then enqueue ``count`` no-op jobs."""
    runtime.store.migrate()
    runtime.store.purge()
    for start in range(0, count, 10_000):
        enqueue_many([Noop(n) for n in range(start, min(count, start + 10_000))])


@register_job(name="bench.Nap")
class Nap(Job):
    """Sleeps ``seconds`` (a sync job: it holds its pool child)."""

    def __init__(self, number: int, seconds: float):
        self.number = number
        self.seconds = seconds

    def run(self) -> None:
        time.sleep(self.seconds)


@register_job(name="bench.AsyncNap")
class AsyncNap(Job):
    """Awaits ``asyncio.sleep(seconds)`` (an async job: its child runs many at once)."""

    def __init__(self, number: int, seconds: float):
        self.number = number
        self.seconds = seconds

    async def run(self) -> None:
        await asyncio.sleep(self.seconds)
