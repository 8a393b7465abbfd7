"""A worker's wake-ups: its LISTEN connection, and the check that the connection still hears.

A LISTEN connection whose server hangs, or whose packets vanish without a reset, reads as idle for
ever: jobs would then start only at the poll interval, and nothing would say why. So a worker
notifies itself every ``PROBE_EVERY`` seconds (over another connection), and when its own
notification has not arrived ``PROBE_TIMEOUT`` seconds later, it LISTENs on a new connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from jobkit.errors import StoreError
from jobkit.services import PeriodicService

if TYPE_CHECKING:
    from jobkit.store import Listener, Store

logger = logging.getLogger("jobkit.worker")

PROBE_EVERY = 5.0
"""Seconds between two probes of the LISTEN connection."""
PROBE_TIMEOUT = 2.0
"""Seconds a probe may go unheard before the LISTEN connection counts as dead."""


class Wakeups:
    """The worker's LISTEN connection (used by the main loop only), and whether it went deaf
    (``deaf``, set by ``Prober``, which also wakes the loop). Besides its queues' names it
    hears ``control``, the payload that tells this worker an operator cancelled one of its
    attempts."""

    def __init__(self, store: Store, queues: Sequence[str], control: str):
        self.store = store
        self.queues = list(queues)
        self.control = control
        self.listener: Listener | None = None
        self.deaf = threading.Event()

    def listen(self) -> bool:
        """LISTEN unless already listening; True when a new connection now listens (wake-ups
        sent while nobody listened are gone: the caller claims to find what they announced)."""
        if self.listener is not None:
            return False
        try:
            self.listener = self.store.listen(queues=[*self.queues, self.control])
        except StoreError as error:
            logger.warning("could not LISTEN for wake-ups (%s); polling instead", error)
            return False
        return True

    def drain(self) -> set[str]:
        """Read what arrived: the names woken, of a queue or ``control``; all of them when the
        connection was lost (which may have swallowed any)."""
        assert self.listener is not None
        try:
            return self.listener.drain()
        except StoreError as error:
            logger.warning("lost the wake-up connection (%s); polling until it is back", error)
            self.close()
            return {*self.queues, self.control}

    def replace_if_deaf(self) -> bool:
        """LISTEN on a new connection if the prober found this one deaf; True if it did."""
        if not self.deaf.is_set():
            return False
        self.deaf.clear()
        logger.warning(
            "the wake-up connection went silent (this worker's own notification was not heard "
            "within %g s): LISTENing on a new one",
            PROBE_TIMEOUT,
        )
        self.close()
        return self.listen()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None


class Prober(PeriodicService):
    """The worker service that probes the LISTEN connection every ``PROBE_EVERY`` seconds, and
    marks it deaf (waking the loop) when the last probe went unheard for ``PROBE_TIMEOUT``."""

    name = "wake-up prober"

    def __init__(self, wakeups: Wakeups, wake: Callable[[], None]):
        super().__init__(PROBE_TIMEOUT)
        self.wakeups = wakeups
        self.wake = wake
        self._probed: Listener | None = None
        self._probed_at = 0.0

    def tick(self) -> None:
        listener = self.wakeups.listener
        if listener is None or self.wakeups.deaf.is_set():
            return
        if listener.unheard_for() > PROBE_TIMEOUT:
            self.wakeups.deaf.set()
            self.wake()
            return
        now = time.monotonic()
        if listener is self._probed and now - self._probed_at < PROBE_EVERY:
            return
        listener.probe()
        self._probed, self._probed_at = listener, now
