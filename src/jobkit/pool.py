"""The worker's pool of child processes that run jobs.

Each child has its own pipe: the main process sends it batches of claimed attempts, and the child
sends back one outcome per attempt as soon as it ends. A child starts attempts in the order it
was given them: a sync job alone, async jobs (``async def run``) many at once on its event loop
(see ``async_runner``). A shared counter says how many attempts the child has started, so when a
child dies the main process knows exactly which attempts were running and which were never
started (they go back to the queue unchanged); each attempt is given a slot of a shared array
where the child writes when it started it. When the main process stops an attempt on purpose (a
job past its timeout, the end of a shutdown's grace period) it records why, so the attempt is
recorded for what happened to it rather than as LOST: a sync attempt by ending its child, an
async one by cancelling its task (and ending the child only if the task ignores that).

Children are started with ``spawn`` and rebuild their runtime from the worker's resolved settings.
On Linux they also die with the main process, so a killed worker leaves no job running behind it.
"""

from __future__ import annotations

import _signal
import collections
import contextlib
import enum
import itertools
import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.reduction
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from jobkit.errors import JobCancelled, JobInterrupted, JobkitError, JobTimeout
from jobkit.processes import (
    SAFE_PATH,
    configure_logging,
    die_with_parent,
    restore_safe_path,
    safe_path_for_children,
)
from jobkit.records import JobProcess, Outcome, Status
from jobkit.settings import Settings

logger = logging.getLogger("jobkit.worker")

_CONTEXT = multiprocessing.get_context("spawn")
ASKED_TO_STOP, ASKED_TO_CANCEL, ASKED_TO_TIME_OUT, ASKED_BY_OPERATOR = 1, 2, 3, 4
"""Values of a child's shared ``stopping`` flag: exit after the running attempt; end it now for a
shutdown (``JobCancelled``); end it now for its timeout (``JobTimeout``)."""
PREFETCH_HORIZON = 0.05
"""Seconds of work a pool child is given ahead, by the recent average run time: a job claimed
ahead starts within about this long, so jobs that idle peers could run now are not held back."""
PIPE_DEPTH = 16
"""Attempts a pool child holds at most (the one it runs included): the rest of what the worker
claimed ahead waits in the main process's backlog, for whichever child is free first, so one
slow attempt holds up only the few queued behind it in its child."""
BACKLOG_STALE = 2 * PREFETCH_HORIZON
"""Seconds the backlog may go without a child taking from it before the worker gives it back to
the queue (every child is busy with an attempt longer than the horizon): idle peers take it."""
IDLE_RESET = 1.0
"""Seconds without a job in flight after which the pool forgets the average run time, and
claims one job per child again until it learns the next one."""
RUN_TIME_WEIGHT = 0.3
"""Weight of the newest run in the average run time (an exponential moving average)."""
MAIN_STALE = 0.05
"""Seconds since the main process last showed it was answering (and reaching the database) after
which a child asks it again before starting a job: a job started while the main process is frozen
or cut from the database may never be marked started, and a rescue would then return it to the
queue as if it had never run."""
GATE_PATIENCE = 1.0
"""Seconds a child waits at the start gate before it logs why."""
GATE_POLL = 0.05
"""Seconds between two looks at the start gate, at most, by a child waiting at it."""
ALIVE = ("alive?",)
"""A child's question to the main process, which answers by renewing ``main_beat``."""
KILL_GRACE = 1.0
"""Seconds a run has to end after ``JobTimeout`` or ``JobCancelled`` was raised in it (on SIGTERM)
before its child is killed (SIGKILL); and that an async attempt's task has to end after it was
cancelled before its child is ended as for a sync attempt (its other async attempts are LOST)."""
ASYNC_SHARE_WEIGHT = 0.3
"""Weight of each newly claimed attempt in the share of async attempts the worker expects in its
next claim (an exponential moving average)."""


def _uuid_from_int(value: int) -> uuid.UUID:
    # What ``UUID.__setstate__`` does, without ``UUID(int=...)``'s checks of a value that was
    # a UUID's: a third of the time, three times an attempt in each pool child.
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made


def _reduce_uuid(value: uuid.UUID) -> tuple[Callable[[int], uuid.UUID], tuple[int]]:
    return _uuid_from_int, (value.int,)


# UUIDs cross the pool's pipes by the thousand (each claimed attempt's ids). Pickled as
# their integer they take half the time of pickle's own way (a class and a state dict): about
# 2 µs a claimed attempt of the main process's CPU. Only multiprocessing's pickler is told.
multiprocessing.reduction.ForkingPickler.register(uuid.UUID, _reduce_uuid)


