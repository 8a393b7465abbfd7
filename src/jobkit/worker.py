"""The worker: one main process that claims jobs, hands them to a pool of child processes and
writes their results, and keeps a heartbeat row so other workers can tell it is alive.

The main thread is a loop around ``multiprocessing.connection.wait``: it wakes for an outcome
from a child, a child's exit, a LISTEN/NOTIFY wake-up, a signal, the end of a database round
trip, or a timer (the poll fallback, the heartbeat, stats). The round trip that writes finished
results and claims more jobs runs on one database thread, so the children keep working while it
is in flight: each round trip carries every outcome that arrived during the previous one, and
claims as many jobs as there are free slots.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import itertools
import logging
import math
import os
import random
import select
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from jobkit.errors import StoreDataError, StoreError, StoreUnavailable
from jobkit.housekeeping import ResultsRetention, StatsReporter, StoreUpkeep
from jobkit.liveness import DatabaseClock, Heartbeat, Rescuer
from jobkit.plugins import notify
from jobkit.pool import Crashed, Finished, StopReason, WorkerPool, describe_exit
from jobkit.records import (
    Completion,
    FinishReport,
    JobProcess,
    JobResult,
    Outcome,
    Status,
    WorkerInfo,
)
from jobkit.runtime import Runtime, held_rerun_start
from jobkit.services import WorkerService
from jobkit.store import Store
from jobkit.wakeups import Prober, Wakeups

logger = logging.getLogger("jobkit.worker")
T = TypeVar("T")

MAX_BACKOFF = 5.0
MAX_START_BACKOFF = 30.0
"""Seconds at most between two tries to reach the database while the worker starts."""
START_MARK_DELAY = 0.01
"""Seconds within which the database learns that an attempt started running (so that if this
worker dies, its peers record it LOST instead of running it again as if it never started)."""
ABORTED_WAIT = 10.0
"""Seconds a stopping worker waits for ``on_aborted`` calls still running."""
ROUND_TRIP_TEXT = 4_000_000
"""Characters of error and output text one round trip carries at most (each is bounded by the
``error_max_length`` and ``output_max_length`` settings); the results beyond wait for the next
round trip."""
LOGGED_ERROR = 300
"""Characters of an error's last line a failed attempt's log line shows."""


@attrs.define
class WorkerOptions:
    """A worker's flags, each defaulting to its ``worker_*`` setting."""

    queues: list[str]
    max_processes: int
    max_jobs_per_process: int | None
    max_pending_per_process: int
    stats_every: float
    poll_interval: float
    shutdown_timeout: float
    rate_limit: float = 0
    """Seconds at least between two claims, each of one job (0: claims are not spaced)."""
    burst: bool = False

    @classmethod
    def from_settings(cls, runtime: Runtime, *, burst: bool = False) -> WorkerOptions:
        settings = runtime.settings
        return cls(
            queues=list(settings.worker_queues),
            max_processes=settings.worker_max_processes or available_cpus(),
            max_jobs_per_process=settings.worker_max_jobs_per_process,
            max_pending_per_process=settings.worker_max_pending_per_process,
            stats_every=settings.worker_stats_every,
            poll_interval=settings.worker_poll_interval,
            shutdown_timeout=settings.shutdown_timeout,
            rate_limit=settings.worker_rate_limit,
            burst=burst,
        )


