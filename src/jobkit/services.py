"""Worker services: background work that runs inside each worker's main process, beside the
job loop. The worker's own side duties are services (the rescue sweep, the stats line, results
retention, the probe of its LISTEN connection), and so is the built-in cron scheduler; a plugin
offers its own through the ``jobkit_add_worker_services`` hook. ``PeriodicService`` is the base
most of them share."""

from __future__ import annotations

import logging
import threading
from typing import Protocol, runtime_checkable

from jobkit.errors import StoreError

logger = logging.getLogger("jobkit.worker")


@runtime_checkable
class WorkerService(Protocol):
    """Started once the worker is registered and its pool runs; stopped while it shuts down,
    before its heartbeat row goes. A service checks its configuration when it is made (in the
    hook), so a bad one stops the worker before it claims anything."""

    name: str
    """Names the service in the worker's log."""

    def start(self) -> None:
        """Start working, on a thread of the service's own; return at once."""

    def stop(self) -> None:
        """Stop and wait for the service's thread (briefly: the worker is shutting down)."""


class PeriodicService:
    """A ``WorkerService`` that calls ``tick()`` on a daemon thread of its own, first after
    ``every`` seconds (at once with ``at_start``), then every ``every`` seconds or after the
    seconds ``tick()`` returns. A ``StoreError`` is logged once while it lasts (and its end),
    and tried again after ``every``; any other exception is logged with its traceback."""

    name = "periodic"

    def __init__(self, every: float, *, at_start: bool = False):
        self.every = every
        self.at_start = at_start
        self._failing = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"jobkit-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(10)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def tick(self) -> float | None:
        """Do the work once; return the seconds until the next call, or None for ``every``."""
        raise NotImplementedError

    def _run(self) -> None:
        wait = 0.0 if self.at_start else self.every
        while not self._stopped.wait(wait):
            wait = self._tick_safely()

    def _tick_safely(self) -> float:
        try:
            wait = self.tick()
        except StoreError as error:
            if not self._failing:
                logger.warning("%s: %s; trying again every %g s", self.name, error, self.every)
            self._failing = True
            return self.every
        except Exception:
            logger.exception("%s failed; trying again in %g s", self.name, self.every)
            return self.every
        if self._failing:
            logger.info("%s: the database answers again", self.name)
        self._failing = False
        return self.every if wait is None else wait