class StopReason(enum.Enum):
    """Why the main process ended a child's running attempt."""

    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    OPERATOR = "operator"
    """An operator cancelled the job (``jobkit cancel``)."""


_ASKED = {
    StopReason.TIMEOUT: ASKED_TO_TIME_OUT,
    StopReason.CANCELLED: ASKED_TO_CANCEL,
    StopReason.OPERATOR: ASKED_BY_OPERATOR,
}
"""The ``stopping`` flag that tells a child why its running attempt is being ended."""


def interruption(reason: StopReason, attempt: JobProcess) -> JobInterrupted:
    """What is raised inside a run the main process ends: ``JobTimeout`` for its timeout, else
    ``JobCancelled``. A sync run gets it from the SIGTERM handler; an async run's task is
    cancelled with it as the message, and the hooks are given it in place of the
    ``CancelledError`` (see ``Runtime._arun_job``)."""
    error = JobTimeout if reason is StopReason.TIMEOUT else JobCancelled
    return error(why_ended(reason, attempt))


def why_ended(reason: StopReason, attempt: JobProcess) -> str:
    """The message of the ``JobTimeout`` or ``JobCancelled`` raised in an attempt the main
    process ends."""
    if reason is StopReason.TIMEOUT:
        return f"the run passed its timeout of {attempt.timeout:g} s"
    if reason is StopReason.OPERATOR:
        return "an operator cancelled this job"
    return "the worker is stopping and its shutdown grace period ran out"


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start children without importing the parent's ``__main__`` again.

    ``spawn`` re-imports the parent's main module in each child, which would run a user's script
    (or the ``jobkit`` command line) a second time. Children need nothing from it: they rebuild
    their runtime from settings and the ``imports`` setting.
    """
    main = sys.modules["__main__"]
    saved = {name: main.__dict__.pop(name) for name in ("__file__",) if name in main.__dict__}
    spec = getattr(main, "__spec__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        main.__dict__.update(saved)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stop_signals_ignored_by_children() -> Iterator[None]:
    """Start a child with SIGINT and SIGTERM ignored, so a Ctrl-C or a SIGTERM sent to the whole
    process group while it boots does not kill it (an ignored signal stays ignored across exec;
    the child sets its own handlers once it runs). The worker blocks them meanwhile, so one that
    arrives for it now stays pending and reaches its handler afterwards. The child inherits the
    block too (a signal mask also survives exec) and lifts it once its handlers are set; until
    it did, every child but the first (whose start also started multiprocessing's resource
    tracker, which unblocks them) could never be interrupted at a timeout or a shutdown."""
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


class PoolStartError(JobkitError):
    """A pool child could not start (its imports or plugins failed)."""


@attrs.define
class Finished:
    """An attempt a child ran to the end, with its wall-clock start and end, and why the main
    process ended it if it did (the run ended after ``JobTimeout`` or ``JobCancelled``)."""

    process: JobProcess
    outcome: Outcome
    started: float
    ended: float
    stopped: StopReason | None = None


@attrs.define
class Crashed:
    """What a dead child left: the attempts it was running (each with why the main process
    ended it, when it did), and the ones it never started."""

    exitcode: int | None
    running: list[tuple[JobProcess, StopReason | None]]
    unstarted: list[JobProcess]


_LENGTH = struct.Struct("!I")
READ_SIZE = 1 << 16
"""Bytes the main process reads from a child's pipe at once."""


def send_message(fileno: int, message: Any) -> None:
    """Write ``message`` to the main process: its pickle, after its length. A pool child's
    messages are small and many (an outcome per attempt), so they are framed here rather than
    by ``Connection.send``, which the main process would read with two reads a message."""
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    data = memoryview(_LENGTH.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fileno, data) :]


class Messages:
    """A pool child's messages as the main process reads them (see ``send_message``): every
    message that has arrived, read in one go rather than a readiness check and two reads
    each."""

    def __init__(self, fileno: int):
        self.fileno = fileno
        self._buffer = bytearray()
        self.ended = False
        """The child's end of the pipe is closed (it exited)."""

    def arrived(self, timeout: float = 0.0) -> list[Any]:
        """The messages that arrived, waiting up to ``timeout`` seconds for the first."""
        waited = False
        while not self.ended:
            if not select.select([self.fileno], [], [], 0 if waited else timeout)[0]:
                break
            waited = True
            try:
                chunk = os.read(self.fileno, READ_SIZE)
            except OSError:  # the child's end was reset
                chunk = b""
            if not chunk:
                self.ended = True
            self._buffer += chunk
        return self._complete()

    def _complete(self) -> list[Any]:
        messages = []
        view, start = memoryview(self._buffer), 0
        while len(view) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(view, start)
            end = start + _LENGTH.size + length
            if end > len(view):
                break
            messages.append(pickle.loads(view[start + _LENGTH.size : end]))
            start = end
        view.release()
        del self._buffer[:start]
        return messages