def available_cpus() -> int:
    """CPUs this process may run on (honours affinity and cgroup cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def unwritable(completion: Completion, error: Exception) -> Outcome:
    """What to record for an attempt whose result the database refused: ERRORED without a
    retry, saying what the attempt's outcome was and why it could not be written (in ASCII, which
    any database takes)."""
    outcome = completion.outcome
    shown = f"{outcome.status.value} {outcome.error_type}".strip()
    detail = outcome.error[:2000].encode("ascii", "backslashreplace").decode("ascii")
    cause = f"{type(error).__name__}: {error}"[:2000].encode("ascii", "backslashreplace")
    return Outcome(
        status=Status.ERRORED,
        error=(
            f"the result of this attempt ({shown}) could not be written: {cause.decode('ascii')}"
            + (f"\n\nits error began:\n{detail}" if detail else "")
        ).replace("\x00", "\\x00"),
        error_type="ResultNotWritten",
    )


def shown(text: str) -> str:
    """``text`` as a log line may show it: quoted and escaped when it holds a newline or another
    character that could forge a line (a job name is whatever a row says)."""
    return text if text.isprintable() else repr(text)


FAILED = (Status.ERRORED, Status.LOST)
"""Statuses whose attempt-end line is a WARNING (the others' is INFO)."""


def _log_attempt_end(completion: Completion, rerun_id: uuid.UUID | None) -> None:
    """Log the one line of an attempt whose result was written: its job, the job's id, the
    attempt, the status, how long it ran and how long it waited once ready (when it started),
    and for a failure its error's last line and whether it is retried. The same figures go on
    the record as ``jobkit_*`` attributes, for the JSON log format. It runs for every job: the
    message is formatted only by a handler that shows it."""
    process, outcome = completion.process, completion.outcome
    status = outcome.status
    level = logging.WARNING if status in FAILED else logging.INFO
    if not logger.isEnabledFor(level):
        return
    message = "%s %s (attempt %d of %d) %s"
    args: list[Any] = [
        shown(process.job_name),
        process.job_id,  # the id every attempt shares, as on the job's own log lines
        process.retry_attempt + 1,
        process.retries + 1,
        status.value,
    ]
    duration = queue_wait = None
    if completion.started_at is not None:
        duration = (completion.ended_at - completion.started_at).total_seconds()
        message += " in %.3f s"
        args.append(duration)
        if process.start_at is not None:
            # By the database's clock both, but the start is the worker's estimate of it.
            queue_wait = max(0.0, (completion.started_at - process.start_at).total_seconds())
            message += ", waited %.3f s"
            args.append(queue_wait)
    if status in FAILED:
        last_line = shown(outcome.error.strip().rpartition("\n")[2][:LOGGED_ERROR])
        message += ": %s; %s"
        args += [
            last_line or outcome.error_type,
            f"retry {rerun_id} enqueued" if rerun_id else "no retry",
        ]
    elif rerun_id is not None:
        message += "; runs again as %s"
        args.append(rerun_id)
    logger.log(
        level,
        message,
        *args,
        extra={
            "jobkit_job": process.job_name,
            "jobkit_job_id": process.job_id,
            "jobkit_attempt": process.retry_attempt + 1,
            "jobkit_attempt_id": process.id,
            "jobkit_context": "",  # the message names the job already
            "jobkit_status": status.value,
            "jobkit_duration": duration,
            "jobkit_queue_wait": queue_wait,
        },
    )


class Readiness:
    """``multiprocessing.connection.wait`` with one ``poll`` object kept across calls: the
    loop waits thousands of times a second, and building a selector each time is costly."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._objects: dict[int, Any] = {}

    def wait(self, objects: Sequence[Any], timeout: float) -> list[Any]:
        wanted = {obj if isinstance(obj, int) else obj.fileno(): obj for obj in objects}
        if wanted.keys() != self._objects.keys():
            for fd in self._objects.keys() - wanted.keys():
                self._poll.unregister(fd)
            for fd in wanted.keys() - self._objects.keys():
                self._poll.register(fd, select.POLLIN)
        self._objects = wanted
        events = self._poll.poll(math.ceil(timeout * 1000))
        return [self._objects[fd] for fd, _ in events]


@attrs.define
class RoundTrip:
    """A write-results-and-claim call in flight on the database thread."""

    completions: list[Completion]
    limit: int
    started: list[tuple[uuid.UUID, datetime.datetime]]
    future: concurrent.futures.Future[tuple[FinishReport, list[JobProcess]]]
    asked_at: datetime.datetime
    """When it was handed to the database thread, by the database's clock (before its claim)."""
    asked_again: bool = False
    """A wake-up came while it was in flight: its claim may have looked before the job did."""


class StoppedWhileStarting(Exception):
    """A signal stopped the worker while it waited for the database to answer at start-up."""


class Worker:
    """Runs jobs from ``options.queues`` until stopped by a signal (or, in burst mode, until
    no job is ready and none is in flight)."""

    def __init__(self, runtime: Runtime, options: WorkerOptions):
        self.runtime = runtime
        self.options = options
        self.id = uuid.uuid4()
        self.clock = DatabaseClock()
        self.stopping = False
        self.info = WorkerInfo(
            id=self.id, hostname=socket.gethostname(), pid=os.getpid(), queues=list(options.queues)
        )
        self.wakeups = Wakeups(runtime.store, options.queues, control=f"jobkit cancel {self.id}")
        self.pool: WorkerPool | None = None
        self.heartbeat = Heartbeat(
            runtime.store,
            self.info,
            interval=runtime.settings.heartbeat_interval,
            timeout=runtime.settings.heartbeat_timeout,
            clock=self.clock,
            wake=self.wake,
        )
        self.services: list[WorkerService] = []
        self._services_stopped = False
        self._pending: list[Completion] = []
        self._round_trip: RoundTrip | None = None
        self._database_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jobkit-database"
        )
        # on_aborted calls are user code: each runs on a daemon thread of its own, so one that
        # hangs holds up neither the sweeps nor the worker's exit.
        self._aborted_calls: list[threading.Thread] = []
        self._done = Counter[Status]()
        # Attempts of this worker an operator cancelled (and who), and the lookup in flight.
        self._cancels: dict[uuid.UUID, str] = {}
        self._cancel_lookup: concurrent.futures.Future[dict[uuid.UUID, str]] | None = None
        # How long until the next scheduled job, asked after a claim came up short (and when).
        self._next_start_lookup: tuple[float, concurrent.futures.Future[float | None]] | None = None
        self._done_lock = threading.Lock()
        self._failures = 0
        self._backoff_until = 0.0
        self._shutdown_deadline = float("inf")
        self._cancelling = False
        self._claim_due = True
        self._claimed_nothing = False
        # With --rate-limit: when the next claim may be made (monotonic clock).
        self._next_rate_claim = 0.0
        # Attempts whose start the database knows (so a rescue records them LOST rather than
        # putting them back unstarted); forgotten when their result is recorded.
        self._marked_started: set[uuid.UUID] = set()
        # Outcomes of a round trip that failed for one of them: each goes in a round trip of its
        # own until it is written; those already replaced by an ERRORED placeholder.
        self._alone: set[uuid.UUID] = set()
        self._fallen_back: set[uuid.UUID] = set()
        # A claim whose answer was lost, or a release that failed, leaves attempts this worker
        # owns in the database but does not hold: return them once the database answers.
        self._reconcile_due = False
        self._next_poll = 0.0
        # Signal handlers and other threads write here to wake the loop.
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_writer.setblocking(False)
        self._readiness = Readiness()

    @property
    def store(self) -> Store:
        return self.runtime.store

    # Lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the process exit code (0 after a clean stop)."""
        os.environ["PGAPPNAME"] = f"jobkit:worker:{os.getpid()}"
        previous_handlers = self._install_signal_handlers()
        try:
            self.runtime.import_jobs()
            self.runtime.middleware_chain()
            if any(self.runtime.is_async(name) for name in self.runtime.registry):
                self.runtime.async_middleware_chain()
            # The children import the jobs and plugins (a few hundred milliseconds) while this
            # process checks the tables and registers.
            self.pool = WorkerPool(
                self.runtime.settings,
                size=self.options.max_processes,
                max_pending=self.options.max_pending_per_process,
                max_jobs_per_child=self.options.max_jobs_per_process,
                is_async=self.runtime.is_async,
                log_level=logging.getLogger().getEffectiveLevel(),
            )
            self.pool.spawn()
            self._until_reachable("checking jobkit's tables", self.store.check_schema)
            self.services = [
                service
                for answer in self.runtime.pm.hook.jobkit_add_worker_services(
                    runtime=self.runtime, worker_id=self.id
                )
                for service in answer or ()
            ]
            self.info = self._until_reachable("registering this worker", self.heartbeat.register)
        except StoppedWhileStarting:
            self._abandon_pool()
            self._restore(previous_handlers)
            logger.info("worker %s stopped before the database answered", self.id)
            return 0
        except BaseException:
            self._abandon_pool()
            self._restore(previous_handlers)
            raise
        assert self.pool is not None
        try:
            # Beat from the registration on: the row's stamp is its first beat, and the children
            # may take longer than heartbeat_timeout to import the app (a big app, a busy
            # machine), a silence peers would take for death.
            self.heartbeat.renewed = self.pool.renew_lease
            self.pool.renew_lease(self.heartbeat.lease_deadline)
            self.heartbeat.start()
            self._claim_due = self.wakeups.listen() or self._claim_due
            self.pool.wait_until_ready()
            if self.stopping:  # a signal arrived while the worker was starting
                self.pool.stop()
            self.services += self._duties()
            for service in self.services:
                service.start()
            config_file = self.runtime.settings.config_file
            logger.info(
                "worker %s started: queues %s, %d processes, up to %d claimed ahead per process; "
                "jobs in %s%s; %s",
                self.id,
                ",".join(self.options.queues),
                self.options.max_processes,
                self.options.max_pending_per_process,
                self.store.location(),
                " (embedded)" if self.runtime.embedded_database else "",
                f"settings from {config_file}" if config_file else "no config file",
            )
            notify(self.runtime.pm.hook.jobkit_worker_started, worker=self.info)
            self._loop()
        finally:
            self._shut_down()
            self._restore(previous_handlers)
        notify(self.runtime.pm.hook.jobkit_worker_stopped, worker=self.info)
        logger.info("worker %s stopped", self.id)
        return 0

    def _abandon_pool(self) -> None:
        """Kill the children of a worker that stopped or failed before its loop began."""
        if self.pool is not None:
            self.pool.kill_all()
            self.pool = None

    def _until_reachable(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, tried again with a growing backoff while the database cannot be reached
        (down, restarting, every connection slot taken), until it answers, or a signal stops the
        worker (``StoppedWhileStarting``). A ``--burst`` worker, run by a script, fails at once."""
        failures = 0
        while True:
            try:
                return call()
            except StoreUnavailable as error:
                if self.options.burst:
                    raise
                failures += 1
                delay = min(MAX_START_BACKOFF, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                logger.warning("%s failed (%s); trying again in %.1f s", what, error, delay)
                self._readiness.wait([self._wakeup_reader], delay)
            if self.stopping:
                raise StoppedWhileStarting

    def _duties(self) -> list[WorkerService]:
        """The worker's own services: the rescue sweep, results retention, the store's upkeep,
        the probe of the wake-up connection, the stats line."""
        duties: list[WorkerService] = [
            Rescuer(self.runtime, self.id, self.heartbeat, self._call_aborted),
            ResultsRetention(self.runtime),
            StoreUpkeep(self.runtime),
            Prober(self.wakeups, self.wake),
        ]
        if self.options.stats_every:
            duties.append(
                StatsReporter(self.runtime, self.info, self.options.stats_every, self._figures)
            )
        return duties

    def _install_signal_handlers(self) -> dict[int, Any]:
        signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)
        return {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _restore(self, handlers: dict[int, Any]) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            logger.info(
                "%s received: no new jobs are claimed; running jobs have %g s to finish",
                name,
                self.options.shutdown_timeout,
            )
            self.stop()
        else:
            logger.info("%s received again: ending the running jobs now", name)
            self._shutdown_deadline = time.monotonic()

    def stop(self) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` to finish before they are ended
        and recorded CANCELLED; the loop ends once every child has exited."""
        if self.stopping:
            return
        self.stopping = True
        self._shutdown_deadline = time.monotonic() + self.options.shutdown_timeout
        if self.pool is not None:
            self.pool.stop()

    def wake(self) -> None:
        """Wake the main loop from another thread."""
        with contextlib.suppress(OSError):
            self._wakeup_writer.send(b"\0")

    def _stop_services(self) -> None:
        """Stop every service, waiting for each (once: ``--burst`` stops them before it
        decides to exit)."""
        if self._services_stopped:
            return
        self._services_stopped = True
        for service in self.services:
            try:
                service.stop()
            except Exception:
                logger.exception("worker service %s failed to stop", service.name)

    def _shut_down(self) -> None:
        self.heartbeat.stopped.set()
        self._stop_services()
        if self.pool is not None:
            self.pool.kill_all()
        if self._round_trip is not None:
            with contextlib.suppress(Exception):
                self._round_trip.future.result(timeout=MAX_BACKOFF)
            self._complete_round_trip()
        if self._pending:
            self._write_final_results()
        self._database_thread.shutdown(wait=True)
        deadline = time.monotonic() + ABORTED_WAIT
        for thread in self._aborted_calls:
            thread.join(max(0.0, deadline - time.monotonic()))
        if still := sum(thread.is_alive() for thread in self._aborted_calls):
            logger.warning(
                "%d on_aborted calls still running after %g s; exiting without them",
                still,
                ABORTED_WAIT,
            )
        self.wakeups.close()
        try:
            self.store.unregister_worker(worker_id=self.id)
        except StoreError as error:
            logger.warning("could not remove this worker's heartbeat row: %s", error)
        self._wakeup_reader.close()
        self._wakeup_writer.close()

    # The loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self.pool is not None
        pool = self.pool
        settings = self.runtime.settings
        next_maintenance = time.monotonic() + settings.heartbeat_interval

        while True:
            now = time.monotonic()
            if self._round_trip is not None and self._round_trip.future.done():
                self._complete_round_trip()
            self._learn_next_start()
            if not self._failures:
                pool.answer()  # the children may start jobs: their starts will be marked
            if self.heartbeat.lease_lost.is_set():
                self._recover_lease()
            self._enforce_time_limits(now)
            self._give_back_backlog()
            children_done = self.stopping and not pool.alive and self._round_trip is None
            # Results the database would not take are retried until the grace period (plus a
            # last backoff) is over; then the final write tries once more before exiting.
            if children_done and (
                not self._pending or now >= self._shutdown_deadline + MAX_BACKOFF
            ):
                return
            idle = self._round_trip is None and not self._pending and not pool.in_flight
            if self.options.burst and not self.stopping and idle:
                if not self._claimed_nothing:
                    # A burst ends on a claim that finds nothing: make it now, not at the next
                    # poll (a claim that came up short found the last ready jobs, or not all).
                    self._claim_due = True
                elif not self._services_stopped:
                    # A service (the scheduler) may be enqueueing at this moment: stop the
                    # services first, so nothing is enqueued after the decision, then look again.
                    self._stop_services()
                    self._claim_due, self._claimed_nothing = True, False
                    continue
                else:
                    logger.info("burst: no job is ready and none is running")
                    self.stop()
                    continue
            if self._round_trip is None and now >= self._backoff_until:
                free = 0 if self.stopping else pool.free_slots()
                if self.options.rate_limit:
                    free = min(free, 1) if now >= self._next_rate_claim else 0
                want_claim = free > 0 and (self._claim_due or now >= self._next_poll)
                started = self._newly_started()
                # After a failure, try again even with nothing to write: children wait to start
                # their jobs until the database answers.
                if want_claim or self._pending or started or self._failures:
                    self._start_round_trip(free if want_claim else 0, started)

            deadlines = [next_maintenance, *self._time_limits()]
            if self._round_trip is None:
                if self._pending or self._failures:
                    deadlines.append(self._backoff_until)
                if not self.stopping and pool.free_slots() > 0:
                    # With no free slot, a child's outcome (its pipe) wakes the loop instead.
                    next_claim = max(self._next_poll, self._backoff_until)
                    if self._claim_due and self._next_rate_claim > now:  # held by --rate-limit
                        next_claim = min(next_claim, self._next_rate_claim)
                    deadlines.append(next_claim)
            timeout = max(0.0, min(deadlines) - time.monotonic())
            objects: list[Any] = [self._wakeup_reader, *pool.waitables()]
            listener = self.wakeups.listener
            if listener is not None:
                objects.append(listener)
            ready = self._readiness.wait(objects, timeout)

            if self._wakeup_reader in ready:
                self._wakeup_reader.recv(4096)
            if listener is not None and listener in ready:
                woken = self.wakeups.drain()
                if self.wakeups.control in woken:
                    self._look_for_cancels()
                if woken - {self.wakeups.control}:
                    self._ask_to_claim()
            if self.wakeups.replace_if_deaf():
                self._ask_to_claim()
            finished, crashed = pool.collect(ready)
            self._record(finished, crashed)
            pool.feed()

            now = time.monotonic()
            if now >= next_maintenance:
                self._maintain()
                next_maintenance = now + settings.heartbeat_interval

    def _give_back_backlog(self) -> None:
        """Return the attempts claimed ahead that no child took: all of them once the worker
        is stopping, and all of them when no child has taken one for a while (each runs a job
        longer than the prefetch horizon), so idle peers run them."""
        assert self.pool is not None
        unstarted = self.pool.take_backlog(stale_only=not self.stopping)
        if unstarted and not self.stopping:
            logger.info(
                "every pool child is busy with a long job: %d jobs claimed ahead go back to the "
                "queue for other workers",
                len(unstarted),
            )
        self._release([process.id for process in unstarted])

    def _time_limits(self) -> list[float]:
        """When the loop must next wake to end a job: its timeout, the shutdown grace, or the
        grace between SIGTERM and SIGKILL of a child asked to terminate."""
        assert self.pool is not None
        deadlines = [
            since + process.timeout
            for child, process, since in self.pool.running()
            if process.timeout is not None and not child.ending(process)
        ]
        if self.stopping and not self._cancelling:
            deadlines.append(self._shutdown_deadline)
        # A child given work starts it within moments, telling no one: look again shortly, so
        # the start reaches the database within START_MARK_DELAY (the attempts it runs, or the
        # first it holds when it runs none).
        if self._round_trip is None and any(
            process.id not in self._marked_started
            for child in self.pool.children
            for process in itertools.islice(child.assigned.values(), max(1, child.running_count))
        ):
            deadlines.append(max(time.monotonic() + START_MARK_DELAY, self._backoff_until))
        for deadline in (
            self.pool.next_kill_deadline(),
            self.pool.next_respawn(),
            self.pool.backlog_deadline(),
        ):
            if deadline is not None:
                deadlines.append(deadline)
        return deadlines

    def _look_for_cancels(self) -> None:
        """Ask the database (on the database thread) which of this worker's attempts an
        operator cancelled; ``_enforce_time_limits`` ends them."""
        if self._cancel_lookup is not None and not self._cancel_lookup.done():
            return
        lookup = self._database_thread.submit(self.store.cancel_requests, worker_id=self.id)
        lookup.add_done_callback(lambda _: self.wake())
        self._cancel_lookup = lookup

    def _enforce_time_limits(self, now: float) -> None:
        assert self.pool is not None
        lookup = self._cancel_lookup
        if lookup is not None and lookup.done():
            self._cancel_lookup = None
            try:
                self._cancels.update(lookup.result())
            except StoreError as error:
                logger.warning("could not read cancel requests (%s); trying again soon", error)
        for child, process, since in self.pool.running():
            if process.id in self._cancels and not child.ending(process):
                logger.warning(
                    "%s %s: an operator cancelled it (%s): ending it",
                    shown(process.job_name),
                    process.job_id,
                    self._cancels[process.id],
                )
                child.terminate(StopReason.OPERATOR, process)
            timeout = process.timeout
            if timeout is not None and not child.ending(process) and now - since >= timeout:
                logger.warning(
                    "%s %s (attempt %d of %d) ran longer than its timeout of %g s: ending it",
                    shown(process.job_name),
                    process.job_id,
                    process.retry_attempt + 1,
                    process.retries + 1,
                    timeout,
                )
                child.terminate(StopReason.TIMEOUT, process)
        if self.stopping and not self._cancelling and now >= self._shutdown_deadline:
            self._cancelling = True
            ended = self.pool.terminate_running(StopReason.CANCELLED)
            if ended:
                logger.warning(
                    "the shutdown grace period ended: terminating %d running jobs; they will "
                    "be recorded CANCELLED and run again",
                    len(ended),
                )
        self.pool.kill_overdue()

    def _recover_lease(self) -> None:
        """Another worker declared this one dead and rescued its jobs, and the heartbeat
        thread registered it again: replace the children, dropping what they had not started
        (those jobs run elsewhere); results of the jobs still running will be refused."""
        assert self.pool is not None
        logger.error(
            "this worker was declared dead by another (no heartbeat for %g s) and its jobs were "
            "rescued; it registered again and is replacing its pool children",
            self.runtime.settings.heartbeat_timeout,
        )
        self.pool.renew()
        # Only now may children start jobs again: each child still holding jobs it had not
        # started (given away by the rescue) was told to stop first.
        self.heartbeat.lease_lost.clear()
        self.pool.renew_lease(self.heartbeat.lease_deadline)

    def _maintain(self) -> None:
        """Every heartbeat interval: LISTEN again if the wake-up connection was lost, and return
        the attempts this worker owns but does not hold (a claim's answer or a release lost)."""
        if not self.stopping and self.wakeups.listen():
            self._ask_to_claim()
        self._look_for_cancels()  # in case a notification was missed
        if self._reconcile_due and self._round_trip is None and not self.stopping:
            # Queued on the database thread, so it runs before any later claim.
            self._reconcile_due = False
            self._database_thread.submit(self._reconcile_now, self._held_ids())

    def _ask_to_claim(self) -> None:
        """Claim at the next turn: a job may be ready that no claim has seen. A round trip in
        flight may have looked before it was enqueued, so its empty answer must not cancel
        this (the wake-up would be lost, and the job wait for the next poll)."""
        self._claim_due = True
        if self._round_trip is not None:
            self._round_trip.asked_again = True

    def _start_round_trip(
        self, limit: int, started: list[tuple[uuid.UUID, datetime.datetime]]
    ) -> None:
        """Hand the pending outcomes, the attempts that started since the last round trip, and
        a claim of ``limit`` jobs to the database thread."""
        completions = self._take_pending()
        asked_at = self.clock.at(time.time())
        future = self._database_thread.submit(self._finish_and_claim, completions, limit, started)
        future.add_done_callback(lambda _: self.wake())
        self._round_trip = RoundTrip(completions, limit, started, future, asked_at)

    def _take_pending(self) -> list[Completion]:
        """The pending outcomes one round trip may carry: in order, up to ``ROUND_TRIP_TEXT``
        characters of error and output text (at least one outcome); an outcome to be written
        alone (after a round trip that failed with it) goes alone."""
        size = 0
        for taken, completion in enumerate(self._pending):
            outcome = completion.outcome
            size += len(outcome.error)
            if outcome.output is not None:
                size += len(outcome.output)
            if completion.process.id in self._alone:
                taken = max(taken, 1)  # alone, or the outcomes before it without it
                break
            if taken and size > ROUND_TRIP_TEXT:
                break
        else:
            taken = len(self._pending)
        completions, self._pending = self._pending[:taken], self._pending[taken:]
        return completions

    def _newly_started(self) -> list[tuple[uuid.UUID, datetime.datetime]]:
        """Attempts running in the children that the database does not know have started."""
        assert self.pool is not None
        now_wall, now = time.time(), time.monotonic()
        return [
            (process.id, self.clock.at(now_wall - (now - since)))
            for _, process, since in self.pool.running()
            if process.id not in self._marked_started
        ]

    def _finish_and_claim(
        self,
        completions: list[Completion],
        limit: int,
        started: list[tuple[uuid.UUID, datetime.datetime]],
    ) -> tuple[FinishReport, list[JobProcess]]:
        """On the database thread: write results, mark started attempts, claim."""
        return self.runtime.finish_and_claim(
            worker_id=self.id,
            completions=completions,
            queues=self.options.queues,
            limit=limit,
            started=started,
        )

    def _look_for_next_start(self, since: datetime.datetime) -> None:
        """Ask, on the database thread, how long until the next scheduled job of the worker's
        queues, so it is claimed when due rather than at the next poll. Asked after a claim came
        up short, once its jobs have gone to the children: they need not wait for the answer.

        A lookup asked before this claim has answered already (the database thread runs one
        thing at a time, in order), but about the database as it was then: it is learned now
        and asked again, or a limit this claim filled would be learned as open (None) and the
        worker would wait for its next poll. ``since`` is when the claim was asked: a rate
        limit it found full that has room again by the time the lookup runs is an answer of
        0 seconds, not None (which would leave the worker to its poll)."""
        self._learn_next_start()
        if self._next_start_lookup is not None:
            return
        lookup = self._database_thread.submit(
            self.store.seconds_until_next_start,
            queues=self.options.queues,
            limits=self.runtime.flow_limits,
            since=since,
        )
        lookup.add_done_callback(lambda _: self.wake())
        self._next_start_lookup = (time.monotonic(), lookup)

    def _learn_next_start(self) -> None:
        if self._next_start_lookup is None or not self._next_start_lookup[1].done():
            return
        (asked, lookup), self._next_start_lookup = self._next_start_lookup, None
        try:
            seconds = lookup.result()
        except StoreError as error:  # the next poll claims it, a little later
            logger.debug("could not learn when the next scheduled job starts: %s", error)
            return
        if seconds is not None:
            self._next_poll = min(self._next_poll, asked + seconds)

    def _complete_round_trip(self) -> None:
        assert self._round_trip is not None and self.pool is not None
        round_trip, self._round_trip = self._round_trip, None
        try:
            report, claimed = round_trip.future.result()
        except Exception as error:
            # A claim (or a deferral's transaction of its own) may have committed.
            self._reconcile_due = self._reconcile_due or bool(round_trip.limit)
            self._claim_due = True
            if self._results_failed(round_trip.completions, error):
                self._back_off("writing results and claiming", error)
            return
        self._backoff_reset()
        for completion in round_trip.completions:
            self._alone.discard(completion.process.id)
            self._fallen_back.discard(completion.process.id)
        # Marks of attempts that ended meanwhile would never be forgotten (_record has run).
        running = {process.id for _, process, _ in self.pool.running()}
        self._marked_started.update(id_ for id_, _ in round_trip.started if id_ in running)
        self._announce(round_trip.completions, report)
        if round_trip.limit:
            if claimed and self.options.rate_limit:
                self._next_rate_claim = time.monotonic() + self.options.rate_limit
            self._claim_due = len(claimed) == round_trip.limit or round_trip.asked_again
            self._claimed_nothing = not claimed
            undelivered = claimed if self.stopping else self.pool.dispatch(claimed)
            self._release([process.id for process in undelivered])
            if not self._claim_due:
                self._next_poll = time.monotonic() + self.options.poll_interval
                self._look_for_next_start(round_trip.asked_at)
        if any(report.written.values()):
            # A retry or deferral was enqueued, after this round trip's claim looked: it may be
            # ready now, so look again (before --burst ends).
            self._claim_due, self._claimed_nothing = True, False

    def _results_failed(self, completions: list[Completion], error: Exception) -> bool:
        """Keep every outcome of a failed write; return whether to retry it as it was.

        A connection failure, or an error of the database's state (disk full, read-only), is
        retried as it was, after a backoff. Anything else (the database refused a value, a
        plugin or ``should_enqueue`` raised) is one outcome's fault: the outcomes are then
        written one per round trip, and the one that still fails is written as ERRORED with a
        message that says why, so every other outcome is written once and the worker goes on.
        """
        self._pending[:0] = completions
        if isinstance(error, StoreError) and not isinstance(error, StoreDataError):
            return True
        if not completions:
            logger.error(
                "claiming failed: %s",
                error,
                exc_info=None if isinstance(error, StoreError) else error,
            )
            return True
        if len(completions) > 1:
            logger.error(
                "writing %d results failed (%s); writing them one at a time to find the one "
                "that cannot be written",
                len(completions),
                error,
            )
            self._alone.update(completion.process.id for completion in completions)
            return False
        [completion] = completions
        process = completion.process
        self._pending.remove(completion)
        # The store names what it refused; anything else (a plugin, should_enqueue) needs its
        # traceback.
        trace = None if isinstance(error, StoreError) else error
        if process.id in self._fallen_back:
            logger.error(
                "could not write even a placeholder result for %s %s (%s); it stays claimed "
                "by this worker, and is rescued as LOST once this worker stops",
                process.job_name,
                process.id,
                error,
                exc_info=trace,
            )
            self._alone.discard(process.id)
            self._fallen_back.discard(process.id)
            return False
        logger.error(
            "could not write the result of %s %s (%s); recording it ERRORED instead",
            process.job_name,
            process.id,
            error,
            exc_info=trace,
        )
        self._fallen_back.add(process.id)
        self._pending.insert(0, attrs.evolve(completion, outcome=unwritable(completion, error)))
        return False

    # Results -------------------------------------------------------------------------------

    def _record(self, finished: Sequence[Finished], crashed: Sequence[Crashed]) -> None:
        for item in finished:
            self._marked_started.discard(item.process.id)
            outcome = item.outcome
            if item.stopped is not None and outcome.status is Status.ERRORED:
                # The run ended after the JobTimeout or JobCancelled raised in it: record it
                # for why it was ended, with the traceback of where it was.
                outcome = self._stopped_outcome(item.process, item.stopped, outcome.error)
            self._pending.append(
                Completion(
                    process=item.process,
                    outcome=outcome,
                    started_at=self.clock.at(item.started),
                    ended_at=self.clock.at(item.ended),
                )
            )
            self._cancels.pop(item.process.id, None)
        for dead in crashed:
            self._recover(dead)
            for process, _ in dead.running:
                self._marked_started.discard(process.id)
                self._cancels.pop(process.id, None)

    def _recover(self, dead: Crashed) -> None:
        """Record the attempts a child was running when it exited, for what ended each, and put
        the attempts it never started back in the queue."""
        for process, reason in dead.running:
            if reason is not None:
                outcome = self._stopped_outcome(process, reason)
            else:
                why = f"the pool child running the job died ({describe_exit(dead.exitcode)})"
                logger.warning(
                    "%s %s (attempt %d of %d): %s",
                    shown(process.job_name),
                    process.job_id,
                    process.retry_attempt + 1,
                    process.retries + 1,
                    why,
                )
                outcome = self.runtime.ended_outcome(process, Status.LOST, "ChildDied", why)
            self._pending.append(
                Completion(
                    process=process,
                    outcome=outcome,
                    started_at=None,
                    ended_at=self.clock.at(time.time()),
                )
            )
        if dead.unstarted:
            self._release([process.id for process in dead.unstarted])

    def _stopped_outcome(
        self, process: JobProcess, reason: StopReason, detail: str = ""
    ) -> Outcome:
        """The outcome of an attempt this worker ended: ERRORED ``JobTimeout`` (retried by the
        job's policy), CANCELLED (runs again at once), or CANCELLED for an operator (never runs
        again); ``detail`` is the run's traceback."""
        if reason is StopReason.OPERATOR:
            detail = f"; where it was when it was ended:\n\n{detail}" if detail else ""
            return self.runtime.operator_cancelled(
                process, self._cancels.get(process.id, ""), detail
            )
        if reason is StopReason.TIMEOUT:
            status, error_type = Status.ERRORED, "JobTimeout"
            why = f"the job ran longer than its timeout of {process.timeout:g} s and was ended"
        else:
            status, error_type = Status.CANCELLED, "Cancelled"
            why = (
                f"the worker was stopping and the job did not finish within the shutdown grace "
                f"period of {self.options.shutdown_timeout:g} s; it was ended and will run again"
            )
        if detail:
            why += f"; where it was when it was ended:\n\n{detail}"
        return self.runtime.ended_outcome(process, status, error_type, why)

    def _release(self, ids: list[uuid.UUID]) -> None:
        if ids:
            self._database_thread.submit(self._release_now, ids)

    def _release_now(self, ids: list[uuid.UUID]) -> None:
        try:
            self.store.release(worker_id=self.id, process_ids=ids)
        except StoreError as error:
            self._reconcile_due = True
            logger.warning(
                "could not return %d unstarted jobs to the queue (%s); they will be returned "
                "once the database answers again",
                len(ids),
                error,
            )

    def _held_ids(self) -> set[uuid.UUID]:
        """The attempts this worker holds: in its children, or finished and not yet written."""
        assert self.pool is not None
        held = {attempt_id for child in self.pool.children for attempt_id in child.assigned}
        held |= {process.id for process in self.pool.backlog}
        return held | {completion.process.id for completion in self._pending}

    def _reconcile_now(self, known: set[uuid.UUID]) -> None:
        try:
            released = self.store.release_unknown(worker_id=self.id, known_ids=list(known))
        except StoreError:
            self._reconcile_due = True
            return
        if released:
            logger.warning(
                "returned %d jobs to the queue that this worker owned but did not hold (a "
                "claim's answer or a release was lost)",
                len(released),
            )

    def _write_final_results(self) -> None:
        while self._pending:
            completions = self._take_pending()
            try:
                report, _ = self.runtime.finish_and_claim(
                    worker_id=self.id, completions=completions
                )
            except Exception as error:
                if self._results_failed(completions, error):
                    logger.error(
                        "could not write %d results before exiting (%s); another worker will "
                        "rescue these jobs after this worker's heartbeat times out",
                        len(self._pending),
                        error,
                    )
                    return
                continue
            self._announce(completions, report)

    def _announce(self, completions: Sequence[Completion], report: FinishReport) -> None:
        """Count and announce the results ``report`` says were written."""
        for attempt_id in report.lost_lease:
            logger.warning(
                "attempt %s was no longer owned by this worker (its lease was lost: another "
                "worker recorded it); its result was not written",
                attempt_id,
            )
        finished_hook = self.runtime.pm.hook.jobkit_job_finished
        announce = bool(finished_hook.get_hookimpls())
        for completion in completions:
            if completion.process.id not in report.written:
                continue
            status = completion.outcome.status
            with self._done_lock:
                self._done[status] += 1
            _log_attempt_end(completion, report.written[completion.process.id])
            aborted = status in (Status.LOST, Status.CANCELLED)
            if announce or aborted:
                result = JobResult.from_completion(
                    completion, retry_request_id=report.written[completion.process.id]
                )
                notify(finished_hook, result=result)
                if aborted:
                    self._call_aborted(result, held_rerun_start(completion))

    def _call_aborted(self, result: JobResult, rerun_at: datetime.datetime | None) -> None:
        """Call ``on_aborted`` for ``result`` on a daemon thread of its own (and then release
        its held rerun to start at ``rerun_at``)."""
        thread = threading.Thread(
            target=self.runtime.aborted,
            args=(result, rerun_at),
            name="jobkit-on-aborted",
            daemon=True,
        )
        thread.start()
        self._aborted_calls = [t for t in self._aborted_calls if t.is_alive()] + [thread]

    # Stats ---------------------------------------------------------------------------------

    def _figures(self, elapsed: float) -> dict[str, Any]:
        """The worker's own figures for the stats line (on the stats thread): attempts done per
        outcome and their rate over the last ``elapsed`` seconds, attempts in flight, and pool
        children."""
        with self._done_lock:
            done, self._done = self._done, Counter[Status]()
        figures: dict[str, Any] = {f"done_{s.value.lower()}": done[s] for s in Status}
        total = sum(done.values())
        figures["rate_per_second"] = round(total / elapsed, 1) if elapsed else 0.0
        figures["in_flight"] = self.pool.in_flight if self.pool is not None else 0
        figures["processes"] = len(self.pool.children) if self.pool is not None else 0
        return figures

    def _back_off(self, what: str, error: Exception) -> None:
        """Wait before the next database call: doubling from 0.1 s, capped, with jitter so
        workers that lost the database together do not return together."""
        self._failures += 1
        delay = min(MAX_BACKOFF, 0.1 * 2 ** (self._failures - 1)) * random.uniform(0.8, 1.2)
        self._backoff_until = time.monotonic() + delay
        logger.warning("%s failed (%s); retrying in %.1f s", what, error, delay)

    def _backoff_reset(self) -> None:
        self._failures = 0
        self._backoff_until = 0.0
