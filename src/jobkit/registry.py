"""Job name <-> class. Only registered classes ever run: a name read from a row is looked up
here and nowhere else, never imported by dotted path."""

from __future__ import annotations

import importlib.machinery
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar, overload

from jobkit.errors import JobkitError, UnknownJobError

if TYPE_CHECKING:
    from jobkit.job import Job

JobT = TypeVar("JobT", bound="type[Job]")

PLAIN_WORKER_METHODS = {
    "get_queue": "default_queue",
    "get_priority": "default_priority",
    "get_retries": "default_retries",
    "get_retry_delay": "calculate_retry_delay",
    "get_unique_key": "default_concurrency_key",
}
"""plain.worker's job methods, which jobkit never calls, and the methods that do their work in
jobkit (plain.jobs' names)."""


class JobRegistry:
    """The jobs a process knows, by name."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Job]] = {}
        self._names: dict[type[Job], str] = {}
        self._asynchronous: set[str] = set()
        """The names of the async jobs (``async def run``), known at registration: a worker
        asks of each attempt it hands a child, and so does the child."""

    def register(self, job_class: type[Job], name: str | None = None) -> type[Job]:
        """Register ``job_class`` under ``name`` (default: ``module.QualName``).

        Registering the same class under the same name again is harmless (a module imported
        twice); a name taken by another class is an error naming both.
        """
        from jobkit.job import Job, is_async_job

        if not (isinstance(job_class, type) and issubclass(job_class, Job)):
            raise JobkitError(f"register_job expects a Job subclass, got {job_class!r}")
        if inspect.isasyncgenfunction(job_class.run):
            raise JobkitError(
                f"{_qualified(job_class)}.run is an async generator (`async def` with `yield`), "
                f"which jobkit cannot run: define `async def run(self)` without `yield`, and "
                f"return the output instead"
            )
        renamed = {
            old: new
            for old, new in PLAIN_WORKER_METHODS.items()
            if hasattr(job_class, old) and getattr(job_class, new) is getattr(Job, new)
        }
        if renamed:
            raise JobkitError(_plain_worker_methods_problem(job_class, renamed))
        name = name or f"{job_class.__module__}.{job_class.__qualname__}"
        existing = self._classes.get(name)
        if existing is not None and _qualified(existing) != _qualified(job_class):
            raise JobkitError(
                f"job name {name!r} is already registered to {_qualified(existing)}; "
                f"pass register_job(name=...) to give {_qualified(job_class)} another name"
            )
        self._classes[name] = job_class
        self._names[job_class] = name
        if is_async_job(job_class):
            self._asynchronous.add(name)
        else:  # registered again, as it is now (a module reloaded)
            self._asynchronous.discard(name)
        return job_class

    def get(self, name: str) -> type[Job]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownJobError(f"no job is registered under the name {name!r}") from None

    def name_of(self, job_class: type[Job]) -> str:
        try:
            return self._names[job_class]
        except KeyError:
            raise UnknownJobError(
                f"{_qualified(job_class)} is not registered: decorate it with @register_job"
            ) from None

    def is_async(self, name: str) -> bool:
        """Whether the job registered as ``name`` is async (False for an unknown name)."""
        return name in self._asynchronous

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def items(self) -> list[tuple[str, type[Job]]]:
        return sorted(self._classes.items())


registry = JobRegistry()
"""The registry ``@register_job`` writes to; the worker and producers read from it."""


def discover_job_modules(package: str, locations: Sequence[str]) -> list[str]:
    """The ``jobs`` modules (or packages) of ``package``, whose ``__path__`` is ``locations``,
    and of its direct subpackages: ``package.jobs`` and ``package.<subpackage>.jobs``, as plain
    finds ``app/jobs.py`` and ``app/<pkg>/jobs.py``. Only the package itself is imported to
    look: a subpackage with no ``jobs`` module is left alone."""
    children = sorted(pkgutil.iter_modules(locations), key=lambda child: child.name)
    found = [f"{package}.jobs"] if any(child.name == "jobs" for child in children) else []
    for child in children:
        if not child.ispkg or child.name == "jobs":
            continue
        spec = importlib.machinery.PathFinder.find_spec(f"{package}.{child.name}", locations)
        inner = (spec and spec.submodule_search_locations) or []
        if any(grandchild.name == "jobs" for grandchild in pkgutil.iter_modules(inner)):
            found.append(f"{package}.{child.name}.jobs")
    return found


def _qualified(job_class: type) -> str:
    return f"{job_class.__module__}.{job_class.__qualname__}"


def _plain_worker_methods_problem(job_class: type, renamed: dict[str, str]) -> str:
    """Why a class with plain.worker's method names (and not jobkit's) cannot be registered."""
    old = " and ".join(f"{method}()" for method in renamed)
    new = " and ".join(f"{method}()" for method in renamed.values())
    them, names = ("it", "name") if len(renamed) == 1 else ("them", "names")
    return (
        f"{_qualified(job_class)} defines {old}, plain.worker's {names}, which jobkit never "
        f"calls: rename {them} {new} (jobkit follows plain.jobs' names)"
    )


@overload
def register_job(job_class: JobT, /) -> JobT: ...
@overload
def register_job(*, name: str | None = None) -> Callable[[JobT], JobT]: ...


def register_job(job_class=None, /, *, name=None):
    """Class decorator that makes a Job runnable by workers.

    ``@register_job`` registers under ``module.QualName``; ``@register_job(name="welcome")``
    keeps the job's identity when the class moves or is renamed, so requests already stored
    still find it.
    """

    def decorate(cls):
        registry.register(cls, name)
        return cls

    if job_class is None:
        return decorate
    return decorate(job_class)
