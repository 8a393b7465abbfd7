"""A worker's liveness: its heartbeat, the lease its pool children check before they start a job,
and the sweep that rescues the jobs of workers that stopped beating.

A worker's claim on its jobs lasts while its heartbeat row is fresh by the database's clock: once
the row is older than ``heartbeat_timeout``, a peer may record its running jobs LOST and give the
unstarted ones to others. So a worker must not start a job once that can have happened (its pool
children stop starting jobs at the *lease deadline*, which each beat renews), and a worker must
not declare a peer dead for a silence its own beats shared (a lock on the table holds everyone's
beats up): it sweeps only while its own beats go through promptly.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobkit.errors import LeaseLost, StoreError
from jobkit.records import JobResult, WorkerInfo
from jobkit.services import PeriodicService

if TYPE_CHECKING:
    from jobkit.runtime import Runtime
    from jobkit.store import Store

logger = logging.getLogger("jobkit.worker")

LEASE_MARGIN = 1.0
"""Seconds before the earliest moment a peer could declare this worker dead at which its pool
children stop starting jobs: time for the worker to tell the database that a job it started did
start (so a rescue records it LOST instead of running it again as if it never had)."""
SLOW_BEAT = 1.0
"""Seconds after which a heartbeat counts as held up (by a lock, say), at most half the interval:
a worker whose own beats are held up does not vouch that anyone's went through."""


class DatabaseClock:
    """Wall-clock times of this machine translated to the database's clock, so a result's
    started/ended times line up with the created/claimed times the database stamped."""

    def __init__(self) -> None:
        self.offset = 0.0

    def sync(self, database_now: datetime.datetime, sent: float, received: float) -> None:
        self.offset = database_now.timestamp() - (sent + received) / 2

    def at(self, wall_time: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(wall_time + self.offset, datetime.UTC)


class Heartbeat(threading.Thread):
    """Beats on its own thread and connection, so a claim stuck behind a lock, or a slow
    ``on_aborted``, never makes a live worker look dead. Each beat also re-reads the database
    clock and renews the lease deadline (``renewed`` is told it). When the worker's row is gone
    (a peer declared it dead and rescued its jobs) it registers again and sets ``lease_lost``
    for the main loop, which replaces the children before it renews their lease."""

    def __init__(
        self,
        store: Store,
        info: WorkerInfo,
        *,
        interval: float,
        timeout: float,
        clock: DatabaseClock,
        wake: Callable[[], None],
    ):
        super().__init__(name="jobkit-heartbeat", daemon=True)
        self.store = store
        self.info = info
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.wake = wake
        self.slow = min(SLOW_BEAT, interval / 2)
        self.stopped = threading.Event()
        self.lease_lost = threading.Event()
        self.lease_deadline = -math.inf
        """Monotonic time after which this worker's children must not start a job."""
        self.renewed: Callable[[float], None] = lambda deadline: None
        self.healthy_since: float | None = -math.inf
        """When (monotonic) beats last started to go through promptly; None while they fail."""
        self._beat_started: float | None = None
        self._failing = False

    def register(self) -> WorkerInfo:
        """Insert this worker's row (again, after a lease was lost) and read the clock."""
        started = time.monotonic()
        self._beat_started = started
        try:
            stored = self.store.register_worker(self.info)
            self.sync_clock()
        finally:
            self._beat_started = None
        self._went_through(started)
        return stored

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.beat()

    def sync_clock(self) -> None:
        """Read the database clock (a read, so no commit delays the answer)."""
        sent = time.time()
        self.clock.sync(self.store.database_now(), sent, time.time())

    def beat(self) -> None:
        started = time.monotonic()
        self._beat_started = started
        try:
            self.store.heartbeat(worker_id=self.info.id)
            self.sync_clock()
        except LeaseLost as error:
            logger.error("%s", error)
            self._reregister()
            return
        except StoreError as error:
            if not self._failing:
                logger.warning("heartbeat failed (%s); retrying every beat", error)
            self._failing = True
            self.healthy_since = None
            return
        finally:
            self._beat_started = None
        if self._failing:
            logger.info("heartbeat works again")
        self._failing = False
        self._went_through(started)

    def _went_through(self, started: float) -> None:
        now = time.monotonic()
        if now - started > self.slow:
            # Held up (a lock on the table?): every worker's beats may have been, so this
            # worker vouches for nobody's silence until it has beaten promptly for a timeout.
            logger.warning("heartbeat took %.1f s (held up by a lock?)", now - started)
            self.healthy_since = now
        elif self.healthy_since is None:
            self.healthy_since = now
        self.lease_deadline = started + self.timeout - min(LEASE_MARGIN, self.timeout / 4)
        if not self.lease_lost.is_set():
            self.renewed(self.lease_deadline)

    def vouches(self) -> bool:
        """Whether this worker may declare others dead now: its own beats have gone through
        promptly for a whole ``heartbeat_timeout``, and none is held up right now."""
        now = time.monotonic()
        since, beating = self.healthy_since, self._beat_started
        prompt = beating is None or now - beating <= self.slow
        return since is not None and now - since >= self.timeout and prompt

    def _reregister(self) -> None:
        """Register again under the same id after a peer declared this worker dead."""
        try:
            self.register()
        except StoreError as error:
            logger.warning("could not register again (%s); trying at the next beat", error)
            return
        self.lease_lost.set()
        self.wake()


class Rescuer(PeriodicService):
    """The worker service that, every ``heartbeat_interval`` while this worker's heartbeat
    vouches for the database, records the jobs of workers that stopped beating LOST (see
    ``Runtime.rescue_dead_workers``)."""

    name = "rescuer"

    def __init__(
        self,
        runtime: Runtime,
        worker_id: uuid.UUID,
        heartbeat: Heartbeat,
        aborted: Callable[[JobResult, datetime.datetime | None], Any],
    ):
        super().__init__(heartbeat.interval)
        self.runtime = runtime
        self.worker_id = worker_id
        self.heartbeat = heartbeat
        self.aborted = aborted

    def tick(self) -> None:
        if self.heartbeat.vouches():
            self.runtime.rescue_dead_workers(
                exclude=self.worker_id, aborted=self.aborted, vouched=self.heartbeat.vouches
            )
