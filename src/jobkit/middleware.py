"""The ``middleware`` setting's chain, run by the built-in ``jobkit_run_job`` around ``job.run()``.

Middleware follows the seed systems: a class built with the next step (``run_job``) whose
``process_job(job)`` calls ``self.run_job(job)`` — or does not, to skip the job, or calls it twice,
which a pluggy wrapper cannot do. The first listed is the outermost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from jobkit.errors import SettingsError
from jobkit.job import Job

RunJob = Callable[[Job], Any]


class JobMiddleware:
    """Base class for middleware: override ``process_job`` and call ``self.run_job(job)``."""

    def __init__(self, run_job: RunJob):
        self.run_job = run_job

    def process_job(self, job: Job) -> Any:
        return self.run_job(job)


def _run(job: Job) -> Any:
    return job.run()


def build_chain(paths: Sequence[str]) -> RunJob:
    """The callable that runs a job through every middleware in ``paths`` and then ``run()``."""
    run_job: RunJob = _run
    for path in reversed(paths):
        run_job = import_middleware(path)(run_job).process_job
    return run_job


def import_middleware(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    try:
        middleware = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise SettingsError(
            f"setting middleware names {path!r}, which cannot be imported: {error}"
        ) from error
    if not callable(getattr(middleware, "process_job", None)):
        raise SettingsError(
            f"setting middleware names {path!r}, which has no process_job(job) method; "
            f"subclass jobkit.JobMiddleware"
        )
    return middleware
