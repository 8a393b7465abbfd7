"""The middleware chain, run by the built-in ``jobkit_run_job`` around ``job.run()``: plugins'
middleware (``jobkit_add_middleware``), then the ``middleware`` setting's.

Middleware follows the seed systems: a class built with the next step (``run_job``) whose
``process_job(job)`` calls ``self.run_job(job)`` — or does not, to skip the job, or calls it twice,
which a pluggy wrapper cannot do. The first in the chain is the outermost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import pluggy

from jobkit.errors import PluginError, SettingsError
from jobkit.job import Job
from jobkit.plugins import contributions
from jobkit.settings import Settings

RunJob = Callable[[Job], Any]


class JobMiddleware:
    """Base class for middleware: override ``process_job``, call ``self.run_job(job)`` and
    return what it returned (the job's output, stored with its result)."""

    def __init__(self, run_job: RunJob):
        self.run_job = run_job

    def process_job(self, job: Job) -> Any:
        return self.run_job(job)


def _run(job: Job) -> Any:
    return job.run()


def build_chain(paths: Sequence[str], contributed: Sequence[type] = ()) -> RunJob:
    """The callable that runs a job through the plugins' middleware (``contributed``, from
    ``plugin_middleware``), then every middleware in ``paths``, then ``run()``."""
    run_job: RunJob = _run
    for middleware in reversed([*contributed, *map(import_middleware, paths)]):
        run_job = middleware(run_job).process_job
    return run_job


def plugin_middleware(pm: pluggy.PluginManager, settings: Settings) -> list[type]:
    """The classes plugins add through ``jobkit_add_middleware``, outermost first: the answer of
    the plugin pluggy calls first, in its order, then the next plugin's."""
    classes = []
    for plugin, answer in contributions(pm.hook.jobkit_add_middleware, settings=settings):
        if isinstance(answer, str) or not isinstance(answer, Sequence):
            raise PluginError(
                f"plugin {plugin!r} answered jobkit_add_middleware with {answer!r}; it must "
                f"return a list of middleware classes"
            )
        for middleware in answer:
            if not isinstance(middleware, type) or not callable(
                getattr(middleware, "process_job", None)
            ):
                raise PluginError(
                    f"plugin {plugin!r} answered jobkit_add_middleware with {middleware!r}, "
                    f"which is not a middleware class (one built with the next step, with a "
                    f"process_job(job) method); return subclasses of jobkit.JobMiddleware"
                )
            classes.append(middleware)
    return classes


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
