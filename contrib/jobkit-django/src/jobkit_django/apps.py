"""The Django app: jobs found in every installed app's ``jobs.py`` (and ``tasks.py`` with
jobkit's tasks backend), and jobkit's schema kept
up to date by ``manage.py migrate``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class JobkitConfig(AppConfig):
    name = "jobkit_django"
    label = "jobkit_django"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobkit_django import checks  # noqa: F401 - registers the system check
        from jobkit_django.conf import discovered_names

        autodiscover_modules(*discovered_names())
        post_migrate.connect(migrate_jobkit_schema, sender=self)


def migrate_jobkit_schema(using: str, verbosity: int = 1, **kwargs: Any) -> None:
    """After every ``manage.py migrate``: apply the jobkit migrations a newer jobkit brought
    (migration 0001 applied those there were when it first ran)."""
    from jobkit_django.schema import migrate_schema

    migrate_schema(using, verbosity=verbosity)
