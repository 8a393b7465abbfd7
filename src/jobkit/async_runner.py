"""Runs a pool child's async jobs: one event loop, in a thread of its own, with up to the
``worker_async_concurrency`` setting's attempts in flight at once, each in its own task.

The child's main thread hands it attempts (``start``) and waits for room first; it cancels an
attempt's task when the worker asks (its timeout, the end of a shutdown's grace, an operator's
``jobkit cancel``), so the job's ``finally`` blocks run; and it reports each outcome to the
worker as its task ends. A watchdog thread notices when the loop stops turning (a job called
something blocking, such as ``time.sleep``, and every other async job of the child waits) and
logs which job blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobkit.errors import JobInterrupted
from jobkit.records import JobProcess, Outcome, Status

if TYPE_CHECKING:
    from jobkit.runtime import Runtime

logger = logging.getLogger("jobkit.worker")

LOOP_BEAT = 0.1
"""Seconds between two marks the loop leaves that it still turns."""
STALL_AFTER = 1.0
"""Seconds the loop may go without turning, while async jobs run, before the watchdog logs
which job blocks it."""

Report = Callable[[JobProcess, Outcome, float, float], None]
"""Sends the worker an attempt's outcome, with its wall-clock start and end."""


class AsyncRunner:
    """The event loop of one pool child and the async attempts in flight on it."""

    def __init__(self, runtime: Runtime, concurrency: int, report: Report):
        self.runtime = runtime
        self.concurrency = concurrency
        self.report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._in_flight: dict[uuid.UUID, JobProcess] = {}
        """The attempts started and not reported, by id (guarded by ``_changed``)."""
        self._tasks: dict[uuid.UUID, asyncio.Task[Outcome]] = {}
        """Their tasks, by attempt id (used on the loop's thread only)."""
        self._turned = time.monotonic()
        self._closed = threading.Event()

    # The child's main thread ------------------------------------------------------------------

    def wait_for_room(self) -> None:
        """Block until fewer than ``concurrency`` attempts are in flight."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._in_flight) < self.concurrency)

    def wait_until_idle(self) -> None:
        """Block until no attempt is in flight (a sync job runs alone)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._in_flight)

    def start(self, process: JobProcess) -> None:
        """Run ``process`` in a task of its own; its outcome is reported when it ends."""
        if self._loop is None:
            self._start_loop()
        assert self._loop is not None
        with self._changed:
            self._in_flight[process.id] = process
        self._loop.call_soon_threadsafe(self._create_task, process, time.time())

    def close(self) -> None:
        """Wait for the attempts in flight, then stop the loop and the watchdog."""
        self.wait_until_idle()
        self._closed.set()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    # Any thread -------------------------------------------------------------------------------

    def cancel(self, attempt_id: uuid.UUID, interruption: JobInterrupted) -> None:
        """Cancel the task of ``attempt_id``: a ``CancelledError`` whose message is
        ``interruption`` (``JobTimeout`` or ``JobCancelled``) is raised where it awaits."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the child is exiting
                self._loop.call_soon_threadsafe(self._cancel, attempt_id, interruption)

    # The loop's thread ------------------------------------------------------------------------

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="jobkit-async-jobs", daemon=True
        )
        self._thread.start()
        threading.Thread(target=self._watch, name="jobkit-loop-watchdog", daemon=True).start()

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(self._beat)
        loop.run_forever()

    def _beat(self) -> None:
        assert self._loop is not None
        self._turned = time.monotonic()
        self._loop.call_later(LOOP_BEAT, self._beat)

    def _create_task(self, process: JobProcess, wall_start: float) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self.runtime.arun_attempt(process))
        self._tasks[process.id] = task
        task.add_done_callback(lambda ended: self._ended(process, ended, wall_start))

    def _cancel(self, attempt_id: uuid.UUID, interruption: JobInterrupted) -> None:
        task = self._tasks.get(attempt_id)
        if task is not None:
            task.cancel(interruption)

    def _ended(self, process: JobProcess, task: asyncio.Task[Outcome], wall_start: float) -> None:
        del self._tasks[process.id]
        if task.cancelled():  # before its run began: ``arun_attempt`` itself never raises
            outcome = Outcome(
                status=Status.ERRORED,
                error="the job was cancelled before it began to run",
                error_type="CancelledError",
            )
        elif (error := task.exception()) is not None:
            outcome = Outcome(
                status=Status.ERRORED,
                error="".join(traceback.format_exception(error)),
                error_type=type(error).__name__,
            )
        else:
            outcome = task.result()
        self.report(process, outcome, wall_start, time.time())
        with self._changed:
            del self._in_flight[process.id]
            self._changed.notify_all()

    # The watchdog's thread --------------------------------------------------------------------

    def _watch(self) -> None:
        """Log, once per stall, when the loop has not turned for ``STALL_AFTER`` seconds while
        attempts are in flight: the job whose task holds the loop, and the others waiting."""
        reported: float | None = None
        while not self._closed.wait(LOOP_BEAT):
            turned = self._turned
            if reported == turned or time.monotonic() - turned < STALL_AFTER:
                continue
            with self._changed:
                waiting = dict(self._in_flight)
            if not waiting:
                continue
            reported = turned
            blocker = self._blocking_attempt()
            if blocker is not None:
                waiting.pop(blocker.id, None)
            logger.warning(
                "the event loop of this pool child has not turned for %.1f s: %s blocks it "
                "(a blocking call in async def run, such as time.sleep, blocking I/O or long "
                "CPU work: await instead, or use asyncio.to_thread); waiting behind it: %s",
                time.monotonic() - turned,
                f"{blocker.job_name} (attempt {blocker.id})" if blocker else "no job's task",
                ", ".join(f"{p.job_name} (attempt {p.id})" for p in waiting.values()) or "none",
            )

    def _blocking_attempt(self) -> JobProcess | None:
        """The attempt whose task the loop is running now (read from the watchdog's thread)."""
        assert self._loop is not None
        task = asyncio.current_task(self._loop)
        for attempt_id, candidate in list(self._tasks.items()):
            if candidate is task:
                return self._in_flight.get(attempt_id)
        return None
