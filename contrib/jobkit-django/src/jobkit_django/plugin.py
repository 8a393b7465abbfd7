"""The jobkit plugin (entry point ``django``): Django set up in every jobkit process that runs
with Django's settings, and enqueues on Django's connection so they join its transaction."""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

from jobkit import JobMiddleware, hookimpl
from jobkit.runtime import get_runtime
from jobkit.services import PeriodicService
from jobkit_django.conf import database_alias, database_url, django_in_use, ensure_django_setup


@hookimpl
def jobkit_configure_runtime(runtime: Any) -> None:
    """A worker's main process and each pool child (spawned, so with nothing set up) need
    Django's apps and models before they import the jobs modules."""
    if django_in_use(os.environ):
        ensure_django_setup()


@hookimpl
def jobkit_connection() -> Any:
    """Django's connection to jobkit's database: inside ``transaction.atomic()`` the enqueue
    joins that transaction; outside, Django's connection autocommits it.

    None (jobkit's own connection) where Django's cannot be used: before the apps are ready,
    in async code (Django's connections are sync-only, and no ``atomic()`` is open there), and
    when the process's jobkit runtime is on another database (a test's own runtime)."""
    if not django_in_use(os.environ) or _in_event_loop():
        return None
    from django.apps import apps

    if not apps.ready:
        return None
    from django.db import connections

    alias = database_alias()
    if get_runtime().settings.database_url != database_url(alias):
        return None
    connection = connections[alias]
    connection.ensure_connection()
    return connection.connection


class CloseOldConnections(JobMiddleware):
    """Django's request cycle closes connections past ``CONN_MAX_AGE`` or broken; a pool
    child runs jobs for hours, so it does the same around every job."""

    def process_job(self, job: Any) -> Any:
        from django.db import close_old_connections

        close_old_connections()
        try:
            return self.run_job(job)
        finally:
            close_old_connections()


@hookimpl
def jobkit_add_middleware(settings: Any) -> list[type] | None:
    return [CloseOldConnections] if django_in_use(os.environ) else None


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ReturnValuesRetention(PeriodicService):
    """Deletes the tasks' return values older than the ``results_retention`` setting, as the
    worker deletes jobkit's own results (every worker does it; the deletes are idempotent)."""

    name = "django task return values retention"

    def __init__(self, retention: float, every: float = 3600):
        super().__init__(every, at_start=True)
        self.retention = retention

    def tick(self) -> None:
        from django.db import connections
        from django.utils import timezone

        from jobkit_django.models import TaskReturnValue

        alias = database_alias()
        cutoff = timezone.now() - datetime.timedelta(seconds=self.retention)
        try:
            TaskReturnValue.objects.using(alias).filter(created_at__lt=cutoff).delete()
        finally:
            connections[alias].close()


@hookimpl
def jobkit_add_worker_services(runtime: Any, worker_id: Any) -> list[Any] | None:
    retention = runtime.settings.results_retention
    if not django_in_use(os.environ) or not retention:
        return None
    return [ReturnValuesRetention(retention)]
