"""The jobkit plugin (entry point ``django``): Django set up in every jobkit process that runs
with Django's settings, and enqueues on Django's connection so they join its transaction."""

from __future__ import annotations

import os
from typing import Any

from jobkit import hookimpl
from jobkit_django.conf import database_alias, django_in_use, ensure_django_setup


@hookimpl
def jobkit_configure_runtime(runtime: Any) -> None:
    """A worker's main process and each pool child (spawned, so with nothing set up) need
    Django's apps and models before they import the jobs modules."""
    if django_in_use(os.environ):
        ensure_django_setup()


@hookimpl
def jobkit_connection() -> Any:
    """Django's connection to jobkit's database: inside ``transaction.atomic()`` the enqueue
    joins that transaction; outside, Django's connection autocommits it."""
    if not django_in_use(os.environ):
        return None
    from django.apps import apps

    if not apps.ready or not apps.is_installed("jobkit_django"):
        return None
    from django.db import connections

    connection = connections[database_alias()]
    connection.ensure_connection()
    return connection.connection