class Child:
    """The main process's handle on one pool child."""

    def __init__(
        self,
        number: int,
        settings: Settings,
        quota: int | None,
        log_level: int,
        gate: tuple[Any, Any],
    ):
        self.number = number
        self.quota = quota
        self.async_concurrency = settings.worker_async_concurrency
        capacity = PIPE_DEPTH + self.async_concurrency
        self.connection, child_end = _CONTEXT.Pipe(duplex=True)
        self.started = _CONTEXT.RawValue("q", 0)
        self.started_at = _CONTEXT.RawArray("d", capacity)
        self.stopping = _CONTEXT.RawValue("b", 0)
        self.process = _CONTEXT.Process(
            target=child_main,
            args=(
                settings,
                child_end,
                self.started,
                self.started_at,
                self.stopping,
                gate,
                quota,
                log_level,
                os.environ.get(SAFE_PATH),
            ),
            name=f"jobkit-child-{number}",
            daemon=True,
        )
        with _main_module_hidden(), _stop_signals_ignored_by_children(), safe_path_for_children():
            self.process.start()
        child_end.close()
        self.messages = Messages(self.connection.fileno())
        self.assigned: dict[uuid.UUID, JobProcess] = {}
        """The attempts the child holds, by id, in the order it was given them (and starts
        them)."""
        self.asynchronous: set[uuid.UUID] = set()
        """The ids of the held attempts that are async."""
        self._slots: dict[uuid.UUID, int] = {}
        self._free_slots = list(range(capacity))
        self._unsent: list[tuple[int, JobProcess]] = []
        self.reported = 0
        self.dispatched = 0
        self.ready = False
        self.stop_reasons: dict[uuid.UUID, StopReason] = {}
        """Why the main process is ending held attempts, by id."""
        self.cancelled_at: dict[uuid.UUID, float] = {}
        """When the async attempts being ended were cancelled (monotonic), by id."""
        self.terminated_at: float | None = None
        """When the main process asked the child itself to end (SIGTERM)."""

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def room(self, depth: int, now: float, asynchronous: bool = False) -> int:
        """How many more sync (or async) attempts this child may be given now: up to ``depth``
        held in all, or ``async_concurrency + depth - 1`` while it holds only async attempts
        (they run at once); no sync one while it holds an async one, which it would wait for;
        and none while a sync attempt it runs has run longer than ``PREFETCH_HORIZON`` (a job
        queued behind it would wait that long)."""
        if not self.ready or self.stopping.value or self.terminated_at is not None:
            return 0
        for process, since in self.running(limit=1):  # a sync attempt runs alone
            if process.id not in self.asynchronous and now - since > PREFETCH_HORIZON:
                return 0
        if not asynchronous:
            limit = 0 if self.asynchronous else depth
        elif len(self.asynchronous) == len(self.assigned):
            limit = self.async_concurrency + depth - 1
        else:
            limit = depth
        room = limit - len(self.assigned)
        if self.quota is not None:
            room = min(room, self.quota - self.dispatched)
        return max(0, room)

    def hold(self, process: JobProcess, asynchronous: bool) -> None:
        """Give the child ``process`` (sent with the others held since, by ``send``)."""
        slot = self._free_slots.pop()
        self._slots[process.id] = slot
        if asynchronous:
            self.asynchronous.add(process.id)
        self.assigned[process.id] = process
        self.dispatched += 1
        self._unsent.append((slot, process))

    def send(self) -> None:
        """Send the child the attempts held since the last ``send``, in one message."""
        batch, self._unsent = self._unsent, []
        try:
            self.connection.send(batch)
        except (BrokenPipeError, ConnectionResetError, OSError):
            logger.warning("pool child %s is gone; its attempts are recovered", self.number)

    def release(self, process: JobProcess) -> StopReason | None:
        """Forget ``process``, which ended; return why the main process ended it, if it did."""
        del self.assigned[process.id]
        self._free_slots.append(self._slots.pop(process.id))
        self.asynchronous.discard(process.id)
        self.cancelled_at.pop(process.id, None)
        return self.stop_reasons.pop(process.id, None)

    @property
    def running_count(self) -> int:
        """How many attempts the child runs now: it started them and has not reported them."""
        return self.started.value - self.reported

    def running(self, limit: int | None = None) -> list[tuple[JobProcess, float]]:
        """The attempts running now (the first ``limit`` of them), each with its monotonic start
        time: the child starts them in order, so they are the first ``running_count`` it
        holds."""
        count = self.running_count
        if limit is not None:
            count = min(count, limit)
        return [
            (process, self.started_at[self._slots[process.id]])
            for process in itertools.islice(self.assigned.values(), count)
        ]

    def ending(self, process: JobProcess) -> bool:
        """Whether the main process is ending ``process`` already (or the whole child)."""
        return process.id in self.stop_reasons or self.terminated_at is not None

    def ask_to_stop(self) -> None:
        """Exit after the attempts running now; attempts not started come back as unstarted."""
        self.stopping.value = max(self.stopping.value, ASKED_TO_STOP)
        with contextlib.suppress(OSError):
            self.connection.send(None)

    def terminate(self, reason: StopReason, attempt: JobProcess) -> None:
        """End ``attempt``, a running one. An async attempt: cancel its task (its ``finally``
        blocks run), and end the child if the task has not ended after ``KILL_GRACE``. A sync
        one: SIGTERM, which raises ``JobTimeout`` or ``JobCancelled`` inside it, then SIGKILL
        after ``KILL_GRACE``; the child exits after it. (If the child moved on to another
        attempt meanwhile, that one is recorded LOST.)"""
        if self.ending(attempt):
            return
        self.stop_reasons[attempt.id] = reason
        if attempt.id in self.asynchronous:
            self.cancelled_at[attempt.id] = time.monotonic()
            with contextlib.suppress(OSError):
                self.connection.send(("cancel", attempt.id, interruption(reason, attempt)))
            return
        self._end(reason)

    def _end(self, reason: StopReason) -> None:
        self.terminated_at = time.monotonic()
        self.stopping.value = _ASKED[reason]
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()

    def kill_if_overdue(self, now: float) -> None:
        if self.terminated_at is not None:
            if now - self.terminated_at >= KILL_GRACE:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            return
        for attempt_id, cancelled in self.cancelled_at.items():
            if now - cancelled >= KILL_GRACE:
                logger.warning(
                    "pool child %s: async attempt %s did not end within %g s of its task's "
                    "cancellation; ending the child (its other async attempts are LOST)",
                    self.number,
                    attempt_id,
                    KILL_GRACE,
                )
                self._end(self.stop_reasons[attempt_id])
                return

    def deadlines(self) -> list[float]:
        """When ``kill_if_overdue`` has something to do."""
        if self.terminated_at is not None:
            return [self.terminated_at + KILL_GRACE]
        return [cancelled + KILL_GRACE for cancelled in self.cancelled_at.values()]


