"""The Job base class: what an app subclasses, enqueues with ``run_in_worker`` and tunes with the
``default_*`` methods, as in the seed systems (plain.jobs, plain.worker)."""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from jobkit.errors import ParameterTypeError

if TYPE_CHECKING:
    from jobkit.records import JobList, JobProcess, JobRequest, JobResult, MemberResult
    from jobkit.schedule import Recurrence

Delay = int | float | datetime.timedelta | datetime.datetime
P = ParamSpec("P")
R = TypeVar("R")

PLAIN_WORKER_OPTIONS = {"unique_key": "concurrency_key"}
"""plain.worker's ``run_in_worker`` options and jobkit's names for them (plain.jobs' names)."""


def _names_plain_worker_options(method: Callable[P, R]) -> Callable[P, R]:
    """Refuse plain.worker's options by jobkit's names for them, where Python would only say
    that a keyword is unexpected. The signature stays the one written, for type checkers."""

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        for old, new in PLAIN_WORKER_OPTIONS.items():
            if old in kwargs:
                raise ParameterTypeError(
                    f"{method.__name__}() got an unexpected keyword argument {old!r}: "
                    f"plain.worker's {old} is {new} in jobkit (as in plain.jobs)"
                )
        return method(*args, **kwargs)

    return checked


class Job:
    """Subclass, define ``__init__`` and ``run()``, decorate with ``@register_job``.

    The arguments given to ``__init__`` are captured when the instance is made and stored as the
    job's parameters, so ``__init__`` can do anything with them; the worker calls it again with
    the same arguments, rebuilt from JSON by the serializer.
    """

    _init_args: tuple[Any, ...]
    _init_kwargs: dict[str, Any]
    job_process: JobProcess | None = None
    """The attempt being run, set by the worker before ``run()``; None outside a worker."""
    schedule: Recurrence | str | None = None
    """Enqueue this job (made with no arguments) on a schedule: a ``Schedule``, or cron text
    read in the ``timezone`` setting's zone. Workers running the scheduler pick it up like an
    entry of the ``schedule`` setting."""
    limits: dict[str, Any] | None = None
    """A flow limit of this job's name, as an entry of the ``limits`` setting without its
    ``job_name``: ``{"max_running": 2}``, ``{"max_starts": 10, "per": 60}``. Workers keep it
    with the setting's limits (see ``docs/flow-control.md``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Job:
        instance = super().__new__(cls)
        instance._init_args = args
        instance._init_kwargs = kwargs
        return instance

    def run(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must define run()")

    @_names_plain_worker_options
    def run_in_worker(
        self,
        *,
        queue: str | None = None,
        delay: Delay | None = None,
        priority: int | None = None,
        retries: int | None = None,
        concurrency_key: str | None = None,
        timeout: float | datetime.timedelta | None = None,
        connection: Any = None,
    ) -> JobRequest | None:
        """Enqueue this job for a worker; return the stored request, or None when
        ``should_enqueue`` (or a ``jobkit_should_enqueue`` plugin) declined it.

        Arguments left out come from the ``default_*`` methods. ``delay`` is seconds, a
        ``timedelta``, or an aware ``datetime`` to start at. ``timeout`` (seconds or a
        ``timedelta``) limits one run: past it, the run's process is killed and the attempt is
        ERRORED with error type ``JobTimeout`` and retried like any error. With ``connection``
        (a psycopg connection for the built-in store) the request is part of the caller's
        transaction: it is claimable once that commits, and gone if it rolls back.
        """
        from jobkit.runtime import get_runtime

        return get_runtime().enqueue(
            self,
            queue=queue,
            delay=delay,
            priority=priority,
            retries=retries,
            concurrency_key=concurrency_key,
            timeout=timeout,
            connection=connection,
        )

    @_names_plain_worker_options
    async def arun_in_worker(
        self,
        *,
        queue: str | None = None,
        delay: Delay | None = None,
        priority: int | None = None,
        retries: int | None = None,
        concurrency_key: str | None = None,
        timeout: float | datetime.timedelta | None = None,
        connection: Any = None,
    ) -> JobRequest | None:
        """``run_in_worker``, async: the same defaults, enqueue lock, ``should_enqueue`` and
        hooks, on the store's async connection pool; with ``connection`` (a
        ``psycopg.AsyncConnection`` for the built-in store) inside the caller's transaction.
        ``should_enqueue`` runs in a thread, its reads on the enqueue's connection."""
        from jobkit.runtime import get_runtime

        return await get_runtime().aenqueue(
            self,
            queue=queue,
            delay=delay,
            priority=priority,
            retries=retries,
            concurrency_key=concurrency_key,
            timeout=timeout,
            connection=connection,
        )

    # Defaults, each overridable per class and per call ---------------------------------------

    def default_queue(self) -> str:
        return "default"

    def default_priority(self) -> int:
        """Higher runs first: 10 before 0 before -10."""
        return 0

    def default_retries(self) -> int:
        return 0

    def default_concurrency_key(self) -> str:
        """A non-empty key means at most one job of this class with this key is pending or
        running at a time (see ``should_enqueue``)."""
        return ""

    def default_timeout(self) -> float | datetime.timedelta | None:
        """Seconds one run may take (None: no limit). A worker kills a run that takes longer."""
        return None

    def calculate_retry_delay(self, attempt: int) -> float | datetime.timedelta:
        """Seconds to wait before retry number ``attempt`` (the first retry is 1)."""
        return 0

    # Enqueue-time decisions ----------------------------------------------------------------

    def should_enqueue(self, concurrency_key: str) -> bool:
        """Called under the enqueue lock before the insert; return False to skip this job.

        The default enforces the concurrency key: no other job of this class with the same key
        may be pending or running. Override it for other rules, counting with
        ``get_requested_jobs`` and ``get_processing_jobs``: within this call they answer from one
        read per key, so a job claimed meanwhile is in one list or the other, never in neither.
        """
        if not concurrency_key:
            return True
        return not self.get_requested_jobs(concurrency_key) and not self.get_processing_jobs(
            concurrency_key
        )

    def get_enqueue_lock(
        self, concurrency_key: str
    ) -> contextlib.AbstractContextManager[Any] | None:
        """The lock held around ``should_enqueue`` and the insert, or None to use the
        ``jobkit_enqueue_lock`` plugin hook (the built-in: a Postgres advisory lock)."""
        return None

    def get_requested_jobs(self, concurrency_key: str | None = None) -> JobList[JobRequest]:
        """Pending requests of this job class (with ``concurrency_key`` when given): a list,
        whose ``count()`` with no argument is its length, as in plain.jobs."""
        from jobkit.runtime import get_runtime

        return get_runtime().find_active(type(self), concurrency_key)[0]

    def get_processing_jobs(self, concurrency_key: str | None = None) -> JobList[JobProcess]:
        """Claimed or running attempts of this job class (with ``concurrency_key`` when given):
        a list, whose ``count()`` with no argument is its length, as in plain.jobs."""
        from jobkit.runtime import get_runtime

        return get_runtime().find_active(type(self), concurrency_key)[1]

    def workflow_inputs(self) -> list[MemberResult]:
        """In a workflow's callback, as it runs: the final result of each job it waited for, in
        the order they were given (``status``, ``output``, ``failed``). A ``Group``'s ``then``
        job receives every member; in a ``Chain``, each job receives the one before it alone
        (``self.workflow_inputs()[0].output``). Empty for any other job."""
        from jobkit.runtime import get_runtime

        return get_runtime().workflow_inputs(self.job_process)

    # Lifecycle hooks (django-db-queue's creation, pre-task, failure and post-task hooks) -----

    def on_enqueued(self, request: JobRequest) -> None:
        """Called in the enqueueing process once the request is stored (inside the caller's
        transaction when ``connection=`` was given: a rollback still removes it). An exception
        here is raised from ``run_in_worker()`` after every job of the call has had its hook;
        the requests stay stored."""

    def before_run(self) -> None:
        """Called in the worker before ``run()``. Raising skips ``run()`` and fails the attempt
        as if ``run()`` had raised: ``on_failure`` gets the exception, ``after_run`` still runs,
        and the attempt is retried by the job's policy."""

    def on_failure(self, error: BaseException) -> None:
        """Called in the worker when ``before_run()`` or ``run()`` raised (``JobCancelled`` when
        the run was interrupted; an ``OutputError`` when its returned value cannot be stored),
        before ``after_run``. Not for ``DeferJob``, nor when the run's process died (a timeout
        kills it: see ``on_aborted``). An exception here is logged and changes nothing."""

    def after_run(self) -> None:
        """Called in the worker after every run that ended in its process: success, failure or
        deferral, always last. An exception here is logged and never fails the job."""

    # After the fact ------------------------------------------------------------------------

    def on_aborted(self, result: JobResult) -> None:
        """Called when an attempt ended without ``run()`` seeing it end: LOST (its pool child
        or its whole worker died) or CANCELLED (the worker's shutdown grace ran out).
        Reconcile what ``run()``'s ``finally`` could not. It runs in a worker's main process,
        after the result is written; exceptions here are logged and never lose the result.
        ``result.retry_request_id`` is None when no further attempt follows."""

    def __repr__(self) -> str:
        parts = [repr(arg) for arg in self._init_args]
        parts += [f"{key}={value!r}" for key, value in self._init_kwargs.items()]
        return f"{type(self).__qualname__}({', '.join(parts)})"


def is_async_job(job_class: type[Job]) -> bool:
    """Whether ``job_class.run`` is ``async def``: its attempts run on a pool child's event
    loop, many at once (see docs/async.md)."""
    return inspect.iscoroutinefunction(job_class.run)
