"""``manage.py check`` reports jobkit settings that would stop a worker or an enqueue: a bad
``settings.JOBKIT`` value, a database alias jobkit cannot use."""

from __future__ import annotations

from typing import Any

from django.core import checks

from jobkit import JobkitError
from jobkit.settings import load_settings


@checks.register("jobkit")
def check_jobkit_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    try:
        load_settings()
    except JobkitError as error:
        return [checks.Error(str(error), id="jobkit_django.E001")]
    return []