class WorkerPool:
    """The pool children of one worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int,
        max_pending: int,
        max_jobs_per_child: int | None,
        is_async: Callable[[str], bool],
        log_level: int = logging.INFO,
    ):
        self.settings = settings
        self.is_async = is_async
        """Whether a job name's attempts are async (``Runtime.is_async``)."""
        self.size = size
        self.max_pending = max_pending
        self.max_jobs_per_child = max_jobs_per_child
        self.log_level = log_level
        self.children: list[Child] = []
        self.closing = False
        self.lease = _CONTEXT.RawValue("d", -math.inf)
        """The lease deadline (monotonic, shared with every child): no child starts a job after
        it. The worker's heartbeat renews it; until the first renewal, nothing starts."""
        self.main_beat = _CONTEXT.RawValue("d", -math.inf)
        """When (monotonic) the main process last showed it answers and reaches the database;
        a child starts a job only within ``MAIN_STALE`` of it (see ``StartGate``)."""
        self.average_run: float | None = None
        """Seconds the recent attempts ran (a moving average); None until one has ended."""
        self.async_share = 0.0
        """The share of async attempts in what the worker claimed lately (a moving average)."""
        self.backlog: collections.deque[JobProcess] = collections.deque()
        """Attempts claimed ahead that no child holds yet, in claim order."""
        self._backlog_taken = time.monotonic()
        """When a child last took from the backlog (or it last became non-empty)."""
        self._last_busy = time.monotonic()
        self._numbers = iter(range(1, 1_000_000_000))
        self._start_failures = 0
        self._respawn_at = 0.0

    def spawn(self) -> None:
        """Start every child; each imports the jobs and plugins while the worker goes on."""
        self.children = [self._spawn() for _ in range(self.size)]

    def wait_until_ready(self, timeout: float = 60) -> None:
        """Wait until every child has imported the jobs and plugins."""
        deadline = time.monotonic() + timeout
        for child in self.children:
            self._await_ready(child, deadline)

    def _spawn(self) -> Child:
        gate = (self.lease, self.main_beat)
        return Child(
            next(self._numbers), self.settings, self.max_jobs_per_child, self.log_level, gate
        )

    def renew_lease(self, deadline: float) -> None:
        """Let the children start jobs until ``deadline`` (monotonic)."""
        self.lease.value = deadline

    def answer(self) -> None:
        """Show the children that the main process answers and reaches the database."""
        self.main_beat.value = time.monotonic()

    def _await_ready(self, child: Child, deadline: float) -> None:
        messages: list[Any] = []
        while not messages and not child.messages.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PoolStartError(f"pool child {child.number} did not start within 60 seconds")
            messages = child.messages.arrived(remaining)
        if not messages:
            raise PoolStartError(
                f"pool child {child.number} exited while starting (exit code "
                f"{child.process.exitcode})"
            )
        message = messages[0]
        if message[0] != "ready":
            raise PoolStartError(f"pool child {child.number} failed to start:\n{message[1]}")
        child.ready = True

    # Work ------------------------------------------------------------------------------------

    def depth(self, now: float) -> int:
        """How many attempts the worker claims ahead per child (the one it runs included): as
        many as a child runs in ``PREFETCH_HORIZON`` at the recent average, between 1 and
        ``max_pending``; 1 while the average is unknown, so fresh workers share slow jobs with
        their peers."""
        if self.in_flight:
            self._last_busy = now
        elif now - self._last_busy > IDLE_RESET:
            self.average_run = None
        if self.average_run is None:
            return 1
        return max(1, min(self.max_pending, int(PREFETCH_HORIZON / max(self.average_run, 1e-6))))

    def free_slots(self) -> int:
        """How many attempts to claim now: each child's share of ``depth`` it has room for (of
        async attempts and of sync ones, mixed in the share claimed lately), less what waits in
        the backlog."""
        now = time.monotonic()
        depth = self.depth(now)
        share = self.async_share
        room = sum(
            round(
                share * child.room(depth, now, asynchronous=True)
                + (1 - share) * child.room(depth, now)
            )
            for child in self.children
        )
        return max(0, room - len(self.backlog))

    @property
    def in_flight(self) -> int:
        return sum(len(child.assigned) for child in self.children) + len(self.backlog)

    def dispatch(self, processes: Iterable[JobProcess]) -> list[JobProcess]:
        """Take claimed attempts into the backlog and hand children what they have room for;
        return them all instead when no child is ready (every child died while they were
        claimed)."""
        processes = list(processes)
        if not any(child.ready for child in self.children):
            return processes
        if processes and not self.backlog:
            self._backlog_taken = time.monotonic()
        for process in processes:
            asynchronous = float(self.is_async(process.job_name))
            self.async_share += ASYNC_SHARE_WEIGHT * (asynchronous - self.async_share)
        self.backlog.extend(processes)
        self.feed()
        return []

    def feed(self) -> None:
        """Give the ready children that hold half their ``PIPE_DEPTH`` or less sync attempts
        from the backlog, each to the least loaded child with room for it (see
        ``Child.room``), so a few attempts are shared between idle children rather than all
        given to the first; one message per child. An attempt no child has room for stays in
        the backlog, and those behind it may go ahead."""
        if not self.backlog:
            return
        now = time.monotonic()
        pipe = min(PIPE_DEPTH, self.depth(now))
        takers = [
            child
            for child in self.children
            if len(child.assigned) - len(child.asynchronous) <= pipe // 2
        ]
        given: set[Child] = set()
        kept: collections.deque[JobProcess] = collections.deque()
        # Each child's room for each kind, asked once: holding an attempt of a kind leaves one
        # less room for that kind (see ``Child.room``) and may change the other's.
        rooms: dict[tuple[Child, bool], int] = {}

        def room(child: Child, asynchronous: bool) -> int:
            key = (child, asynchronous)
            if key not in rooms:
                rooms[key] = child.room(pipe, now, asynchronous)
            return rooms[key]

        while self.backlog and takers:
            process = self.backlog.popleft()
            asynchronous = self.is_async(process.job_name)
            fits = [child for child in takers if room(child, asynchronous)]
            if not fits:
                kept.append(process)
                takers = [child for child in takers if room(child, False) or room(child, True)]
                continue
            child = min(fits, key=lambda c: len(c.assigned))
            child.hold(process, asynchronous)
            rooms[child, asynchronous] -= 1
            rooms.pop((child, not asynchronous), None)
            given.add(child)
        kept.extend(self.backlog)
        self.backlog = kept
        for child in given:
            child.send()
            self._backlog_taken = now

    def backlog_deadline(self) -> float | None:
        """When the backlog goes stale if no child takes from it (None when it is empty)."""
        return self._backlog_taken + BACKLOG_STALE if self.backlog else None

    def take_backlog(self, *, stale_only: bool = False) -> list[JobProcess]:
        """Empty the backlog and return its attempts (never started: they go back to the
        queue); with ``stale_only``, only once no child has taken from it for
        ``BACKLOG_STALE`` seconds."""
        deadline = self.backlog_deadline()
        if deadline is None or (stale_only and time.monotonic() < deadline):
            return []
        taken = list(self.backlog)
        self.backlog.clear()
        return taken

    def running(self) -> Iterator[tuple[Child, JobProcess, float]]:
        """Each attempt running in a child, with the child and its monotonic start time."""
        for child in self.children:
            for process, since in child.running():
                yield child, process, since

    def waitables(self) -> list[Any]:
        objects: list[Any] = []
        for child in self.children:
            objects.append(child.connection)
            objects.append(child.sentinel)
        return objects

    def collect(self, ready: Iterable[Any]) -> tuple[list[Finished], list[Crashed]]:
        """Read the outcomes that arrived, and what children that exited left behind; start
        replacements for children that exited (unless the pool is closing)."""
        ready = set(ready)
        finished: list[Finished] = []
        crashed: list[Crashed] = []
        for child in list(self.children):
            if child.connection in ready or child.sentinel in ready:
                self._read(child, finished)
            if child.sentinel in ready:
                child.process.join()
                self.children.remove(child)
                leftovers = self._leftovers(child)
                if leftovers is not None:
                    crashed.append(leftovers)
                if not child.ready:
                    self._start_failed()
        self._replace_missing()
        return finished, crashed

    def _start_failed(self) -> None:
        """A replacement died before it was ready (its imports fail, say): try again later,
        waiting longer each time, rather than spawning in a tight loop or giving up."""
        self._start_failures += 1
        delay = min(60.0, 2.0 ** (self._start_failures - 1))
        self._respawn_at = time.monotonic() + delay
        logger.error("a pool child failed to start; starting another in %g s", delay)

    def _replace_missing(self) -> None:
        """Start children up to the pool's size. They get work once they report ready (the
        loop does not wait for them)."""
        if self.closing or time.monotonic() < self._respawn_at:
            return
        while len(self.children) < self.size:
            self.children.append(self._spawn())

    def next_respawn(self) -> float | None:
        """When the loop must wake to start a missing child, if one is waiting for a retry."""
        if self.closing or len(self.children) >= self.size:
            return None
        return self._respawn_at

    def _read(self, child: Child, finished: list[Finished]) -> None:
        """Read every message waiting in the child's pipe: its start-up report, then outcomes."""
        for message in child.messages.arrived():
            if not child.ready:
                self._started(child, message)
                continue
            if message == ALIVE:
                continue  # the worker answers once its loop goes round (``answer``)
            (
                number,
                status,
                error,
                error_type,
                rerun_in,
                rerun_uses_retry,
                output,
                started,
                ended,
            ) = message
            process = child.assigned.get(_uuid_from_int(number))
            if process is None:
                # Only a process that is not the pool child (a job's fork that went on running
                # jobkit's loop) could send this; the child itself exits such forks.
                logger.error(
                    "pool child %s sent an outcome for attempt %s, which it was not running; "
                    "ignored",
                    child.number,
                    _uuid_from_int(number),
                )
                continue
            asynchronous = process.id in child.asynchronous
            stopped = child.release(process)
            child.reported += 1
            outcome = Outcome(
                status=Status(status),
                error=error,
                error_type=error_type,
                rerun_in=rerun_in,
                rerun_uses_retry=rerun_uses_retry,
                output=output,
            )
            finished.append(Finished(process, outcome, started, ended, stopped))
            if not asynchronous:  # an async run does not hold its child
                self._learn(ended - started)

    def _learn(self, run_time: float) -> None:
        run_time = max(0.0, run_time)
        if self.average_run is None:
            self.average_run = run_time
        else:
            self.average_run += RUN_TIME_WEIGHT * (run_time - self.average_run)

    def _started(self, child: Child, message: tuple[str, ...]) -> None:
        if message[0] == "ready":
            child.ready = True
            self._start_failures = 0
        else:
            logger.error("pool child %s failed to start:\n%s", child.number, message[1])

    def _leftovers(self, child: Child) -> Crashed | None:
        if not child.assigned:
            if child.process.exitcode not in (0, None) and not child.stopping.value:
                logger.warning(
                    "pool child %s exited with code %s while idle",
                    child.number,
                    child.process.exitcode,
                )
            return None
        running = [(process, child.stop_reasons.get(process.id)) for process, _ in child.running()]
        unstarted = list(itertools.islice(child.assigned.values(), len(running), None))
        child.assigned.clear()
        return Crashed(child.process.exitcode, running, unstarted)

    def kill_overdue(self) -> None:
        """SIGKILL children that were asked to terminate and are still alive after the grace."""
        now = time.monotonic()
        for child in self.children:
            child.kill_if_overdue(now)

    def next_kill_deadline(self) -> float | None:
        return min((when for child in self.children for when in child.deadlines()), default=None)

    # Stopping --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every child to exit after the attempt it is running, and replace none of them;
        attempts not started come back through ``collect`` as unstarted."""
        self.closing = True
        for child in self.children:
            child.ask_to_stop()

    def renew(self) -> None:
        """Replace every child once it has finished its running attempt, dropping the attempts
        it holds but has not started (the worker lost them; they come back as unstarted), and
        the backlog (lost too)."""
        self.backlog.clear()
        for child in self.children:
            child.ask_to_stop()

    def terminate_running(self, reason: StopReason) -> list[JobProcess]:
        """End every running attempt now (see ``Child.terminate``); return those attempts."""
        ended = []
        for child, process, _ in list(self.running()):
            child.terminate(reason, process)
            ended.append(process)
        return ended

    @property
    def alive(self) -> bool:
        return bool(self.children)

    def kill_all(self) -> None:
        """Kill every child at once (the worker is exiting and has recorded their attempts)."""
        for child in self.children:
            if child.process.is_alive():
                child.process.kill()
        for child in self.children:
            child.process.join(timeout=5)
            child.connection.close()
        self.children.clear()


def describe_exit(exitcode: int | None) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` for a child's exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# The child side -------------------------------------------------------------------------------


_handler_of: Callable[[int], Any] = _signal.getsignal
"""The C function ``signal.getsignal`` wraps: the wrapper tries to make the handler an enum
member, which for a callable handler raises and catches a ValueError, 8 µs an attempt."""


class _Interrupter:
    """A pool child's SIGTERM handler. When the worker asked to end the running attempt (its
    timeout, the end of a shutdown's grace), it raises ``JobTimeout`` or ``JobCancelled`` inside
    the run, once, so its ``finally`` blocks run; outside a run it lets SIGTERM kill the child.
    A SIGTERM the worker did not ask for (systemd's ``KillMode=control-group``, ``kill -TERM
    -pgid``) is the worker's to handle: it stops claiming and lets running jobs finish."""

    def __init__(self, stopping: Any):
        self.stopping = stopping
        self.attempt: JobProcess | None = None
        self.interrupted = False

    def __call__(self, signum: int, frame: Any) -> None:
        asked = self.stopping.value
        if asked < ASKED_TO_CANCEL:
            return
        if self.attempt is not None and not self.interrupted:
            self.interrupted = True
            reason = next(reason for reason, value in _ASKED.items() if value == asked)
            raise interruption(reason, self.attempt)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def run(self, runtime: Any, process: JobProcess) -> Outcome:
        """``runtime.run_attempt(process)``, interruptible by the worker; the handler is put
        back afterwards if the job replaced it."""
        self.attempt = process
        try:
            return runtime.run_attempt(process)
        except JobInterrupted as error:  # raised while jobkit's own code, not run(), ran
            text = "".join(traceback.format_exception(error))
            return Outcome(status=Status.ERRORED, error=text, error_type=type(error).__name__)
        finally:
            self.attempt = None
            if _handler_of(signal.SIGTERM) is not self:
                signal.signal(signal.SIGTERM, self)


