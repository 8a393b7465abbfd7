"""A worker's periodic side duties, each a service on a thread of its own: the stats line, the
deletion of results older than ``results_retention``, and the store's upkeep."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobkit.errors import StoreError
from jobkit.plugins import notify
from jobkit.records import WorkerInfo
from jobkit.services import PeriodicService

if TYPE_CHECKING:
    from jobkit.runtime import Runtime

logger = logging.getLogger("jobkit.worker")

RETENTION_EVERY = 600.0
"""Seconds between two deletions of old results (the first runs as the worker starts)."""

MAINTAIN_EVERY = 10.0
"""Seconds between two calls of the store's upkeep (``Store.maintain``)."""


class ResultsRetention(PeriodicService):
    """Deletes results older than ``results_retention`` when the worker starts and every
    ``RETENTION_EVERY`` seconds."""

    name = "results retention"

    def __init__(self, runtime: Runtime):
        super().__init__(RETENTION_EVERY, at_start=True)
        self.runtime = runtime

    def tick(self) -> None:
        retention = self.runtime.settings.results_retention
        if not retention:
            return
        deleted = self.runtime.store.clear_results(older_than=retention)
        if deleted:
            logger.info("deleted %d results older than %d seconds", deleted, retention)


class StoreUpkeep(PeriodicService):
    """Calls ``Store.maintain`` every ``MAINTAIN_EVERY`` seconds (the Postgres store folds its
    result count changes, which a draining worker adds to with every batch it finishes)."""

    name = "store upkeep"

    def __init__(self, runtime: Runtime):
        super().__init__(MAINTAIN_EVERY)
        self.runtime = runtime

    def tick(self) -> None:
        self.runtime.store.maintain()


class StatsReporter(PeriodicService):
    """Every ``every`` seconds, logs the worker's ``worker stats`` line (what ``figures(elapsed)``
    gives, plus the queue figures of all queues) and announces it to
    ``jobkit_worker_stats_reported``."""

    name = "stats"

    def __init__(
        self,
        runtime: Runtime,
        info: WorkerInfo,
        every: float,
        figures: Callable[[float], dict[str, Any]],
    ):
        super().__init__(every)
        self.runtime = runtime
        self.info = info
        self.figures = figures
        self._since = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        figures = self.figures(now - self._since)
        self._since = now
        try:
            counts = self.runtime.store.stats(include_results=False).total
            figures.update(
                pending=counts.pending,
                scheduled=counts.scheduled,
                running=counts.running,
                oldest_pending_age=round(counts.oldest_pending_age, 3),
            )
        except StoreError as error:
            logger.warning("stats query failed: %s", error)
        logger.info("worker stats %s", " ".join(f"{k}={v}" for k, v in figures.items()))
        notify(self.runtime.pm.hook.jobkit_worker_stats_reported, worker=self.info, stats=figures)
