"""The middleware chain, run by the built-in ``jobkit_run_job`` around ``job.run()``: plugins'
middleware (``jobkit_add_middleware``), then the ``middleware`` setting's.

Middleware follows the seed systems: a class built with the next step (``run_job``) whose
``process_job(job)`` calls ``self.run_job(job)`` — or does not, to skip the job, or calls it twice,
which a pluggy wrapper cannot do. The first in the chain is the outermost.

An ``async def run()`` job runs through the async chain: the same classes, each built with the
awaitable next step, and their ``async def aprocess_job(job)`` awaited. A middleware says it can
wrap async jobs by defining ``aprocess_job`` as ``async def``; one that does not is refused when
the async chain is built, naming it (its ``process_job`` would run before the job's coroutine
is even awaited, so what it measures or catches would be wrong).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pluggy

from jobkit.errors import PluginError, SettingsError
from jobkit.job import Job
from jobkit.plugins import contributions
from jobkit.settings import Settings

RunJob = Callable[[Job], Any]
AsyncRunJob = Callable[[Job], Awaitable[Any]]


class JobMiddleware:
    """Base class for middleware: override ``process_job``, call ``self.run_job(job)`` and
    return what it returned (the job's output, stored with its result). To run around async
    jobs too, also define ``async def aprocess_job(self, job)``, which awaits
    ``self.run_job(job)`` (in the async chain, ``run_job`` is the awaitable next step)."""

    def __init__(self, run_job: RunJob):
        self.run_job = run_job

    def process_job(self, job: Job) -> Any:
        return self.run_job(job)


def _run(job: Job) -> Any:
    return job.run()


async def _arun(job: Job) -> Any:
    run: Callable[[], Awaitable[Any]] = job.run  # type: ignore[assignment] # async def run
    return await run()


def build_chain(paths: Sequence[str], contributed: Sequence[type] = ()) -> RunJob:
    """The callable that runs a (sync) job through the plugins' middleware (``contributed``,
    from ``plugin_middleware``), then every middleware in ``paths``, then ``run()``."""
    run_job: RunJob = _run
    for middleware in reversed([*contributed, *map(import_middleware, paths)]):
        run_job = middleware(run_job).process_job
    return run_job


def build_async_chain(paths: Sequence[str], contributed: Sequence[type] = ()) -> AsyncRunJob:
    """The coroutine function that runs an async job through the same middleware as
    ``build_chain`` (their ``aprocess_job``), then awaits ``run()``. Raises ``PluginError``
    naming each middleware without an ``async def aprocess_job``."""
    classes = [*contributed, *map(import_middleware, paths)]
    sync_only = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if not inspect.iscoroutinefunction(getattr(cls, "aprocess_job", None))
    ]
    if sync_only:
        raise PluginError(
            f"middleware {', '.join(sync_only)} cannot run around async jobs (`async def "
            f"run`): it has no `async def aprocess_job(self, job)`; add one that awaits "
            f"self.run_job(job) (see docs/async.md)"
        )
    run_job: AsyncRunJob = _arun
    for middleware in reversed(classes):
        run_job = middleware(run_job).aprocess_job
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