def child_main(
    settings: Settings,
    connection: multiprocessing.connection.Connection,
    started: Any,
    started_at: Any,
    stopping: Any,
    gate: tuple[Any, Any],
    quota: int | None,
    log_level: int,
    safe_path: str | None,
) -> None:
    """A pool child: build the runtime, then run attempts until told to stop.

    A reader thread keeps the pipe drained so the main process never blocks sending work to a
    child busy with a long job, and passes on the main process's requests to cancel an async
    attempt. Signals are the main process's business: the child ignores SIGINT (Ctrl-C reaches
    the whole process group) and any SIGTERM the worker did not ask for, and the main process
    stops it explicitly. ``safe_path`` is the worker's own ``PYTHONSAFEPATH``, put back for the
    jobs (the child booted with it set: see ``safe_path_for_children``).

    Attempts start in the order they came: a sync one once no async one is in flight, and runs
    here; an async one once the loop has room (``worker_async_concurrency``), and runs on the
    ``AsyncRunner``'s loop. When asked to stop, the child waits for the async attempts in flight.
    """
    die_with_parent()
    restore_safe_path(safe_path)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupter = _Interrupter(stopping)
    signal.signal(signal.SIGTERM, interrupter)
    # Started with them blocked (see _stop_signals_ignored_by_children): its handlers are set.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    configure_logging(log_level, settings.log_format)
    fileno = connection.fileno()
    from jobkit.async_runner import AsyncRunner
    from jobkit.runtime import Runtime, set_runtime

    try:
        runtime = Runtime.from_settings(settings, resolved=True)
        runtime.import_jobs()
        runtime.serializer  # noqa: B018 - fail at start, not at the first job
        set_runtime(runtime)
    except BaseException as error:
        send_message(fileno, ("failed", "".join(traceback.format_exception(error))))
        return
    send_message(fileno, ("ready",))

    sending = threading.Lock()

    def send(message: Any) -> None:
        with sending:
            send_message(fileno, message)

    def report(process: JobProcess, outcome: Outcome, wall_start: float, wall_end: float) -> None:
        # Plain values pickle far faster than the record; the main process rebuilds it.
        send(
            (
                process.id.int,
                outcome.status.value,
                outcome.error,
                outcome.error_type,
                outcome.rerun_in,
                outcome.rerun_uses_retry,
                outcome.output,
                wall_start,
                wall_end,
            )
        )

    runner = AsyncRunner(runtime, settings.worker_async_concurrency, report)
    inbox: collections.deque[tuple[int, JobProcess] | None] = collections.deque()
    arrived = threading.Condition()

    def read() -> None:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                message = ()
            if isinstance(message, tuple) and message:
                runner.cancel(*message[1:])  # ("cancel", attempt id, interruption)
                continue
            with arrived:
                inbox.extend(message or [None])
                arrived.notify()
            if message == ():
                return

    threading.Thread(target=read, name="jobkit-child-reader", daemon=True).start()
    start_gate = StartGate(send, stopping, *gate)
    pool_child = os.getpid()
    os.register_at_fork(after_in_child=_forked_by_a_job)
    done = 0
    while quota is None or done < quota:
        with arrived:
            while not inbox:
                arrived.wait()
            given = inbox.popleft()
        if given is None or stopping.value:
            break
        slot, process = given
        asynchronous = runtime.is_async(process.job_name)
        if asynchronous:
            runner.wait_for_room()
        else:
            runner.wait_until_idle()
        if not start_gate.open():
            break
        started_at[slot] = time.monotonic()
        started.value += 1
        done += 1
        if asynchronous:
            runner.start(process)
            continue
        wall_start = time.time()
        outcome = interrupter.run(runtime, process)
        if os.getpid() != pool_child:
            # A job forked and its copy returned from run() without exiting: it must not go on
            # as a second pool child (sending outcomes, running the jobs queued here).
            os._exit(0)
        report(process, outcome, wall_start, time.time())
    runner.close()
    runtime.close()


