"""Async jobs (``async def run``), run many at once on a pool child's event loop. Those that
write to the ledger do it through ``testapp.jobs.record`` (a short blocking call)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from jobkit import DeferJob, Job, register_job
from testapp.jobs import Lifecycle, record

logger = logging.getLogger("testapp.async_jobs")

_arrived: set[str] = set()
"""Keys of the ``Meet`` jobs that reached their meeting point in this pool child."""
_deferred: set[str] = set()
"""Job ids of the ``AsyncFlaky`` jobs that deferred once in this pool child."""


@register_job(name="testapp.Nap")
class Nap(Job):
    """Awaits ``asyncio.sleep(seconds)`` and returns its ``key``."""

    def __init__(self, key: str, seconds: float):
        self.key = key
        self.seconds = seconds

    async def run(self) -> str:
        await asyncio.sleep(self.seconds)
        return self.key


@register_job(name="testapp.AsyncCleansUp")
class AsyncCleansUp(Job):
    """Writes a 'start' ledger row, awaits ``seconds``, and writes 'end' in its ``finally``;
    ``on_failure`` writes 'failure' and the error's type and message."""

    def __init__(self, key: str, seconds: float):
        self.key = key
        self.seconds = seconds

    async def run(self) -> None:
        record(self, self.key, "start")
        try:
            await asyncio.sleep(self.seconds)
        finally:
            record(self, self.key, "end")

    def on_failure(self, error: BaseException) -> None:
        record(self, self.key, f"failure {type(error).__name__}: {error}")


@register_job(name="testapp.IgnoresCancel")
class IgnoresCancel(Job):
    """Writes a 'start' ledger row, then awaits for ``seconds`` swallowing every cancellation."""

    def __init__(self, key: str, seconds: float):
        self.key = key
        self.seconds = seconds

    async def run(self) -> None:
        record(self, self.key, "start")
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)


@register_job(name="testapp.BlocksTheLoop")
class BlocksTheLoop(Job):
    """Calls ``time.sleep(seconds)`` in ``async def run``: a blocking call that stalls the loop."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    async def run(self) -> None:
        await asyncio.sleep(0.2)  # let the other jobs of the child start first
        time.sleep(self.seconds)


@register_job(name="testapp.AsyncFlaky")
class AsyncFlaky(Job):
    """Raises ValueError on its first attempt, defers (without using a retry) on its second,
    and returns ``"done"`` on its third."""

    async def run(self) -> str:
        await asyncio.sleep(0)
        assert self.job_process is not None
        attempt = self.job_process.retry_attempt
        if attempt == 0:
            raise ValueError("first attempt fails")
        if str(self.job_process.job_id) not in _deferred:
            _deferred.add(str(self.job_process.job_id))
            raise DeferJob(delay=0)
        return "done"


@register_job(name="testapp.Meet")
class Meet(Job):
    """Logs ``"<key> arrives"``, waits (awaiting) until ``party`` Meet jobs of this child have
    arrived, then logs ``"<key> leaves"``: the lines of concurrent jobs interleave."""

    def __init__(self, key: str, party: int):
        self.key = key
        self.party = party

    async def run(self) -> None:
        logger.info("%s arrives", self.key)
        _arrived.add(self.key)
        async with asyncio.timeout(20):
            while len(_arrived) < self.party:
                await asyncio.sleep(0.01)
        logger.info("%s leaves", self.key)


@register_job(name="testapp.AsyncLifecycle")
class AsyncLifecycle(Lifecycle):
    """``testapp.Lifecycle`` with an ``async def run()``."""

    async def run(self) -> object:  # type: ignore[override]
        await asyncio.sleep(0)
        return Lifecycle.run(self)