class StartGate:
    """Whether a pool child may start its next job. Two things must hold: the worker's lease
    (``lease``, renewed by its heartbeat) has not run out, so no peer can have declared the
    worker dead and given the job away; and the main process answered within ``MAIN_STALE``
    (``main_beat``), so it will mark the job started in the database (a frozen main process,
    or one cut from the database, could not, and a rescue would return the job to the queue as
    if it had never run). The child asks the main process when its last answer is stale."""

    def __init__(self, send: Callable[[Any], None], stopping: Any, lease: Any, main_beat: Any):
        self.send = send
        self.stopping = stopping
        self.lease = lease
        self.main_beat = main_beat

    def open(self) -> bool:
        """True once the next job may start; False if the child is asked to stop first."""
        asked = waited_from = -math.inf
        pause, said_why = 0.0005, False
        while not self.stopping.value:
            now = time.monotonic()
            leased = now <= self.lease.value
            answered = now - self.main_beat.value <= MAIN_STALE
            if leased and answered:
                if said_why:
                    logger.info("this pool child starts jobs again")
                return True
            if waited_from == -math.inf:
                waited_from = now
            if not said_why and now - waited_from > GATE_PATIENCE:
                logger.warning(
                    "this pool child starts no job until its worker %s",
                    "answers (its main process is frozen, or cut from the database)"
                    if not answered
                    else "renews its heartbeat (a peer may rescue the worker's jobs)",
                )
                said_why = True
            if not answered and now - asked > MAIN_STALE:
                with contextlib.suppress(OSError):
                    self.send(ALIVE)
                asked = now
            time.sleep(pause)
            pause = min(pause * 2, GATE_POLL)
        return False


def _forked_by_a_job() -> None:
    """In a process a job forked: the pool child ignores SIGTERM unless its worker asked, and
    the fork must not inherit that, or it could outlive the job as an orphan nothing can stop."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
