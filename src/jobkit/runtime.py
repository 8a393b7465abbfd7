"""The runtime of one process: its settings, plugin manager, store, serializer and registry.

A producer gets one lazily from its settings on the first ``run_in_worker()``; the worker and
its pool children build theirs from the settings they are given. The kernel's own answers to
``jobkit_enqueue`` and ``jobkit_run_job`` live here, registered as the ``jobkit.core`` plugin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import datetime
import functools
import importlib
import inspect
import logging
import math
import os
import sys
import threading
import traceback
import types
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import Any

import attrs
import pluggy

from jobkit.errors import (
    DeferJob,
    JobInterrupted,
    JobkitError,
    OutputError,
    ParameterError,
    ParameterTypeError,
    PluginError,
    SettingsError,
    StoreError,
    UnknownJobError,
)
from jobkit.hookspecs import hookimpl
from jobkit.job import Delay, Job, is_async_job
from jobkit.middleware import (
    AsyncRunJob,
    RunJob,
    build_async_chain,
    build_chain,
    plugin_middleware,
)
from jobkit.plugins import CORE_PLUGIN, call_awaiting, create_plugin_manager, notify
from jobkit.records import (
    INPUTS_HEADER,
    Completion,
    FinishReport,
    FlowLimit,
    JobList,
    JobProcess,
    JobRequest,
    JobResult,
    JobState,
    LimitScope,
    MemberResult,
    Outcome,
    PipelineState,
    QueueCounts,
    QueueDepth,
    Status,
    WorkflowLink,
)
from jobkit.registry import JobRegistry, discover_job_modules, registry
from jobkit.serializer import Serializer
from jobkit.settings import (
    _QUEUE_NAME,
    Settings,
    load_settings,
    parse_limits,
    with_plugin_sections,
)
from jobkit.store import AsyncStore, Store

logger = logging.getLogger("jobkit")

_JOBKIT_DIR = str(Path(__file__).parent)
_INT32 = 2**31 - 1
MAX_DELAY = 100 * 365.25 * 86400
ON_ABORTED_HOLD = 10.0
"""Seconds the rerun of a LOST or CANCELLED attempt waits, at most, for its job's ``on_aborted``
to return: it is released as soon as it has, and starts when the hold runs out if the call hangs
or the worker making it dies (as long as a stopping worker waits for ``on_aborted`` calls)."""
"""The longest delay jobkit takes, in seconds (100 years): for ``run_in_worker(delay=...)``
(a number, a timedelta, or a datetime that far from now), ``DeferJob(delay=...)``,
``calculate_retry_delay`` and ``timeout``. A longer one is a mistake (milliseconds taken for
seconds), and past about 290,000 years it no longer fits PostgreSQL's timestamps."""
MAX_CONCURRENCY_KEY_BYTES = 1000
"""The longest concurrency key, in UTF-8 bytes: an index on (job_name, concurrency_key) holds
rows of at most about 2,700 bytes, so this leaves the job name room to spare."""
# The connection of the enqueue in progress, so should_enqueue() sees the same transaction; for
# an async enqueue, with the event loop the connection belongs to (should_enqueue() runs in a
# thread, and reads through that loop).
_enqueue_connection: contextvars.ContextVar[tuple[Any, asyncio.AbstractEventLoop | None]] = (
    contextvars.ContextVar("jobkit_enqueue_connection", default=(None, None))
)
# The requests of the async API's enqueue in progress: the kernel's jobkit_enqueue answers
# that call (and it alone) with a coroutine, awaited between the hook's wrappers.
_async_enqueue: contextvars.ContextVar[Sequence[JobRequest] | None] = contextvars.ContextVar(
    "jobkit_async_enqueue", default=None
)
ActiveJobs = tuple[list[JobRequest], list[JobProcess]]
# What find_active read during the should_enqueue decision in progress, by (job name, key).
_decision_reads: contextvars.ContextVar[dict[tuple[str, str | None], ActiveJobs] | None] = (
    contextvars.ContextVar("jobkit_decision_reads", default=None)
)


class Runtime:
    """What one process needs to enqueue and run jobs."""

    def __init__(
        self,
        settings: Settings,
        pluginmanager: pluggy.PluginManager,
        job_registry: JobRegistry = registry,
    ):
        self.settings = settings
        self.pm = pluginmanager
        self.registry = job_registry
        self.flow_limits = settings.flow_limits()
        """The ``limits`` setting, which every claim of this process keeps."""
        self.embedded_database = False
        self.job_modules: list[str] = []
        """The modules ``import_jobs`` imported: the imports setting's, then those found
        through discover_jobs."""
        self._store: Store | None = None
        self._async_store: AsyncStore | None = None
        self._serializer: Serializer | None = None
        self._run_chain: RunJob | None = None
        self._async_run_chain: AsyncRunJob | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        load_entrypoints: bool = True,
        resolved: bool = False,
        keep_broken: bool = False,
    ) -> Runtime:
        """Build the plugin manager and read plugins' settings sections (unless ``resolved``:
        a pool child is given settings its worker already resolved). ``keep_broken`` leaves
        out the plugins that fail to load, for ``jobkit plugins`` to list (see
        ``create_plugin_manager``); the settings sections then only they could declare are
        not an error."""
        pm = create_plugin_manager(
            settings, load_entrypoints=load_entrypoints, keep_broken=keep_broken
        )
        if not resolved:
            settings = with_plugin_sections(
                settings,
                pm.hook.jobkit_settings_defaults(),
                undeclared_allowed=bool(getattr(pm, "broken", None)),
            )
        runtime = cls(settings, pm)
        pm.register(CorePlugin(runtime), CORE_PLUGIN)
        pm.hook.jobkit_register_jobs(registry=runtime.registry)
        pm.hook.jobkit_configure_runtime(runtime=runtime)
        return runtime

    # Parts made on first use ------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store for ``database_url``; with none set, the ``jobkit_database_url`` answer
        (the embedded database), migrated on first use."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._make_store()
        return self._store

    def _make_store(self) -> Store:
        settings = self.settings
        if settings.database_url is None:
            if not settings.embedded:
                where = settings.config_file or "jobkit.toml or [tool.jobkit] of pyproject.toml"
                raise StoreError(
                    f"no database is configured, and the embedded setting is false, so no "
                    f"embedded database is started: set JOBKIT_DATABASE_URL=postgresql://user@"
                    f"host:5432/dbname (or database_url in {where})"
                )
            url = self.pm.hook.jobkit_database_url(settings=settings)
            if url is None:
                raise StoreError(
                    "no database is configured: set JOBKIT_DATABASE_URL=postgresql://... (or "
                    "database_url in jobkit.toml or [tool.jobkit] of pyproject.toml), or install "
                    "the embedded database: pip install 'jobkit[embedded]'"
                )
            settings = attrs.evolve(settings, database_url=url)
            self.embedded_database = True
        store = self.pm.hook.jobkit_store(settings=settings)
        if store is None:
            scheme = (settings.database_url or "").partition("://")[0]
            raise PluginError(
                f"no plugin provides a store for {scheme}:// URLs; registered plugins: "
                f"{', '.join(name for name, _ in self.pm.list_name_plugin())}"
            )
        if self.embedded_database:
            store.migrate()
        self.settings = settings
        return store

    @property
    def serializer(self) -> Serializer:
        if self._serializer is None:
            serializer = self.pm.hook.jobkit_serializer(
                settings=self.settings, pluginmanager=self.pm
            )
            if serializer is None:
                raise PluginError(
                    "no plugin provides a serializer (is jobkit.builtin.serializers in "
                    "disable_plugins without a replacement?)"
                )
            self._serializer = serializer
        return self._serializer

    def import_jobs(self) -> None:
        """Import the ``imports`` setting's modules, and the ``jobs`` modules of the
        ``discover_jobs`` setting's packages, so their ``@register_job`` classes exist; note
        them in ``job_modules``. One that fails is a ``SettingsError`` that shows where (see
        ``where_it_failed``)."""
        modules = {}
        for module in self.settings.imports:
            modules[module] = f"setting imports lists {module!r}"
        for package in self.settings.discover_jobs:
            for module in self._discover(package):
                modules.setdefault(module, f"setting discover_jobs found {module!r} in {package!r}")
        for module, found in modules.items():
            try:
                importlib.import_module(module)
            except Exception as error:
                raise SettingsError(
                    f"{found}, which failed to import:\n{where_it_failed(error)}"
                ) from error
        self.job_modules = list(modules)
        self.flow_limits = self.settings.flow_limits() + self._job_class_limits()

    def _job_class_limits(self) -> list[FlowLimit]:
        """The flow limits that registered job classes declare (their ``limits`` attribute),
        each of its own job name; one that is wrong, or that the ``limits`` setting also
        limits, is a ``SettingsError`` naming the class."""
        limits = []
        limited = {limit.key for limit in self.settings.flow_limits()}
        for name, job_class in self.registry.items():
            entry = job_class.limits
            if entry is None:
                continue
            where = f"job class {job_class.__module__}.{job_class.__qualname__} ({name!r})"
            if not isinstance(entry, dict) or set(entry) & {s.value for s in LimitScope}:
                raise SettingsError(
                    f"{where} has limits {entry!r}: a table of max_running, or max_starts and "
                    f"per, that limits its own job name (see docs/flow-control.md)"
                )
            try:
                (limit,) = parse_limits([{**entry, "job_name": name}])
            except ValueError as error:
                raise SettingsError(
                    f"{where} has limits {entry!r}, which {str(error).removeprefix('entry 1 ')}"
                ) from None
            if limit.key in limited:
                raise SettingsError(
                    f"{where} has limits, and the limits setting limits {limit.key} too: "
                    f"keep one of the two"
                )
            limits.append(limit)
        return limits

    @staticmethod
    def _discover(package: str) -> list[str]:
        """The ``jobs`` modules of one package of the ``discover_jobs`` setting."""
        try:
            locations = getattr(importlib.import_module(package), "__path__", None)
        except Exception as error:
            raise SettingsError(
                f"setting discover_jobs lists {package!r}, which failed to import:\n"
                f"{where_it_failed(error)}"
            ) from error
        if locations is None:
            raise SettingsError(
                f"setting discover_jobs lists {package!r}, a module, not a package: list it in "
                f"the imports setting instead"
            )
        found = discover_job_modules(package, list(locations))
        if not found:
            raise SettingsError(
                f"setting discover_jobs lists {package!r}, which has no jobs module: neither "
                f"{package}.jobs nor {package}.<subpackage>.jobs exists; list the modules that "
                f"define your jobs in the imports setting instead"
            )
        return found

    async def aget_async_store(self) -> AsyncStore:
        """The store, for the async API: made in a thread on first use (an embedded database
        starts then), and refused with a ``StoreError`` when it has no async methods."""
        if self._async_store is None:
            store = (
                self.store
                if self._store is not None
                else await asyncio.to_thread(getattr, self, "store")
            )
            if not isinstance(store, AsyncStore):
                missing = [
                    name for name in _ASYNC_STORE_METHODS if getattr(store, name, None) is None
                ]
                raise StoreError(
                    f"the store {store!r} has no async methods ({', '.join(missing)} are "
                    f"missing; see jobkit.store.AsyncStore), so await arun_in_worker(), "
                    f"aenqueue_many() and aget_result() cannot use it: call run_in_worker() "
                    f"in a thread instead (await asyncio.to_thread(job.run_in_worker))"
                )
            self._async_store = store
        return self._async_store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._async_store = None

    async def aclose(self) -> None:
        """Close the async connections of the running event loop (an app's shutdown)."""
        if self._async_store is not None:
            await self._async_store.aclose()

    # Enqueue ------------------------------------------------------------------------------

    def enqueue(self, job: Job, *, connection: Any = None, **options: Any) -> JobRequest | None:
        """Enqueue ``job`` with ``build_request``'s options; ``source`` defaults to the
        caller's file and line."""
        return self.enqueue_requests([job], self._requests([job], options), connection)[0]

    def enqueue_many(
        self, jobs: Sequence[Job], *, connection: Any = None, **options: Any
    ) -> list[JobRequest | None]:
        jobs = list(jobs)
        return self.enqueue_requests(jobs, self._requests(jobs, options), connection)

    async def aenqueue(
        self, job: Job, *, connection: Any = None, **options: Any
    ) -> JobRequest | None:
        """``enqueue``, async: on the store's async connections, or ``connection`` (an async
        one)."""
        requests = self._requests([job], options)
        return (await self.aenqueue_requests([job], requests, connection))[0]

    async def aenqueue_many(
        self, jobs: Sequence[Job], *, connection: Any = None, **options: Any
    ) -> list[JobRequest | None]:
        jobs = list(jobs)
        return await self.aenqueue_requests(jobs, self._requests(jobs, options), connection)

    def _requests(self, jobs: Sequence[Job], options: dict[str, Any]) -> list[JobRequest]:
        """``build_request`` of each job with ``options``, ``source`` the caller's file and line
        unless given."""
        options.setdefault("source", caller_location())
        return [self.build_request(job, **options) for job in jobs]

    def enqueue_requests(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        """The path every enqueue takes, an operator's retry too: ``jobkit_enqueue`` (the
        decisions under the enqueue lock, the insert), then the events. Returns each request
        as stored, or None where it was declined."""
        jobs, requests = list(jobs), list(requests)
        if not jobs:
            return []
        connection = self._callers_connection(connection)
        stored = self.pm.hook.jobkit_enqueue(jobs=jobs, requests=requests, connection=connection)
        committed = self._enqueued(jobs, stored)
        if committed is not None:
            self.store.after_commit(connection, committed)
        _call_on_enqueued(jobs, stored)
        return stored

    async def aenqueue_requests(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        """``enqueue_requests``, async: the same hooks, the kernel's answer to
        ``jobkit_enqueue`` (``aenqueue_now``) awaited between the wrappers' halves."""
        jobs, requests = list(jobs), list(requests)
        if not jobs:
            return []
        store = await self.aget_async_store()
        connection = self._callers_connection(connection, asynchronous=True)
        if inspect.isawaitable(connection):  # an async library's connection, begun by awaiting
            connection = await connection
        token = _async_enqueue.set(requests)
        try:
            stored = await call_awaiting(
                self.pm.hook.jobkit_enqueue, jobs=jobs, requests=requests, connection=connection
            )
        finally:
            _async_enqueue.reset(token)
        committed = self._enqueued(jobs, stored)
        if committed is not None:
            await store.aafter_commit(connection, committed)
        _call_on_enqueued(jobs, stored)
        return stored

    def _enqueued(
        self, jobs: Sequence[Job], stored: Sequence[JobRequest | None]
    ) -> Callable[[], None] | None:
        """Tell ``jobkit_job_enqueued`` of each stored request; return the call of
        ``jobkit_job_committed`` to make once they commit (None: no plugin listens, or none
        was stored)."""
        for job, request in zip(jobs, stored, strict=True):
            if request is not None:
                notify(self.pm.hook.jobkit_job_enqueued, job=job, request=request)
        committed = self.pm.hook.jobkit_job_committed
        inserted = [request for request in stored if request is not None]
        if not inserted or not committed.get_hookimpls():
            return None
        return lambda: notify(committed, requests=inserted)

    def _callers_connection(self, connection: Any, *, asynchronous: bool = False) -> Any:
        """The connection an enqueue joins: ``connection``, else the one ``jobkit_connection``
        supplies (None: the store's own), as its driver's connection. On the async path that
        may be an awaitable of it (``jobkit_driver_connection`` for an async library); the
        sync path refuses one."""
        if connection is None:
            connection = self.pm.hook.jobkit_connection()
        if connection is None:
            return None
        driver = self.pm.hook.jobkit_driver_connection(connection=connection)
        if driver is None:
            return connection
        if inspect.isawaitable(driver) and not asynchronous:
            if inspect.iscoroutine(driver):
                driver.close()  # never awaited, on purpose: no warning
            raise ParameterTypeError(
                f"connection= got an {type(connection).__name__}, which is async: enqueue "
                f"with await arun_in_worker() / aenqueue_many(), or pass a sync one"
            )
        return driver

    def enqueue_workflow(
        self,
        links: Sequence[WorkflowLink],
        jobs: Sequence[Job],
        requests: Sequence[JobRequest],
        connection: Any,
    ) -> list[JobRequest]:
        """Record the workflow ``links`` and enqueue every job of them, members and held
        callbacks, in one transaction (the caller's, with ``connection``): all of it or none. A
        job that ``should_enqueue`` (or a plugin) declines rolls it all back, with an error."""
        with self.store.transaction(self._callers_connection(connection)) as conn:
            self.store.create_workflows(links, connection=conn)
            stored = self.enqueue_requests(jobs, requests, conn)
            declined = [repr(job) for job, request in zip(jobs, stored, strict=True) if not request]
            if declined:
                raise ParameterError(
                    f"a workflow enqueues all of its jobs or none, and should_enqueue (or a "
                    f"jobkit_should_enqueue plugin) declined {', '.join(declined)}: nothing was "
                    f"enqueued"
                )
        return [request for request in stored if request is not None]

    def enqueue_pipeline(
        self, job: Job, request: JobRequest, pipeline: PipelineState, connection: Any
    ) -> JobRequest | None:
        """Enqueue a pipeline's first attempt and record ``pipeline`` (its first step and
        workspace) in one transaction (the caller's, with ``connection``); None, and nothing
        recorded, when it was declined."""
        with self.store.transaction(self._callers_connection(connection)) as conn:
            (stored,) = self.enqueue_requests([job], [request], conn)
            if stored is not None:
                pipeline.job_id = stored.job_id
                self.store.create_pipeline(pipeline, connection=conn)
        return stored

    def workflow_inputs(self, process: JobProcess | None) -> list[MemberResult]:
        """What the callback running as ``process`` receives: the members of the workflow link
        it waited for, with their final results; empty for any other job."""
        if process is None or INPUTS_HEADER not in process.headers:
            return []
        return self.store.workflow_members(uuid.UUID(process.headers[INPUTS_HEADER]))

    def build_request(
        self,
        job: Job,
        *,
        queue: str | None = None,
        delay: Delay | None = None,
        priority: int | None = None,
        retries: int | None = None,
        concurrency_key: str | None = None,
        timeout: float | datetime.timedelta | None = None,
        source: str = "",
    ) -> JobRequest:
        """The request for ``job``, with arguments left out taken from its ``default_*``."""
        job_class = type(job)
        name = self.registry.name_of(job_class)
        if name.startswith("__main__."):
            raise UnknownJobError(_named_after_the_script(job_class))
        queue = job.default_queue() if queue is None else queue
        if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
            error = ParameterError if isinstance(queue, str) else ParameterTypeError
            raise error(
                f"{name}: queue must be a name of letters, digits and _.:- (at most 128 "
                f"characters), got {queue!r}"
            )
        priority = job.default_priority() if priority is None else priority
        _check_int(name, "priority", priority, -_INT32 - 1, _INT32)
        retries = job.default_retries() if retries is None else retries
        _check_int(name, "retries", retries, 0, _INT32)
        key = job.default_concurrency_key() if concurrency_key is None else concurrency_key
        _check_concurrency_key(name, key)
        delay_seconds, start_at = parse_delay(name, delay)
        timeout_seconds = _timeout(name, job.default_timeout() if timeout is None else timeout)
        return JobRequest(
            job_name=name,
            parameters=self.serializer.dumps(job_class, job._init_args, job._init_kwargs),
            queue=queue,
            priority=priority,
            retries=retries,
            concurrency_key=key,
            source=source,
            delay=delay_seconds,
            start_at=start_at,
            timeout=timeout_seconds,
        )

    def enqueue_now(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        """The kernel's ``jobkit_enqueue``: ``_enqueue_plan`` run on the store's sync methods;
        in a transaction when a job needs a decision."""
        plan = self._enqueue_plan(jobs, requests)
        # Locks are released only after the transaction commits: a lock outside the database
        # (Redis, say) released earlier would let another producer check before this insert
        # is visible. (With the caller's connection the commit is the caller's, later.)
        with contextlib.ExitStack() as locks:  # exits last: after the commit
            if not any(map(self._needs_decision, jobs, requests)):
                return _drive(plan, lambda step: self._perform(step, connection, locks))
            with self.store.transaction(connection) as conn, _using_connection(conn):
                return _drive(plan, lambda step: self._perform(step, conn, locks))

    async def aenqueue_now(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        """The kernel's ``jobkit_enqueue`` for the async API: ``_enqueue_plan`` run on the
        store's async methods, the same way as ``enqueue_now``."""
        plan = self._enqueue_plan(jobs, requests)
        store = await self.aget_async_store()
        async with contextlib.AsyncExitStack() as locks:
            if not any(map(self._needs_decision, jobs, requests)):
                return await _adrive(plan, lambda step: self._aperform(step, connection, locks))
            async with store.atransaction(connection) as conn:
                with _using_connection(conn, asyncio.get_running_loop()):
                    return await _adrive(plan, lambda step: self._aperform(step, conn, locks))

    def _enqueue_plan(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest]
    ) -> Generator[EnqueueStep, Any, list[JobRequest | None]]:
        """The decisions of an enqueue without its I/O, shared by the sync and the async
        kernel (as psycopg shares its protocol code between its two connections): it yields
        the steps its driver performs (``_Insert``, ``_Lock``, ``_Decide``, which is sent back
        the decision), and returns each request as stored, or None where it was declined.

        Jobs that need no decision go in one insert; a job with a concurrency key or its own
        ``should_enqueue`` is decided under its lock, after the inserts before it, so each
        decision sees them."""
        stored: list[JobRequest | None] = [None] * len(requests)
        batch: list[int] = []
        for index, (job, request) in enumerate(zip(jobs, requests, strict=True)):
            if not self._needs_decision(job, request):
                if self._plugins_allow(job, request):
                    batch.append(index)
                continue
            yield from _insert(requests, batch, stored)
            yield _Lock(job, request)
            if (yield _Decide(job, request)):
                yield from _insert(requests, [index], stored)
        yield from _insert(requests, batch, stored)
        return stored

    def _perform(self, step: EnqueueStep, connection: Any, locks: contextlib.ExitStack) -> Any:
        """Do one step of ``_enqueue_plan`` with the store's sync methods."""
        if isinstance(step, _Insert):
            return self.store.enqueue(step.requests, connection=connection)
        if isinstance(step, _Lock):
            return locks.enter_context(self._enqueue_lock(step.job, step.request, connection))
        return self._allowed(step.job, step.request)

    async def _aperform(
        self, step: EnqueueStep, connection: Any, locks: contextlib.AsyncExitStack
    ) -> Any:
        """Do one step of ``_enqueue_plan`` with the store's async methods. The decision is
        user code written sync (``should_enqueue``, ``get_requested_jobs``): it runs in a
        thread, and its reads come back to this loop, on the enqueue's connection."""
        store = await self.aget_async_store()
        if isinstance(step, _Insert):
            return await store.aenqueue(step.requests, connection=connection)
        if isinstance(step, _Lock):
            lock = self._aenqueue_lock(step.job, step.request, connection)
            return await locks.enter_async_context(lock)
        return await asyncio.to_thread(self._allowed, step.job, step.request)

    @staticmethod
    def _needs_decision(job: Job | type[Job], request: JobRequest) -> bool:
        job_class = job if isinstance(job, type) else type(job)
        return bool(request.concurrency_key) or job_class.should_enqueue is not Job.should_enqueue

    def _plugins_allow(self, job: Job, request: JobRequest) -> bool:
        return self.pm.hook.jobkit_should_enqueue(job=job, request=request) is not False

    def _allowed(self, job: Job, request: JobRequest) -> bool:
        with _one_decision():
            if not job.should_enqueue(request.concurrency_key):
                logger.debug(
                    "%r not enqueued: should_enqueue() declined (concurrency key %r)",
                    job,
                    request.concurrency_key,
                )
                return False
            if not self._plugins_allow(job, request):
                logger.debug("%r not enqueued: a jobkit_should_enqueue plugin declined", job)
                return False
        return True

    def _enqueue_lock(
        self, job: Job, request: JobRequest, connection: Any
    ) -> contextlib.AbstractContextManager[Any]:
        if not request.concurrency_key:
            return contextlib.nullcontext()
        lock = job.get_enqueue_lock(request.concurrency_key)
        if lock is None:
            lock = self._lock_hook(self.pm.hook.jobkit_enqueue_lock, request, connection)
        if lock is None:
            raise self._no_lock(request, connection)
        return lock

    def _aenqueue_lock(
        self, job: Job, request: JobRequest, connection: Any
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """The async enqueue's lock: the lock the sync path takes, if it answers for the async
        connection (the job's own ``get_enqueue_lock()``, a lock that needs no connection,
        such as Redis's), held in a thread of its own; else the ``jobkit_async_enqueue_lock``
        answer (the built-in advisory lock's async form). So sync and async producers of one
        key always take the same lock."""
        if not request.concurrency_key:
            return contextlib.nullcontext()
        lock = job.get_enqueue_lock(request.concurrency_key)
        if lock is None:
            lock = self._lock_hook(self.pm.hook.jobkit_enqueue_lock, request, connection)
        if lock is not None:
            return _held_in_a_thread(lock)
        async_lock = self._lock_hook(self.pm.hook.jobkit_async_enqueue_lock, request, connection)
        if async_lock is None:
            raise self._no_lock(request, connection)
        return async_lock  # type: ignore[no-any-return]

    def _lock_hook(self, hook: pluggy.HookCaller, request: JobRequest, connection: Any) -> Any:
        return hook(
            job_name=request.job_name,
            concurrency_key=request.concurrency_key,
            connection=connection,
            settings=self.settings,
        )

    @staticmethod
    def _no_lock(request: JobRequest, connection: Any) -> PluginError:
        return PluginError(
            f"no plugin provides an enqueue lock for {request.job_name} with a concurrency "
            f"key on {type(connection).__name__} connections (is jobkit.builtin.locks in "
            f"disable_plugins without a replacement?)"
        )

    def find_active(
        self, job_class: type[Job], concurrency_key: str | None
    ) -> tuple[JobList[JobRequest], JobList[JobProcess]]:
        """Pending and running attempts of ``job_class``, seen from the enqueue in progress.

        Within one decision (``_allowed``), each key is read once, pending and running
        together, and later calls answer from that read: so ``get_processing_jobs()`` then
        ``get_requested_jobs()`` see one moment, and a job claimed in between is in one of the
        lists, never in neither. A read of every key (None) answers for each key as well."""
        name = self.registry.name_of(job_class)
        reads = _decision_reads.get()
        if reads is None:
            requests, processes = self._read_active(name, concurrency_key)
            return JobList(requests), JobList(processes)
        if (name, concurrency_key) not in reads and (name, None) in reads:
            requests, processes = reads[name, None]
            reads[name, concurrency_key] = (
                [request for request in requests if request.concurrency_key == concurrency_key],
                [process for process in processes if process.concurrency_key == concurrency_key],
            )
        if (name, concurrency_key) not in reads:
            reads[name, concurrency_key] = self._read_active(name, concurrency_key)
        requests, processes = reads[name, concurrency_key]
        return JobList(requests), JobList(processes)

    def _read_active(self, name: str, concurrency_key: str | None) -> ActiveJobs:
        """``Store.find_active`` on the enqueue's connection; for an async enqueue, run on its
        event loop from the decision's thread."""
        connection, loop = _enqueue_connection.get()
        if loop is None:
            return self.store.find_active(
                job_name=name, concurrency_key=concurrency_key, connection=connection
            )
        assert self._async_store is not None  # the async enqueue in progress made it
        read = self._async_store.afind_active(
            job_name=name, concurrency_key=concurrency_key, connection=connection
        )
        return asyncio.run_coroutine_threadsafe(read, loop).result()

    def get_result(self, attempt_id: uuid.UUID | str) -> JobResult | None:
        return self.store.get_result(_attempt_id("get_result", attempt_id))

    async def aget_result(self, attempt_id: uuid.UUID | str) -> JobResult | None:
        attempt = _attempt_id("aget_result", attempt_id)
        return await (await self.aget_async_store()).aget_result(attempt)

    def job_state(self, attempt_id: uuid.UUID | str) -> JobState:
        """Where the job of ``attempt_id`` is now; ``UnknownJobError`` when no attempt has that
        id, so a loop waiting for a job that was never stored ends."""
        state = self.store.job_state(_attempt_id("job_state", attempt_id))
        if state is None:
            raise UnknownJobError(
                f"no job has an attempt with id {attempt_id} (in schema "
                f"{self.settings.schema}): it was never enqueued there, the transaction that "
                f"enqueued it rolled back, or its results were deleted (the results_retention "
                f"setting, jobkit clear)"
            )
        return state

    def queue_depths(self, queues: Iterable[str] | None = None) -> dict[str, QueueDepth]:
        """Each queue's waiting and running jobs, read at one moment: of ``queues`` (in that
        order, a queue with no job at 0), or of every queue that has a job (by name)."""
        names = None if queues is None else queue_names(queues)
        figures = self.store.stats(include_results=False, queues=names)
        if names is None:
            names = sorted(figures.queues)
        return {name: QueueDepth.of(figures.queues.get(name, QueueCounts())) for name in names}

    # Run -------------------------------------------------------------------------------------

    def run_attempt(self, process: JobProcess) -> Outcome:
        """Rebuild the job of ``process`` and run it through ``jobkit_run_job``; never raises.

        A name nobody registered, or parameters that cannot be read back (the serializer refuses
        them, they are nested too deeply to parse, ``__init__`` raises ``ParameterError``), are
        ERRORED without a retry: running again cannot fix them. Anything else, a
        ``BaseException`` included, is ERRORED with its traceback and retried by the job's policy,
        so no job can take its pool child down with it. The error text is bounded by the
        ``error_max_length`` setting. An async job (``async def run``) runs to its end on an
        event loop of its own (a pool child runs them many at once, with ``arun_attempt``).
        """
        job = self._rebuild_attempt(process)
        if isinstance(job, Outcome):
            return self.bounded(job)
        if is_async_job(type(job)):
            return asyncio.run(self._arun_rebuilt(job, process))
        try:
            outcome = self.pm.hook.jobkit_run_job(job=job, process=process)
        except BaseException as error:
            logger.exception("a jobkit_run_job wrapper failed for %r", job)
            outcome = _errored(error, process, retry_delay=0.0)
        return self.bounded(_answered(outcome))

    async def arun_attempt(self, process: JobProcess) -> Outcome:
        """``run_attempt`` for an async job, in the calling task: ``jobkit_run_job``'s wrappers
        run in it around the awaited run (see ``call_awaiting``), so their context (log
        context, spans) is this attempt's alone among the tasks of the loop."""
        job = self._rebuild_attempt(process)
        if isinstance(job, Outcome):
            return self.bounded(job)
        return await self._arun_rebuilt(job, process)

    async def _arun_rebuilt(self, job: Job, process: JobProcess) -> Outcome:
        try:
            outcome = await call_awaiting(self.pm.hook.jobkit_run_job, job=job, process=process)
        except BaseException as error:
            logger.exception("a jobkit_run_job wrapper failed for %r", job)
            outcome = _errored(error, process, retry_delay=0.0)
        return self.bounded(_answered(outcome))

    def is_async(self, job_name: str) -> bool:
        """Whether the job registered as ``job_name`` is async (False for an unknown name)."""
        return job_name in self.registry and is_async_job(self.registry.get(job_name))

    def bounded(self, outcome: Outcome) -> Outcome:
        """``outcome`` with its error text cut to ``error_max_length`` characters and made
        storable (lone surrogates escaped), so no job can send its worker an error too large to
        hold or to write."""
        error = storable_error(outcome.error, self.settings.error_max_length)
        return outcome if error is outcome.error else attrs.evolve(outcome, error=error)

    def _rebuild_attempt(self, process: JobProcess) -> Job | Outcome:
        """The job of ``process``, rebuilt, with ``jobkit_job_started`` sent; or the ERRORED
        outcome of why it could not be."""
        try:
            job_class = self.registry.get(process.job_name)
        except UnknownJobError as error:
            # What import_jobs imported; in a process that did not call it (run_jobs in a
            # test), what the imports setting lists.
            imported = ", ".join(self.job_modules or self.settings.imports) or "no modules"
            return _failed(
                error,
                f"{error}; this worker imported {imported} (the imports and discover_jobs "
                f"settings); register the job in one of them, or add its module to imports",
            )
        try:
            args, kwargs = self.serializer.loads(job_class, process.parameters)
        except Exception as error:  # a ParameterError, or e.g. a RecursionError from deep JSON
            if isinstance(error, ParameterError):
                return _failed(error, f"{error}. {_changed_init_advice(process.job_name)}")
            return _failed(
                error, f"{process.job_name}: its stored parameters cannot be read back: {error!r}"
            )
        try:
            job = job_class(*args, **kwargs)
        except ParameterError as error:
            return _failed(error, str(error))
        except Exception as error:
            return _errored(error, process, retry_delay=0.0)
        job.job_process = process
        notify(self.pm.hook.jobkit_job_started, job=job, process=process)
        return job

    def rebuild_job(self, request: JobRequest) -> Job:
        """The job instance of a stored request, process or result."""
        job_class = self.registry.get(request.job_name)
        args, kwargs = self.serializer.loads(job_class, request.parameters)
        return job_class(*args, **kwargs)

    def retry_delay(self, process: JobProcess) -> float:
        """Seconds before the next attempt of ``process``, from its job's
        ``calculate_retry_delay``; 0 when the job cannot be rebuilt or the method fails."""
        try:
            job = self.rebuild_job(process)
            return seconds(job.calculate_retry_delay(process.retry_attempt + 1))
        except Exception:
            logger.exception(
                "could not compute the retry delay of %s; retrying at once", process.id
            )
            return 0.0

    def ended_outcome(
        self, process: JobProcess, status: Status, error_type: str, why: str, *, rerun: bool = True
    ) -> Outcome:
        """The outcome of an attempt that ended without ``run()`` returning.

        LOST (its process or worker died) and ERRORED ``JobTimeout`` follow the retry policy;
        CANCELLED (a shutdown's grace ran out) runs again at once without using an attempt.
        """
        if not rerun:  # an operator cancelled it
            rerun_in, uses_retry = None, True
        elif status is Status.CANCELLED:
            rerun_in, uses_retry = 0.0, False
        elif process.retry_attempt < process.retries:
            rerun_in, uses_retry = self.retry_delay(process), True
        else:
            rerun_in, uses_retry = None, True
        aborted = status in (Status.LOST, Status.CANCELLED)
        outcome = Outcome(
            status=status,
            error=why,
            error_type=error_type,
            rerun_in=rerun_in,
            rerun_uses_retry=uses_retry,
            # on_aborted runs before the rerun starts (the caller releases it after the call).
            hold_rerun=ON_ABORTED_HOLD
            if aborted and rerun_in is not None and self._reconciles(process.job_name)
            else None,
        )
        return self.bounded(outcome)

    def operator_cancelled(self, process: JobProcess, source: str, detail: str = "") -> Outcome:
        """The outcome of an attempt an operator cancelled (``jobkit cancel``): CANCELLED, error
        type ``CancelledByOperator``, saying who; it does not run again."""
        why = f"cancelled by an operator ({source or 'unknown'})" + detail
        return self.ended_outcome(
            process, Status.CANCELLED, "CancelledByOperator", why, rerun=False
        )

    def _reconciles(self, job_name: str) -> bool:
        """Whether the job overrides ``on_aborted``."""
        return job_name in self.registry and (
            self.registry.get(job_name).on_aborted is not Job.on_aborted
        )

    def finish_and_claim(
        self,
        *,
        worker_id: uuid.UUID,
        completions: Sequence[Completion],
        queues: Sequence[str] = (),
        limit: int = 0,
        started: Sequence[tuple[uuid.UUID, datetime.datetime]] = (),
    ) -> tuple[FinishReport, list[JobProcess]]:
        """Write results and claim within the ``limits`` setting, as
        ``Store.finish_and_claim`` does, except for deferrals that need a decision: those go
        through ``finish_deferral``."""
        decided = [c for c in completions if self._deferral_needs_decision(c)]
        batch = [c for c in completions if c not in decided] if decided else completions
        report, claimed = self.store.finish_and_claim(
            worker_id=worker_id,
            completions=batch,
            queues=queues,
            limit=limit,
            started=started,
            limits=self.flow_limits,
        )
        for completion in decided:
            deferred = self.finish_deferral(worker_id=worker_id, completion=completion)
            report.written.update(deferred.written)
            report.lost_lease += deferred.lost_lease
        return report, claimed

    def _deferral_needs_decision(self, completion: Completion) -> bool:
        outcome, process = completion.outcome, completion.process
        if outcome.status is not Status.DEFERRED or outcome.rerun_in is None:
            return False
        if process.job_name not in self.registry:
            return False
        return self._needs_decision(self.registry.get(process.job_name), process)

    def finish_deferral(self, *, worker_id: uuid.UUID, completion: Completion) -> FinishReport:
        """Write a DEFERRED result, which frees the job's concurrency key, then enqueue the
        job again through its lock and ``should_enqueue`` — all in one transaction, so the
        deferral is never lost half-way. If ``should_enqueue`` declines (another job with the
        key was enqueued meanwhile), the result stays DEFERRED with no rerun."""
        process, outcome = completion.process, completion.outcome
        job = self.rebuild_job(process)
        rerun = JobRequest(
            job_id=process.job_id,
            job_name=process.job_name,
            parameters=process.parameters,
            queue=process.queue,
            priority=process.priority,
            retries=process.retries,
            retry_attempt=process.retry_attempt + (1 if outcome.rerun_uses_retry else 0),
            concurrency_key=process.concurrency_key,
            headers=dict(process.headers),
            source=process.source,
            retry_of=process.id,
            delay=outcome.rerun_in or 0.0,
            timeout=process.timeout,
        )
        result_only = attrs.evolve(completion, outcome=attrs.evolve(outcome, rerun_in=None))
        store = self.store
        with (
            contextlib.ExitStack() as locks,
            store.transaction() as conn,
            _using_connection(conn),
        ):
            report = store.finish(worker_id=worker_id, completions=[result_only], connection=conn)
            if process.id not in report.written:
                return report
            locks.enter_context(self._enqueue_lock(job, rerun, conn))
            if self._allowed(job, rerun):
                store.enqueue([rerun], connection=conn)
                store.link_reruns([(process.id, rerun.id)], connection=conn)
                report.written[process.id] = rerun.id
            else:
                logger.info(
                    "%s %s deferred, but should_enqueue declined to run it again; its result "
                    "stays DEFERRED",
                    process.job_name,
                    process.id,
                )
        return report

    def rescue_dead_workers(
        self,
        *,
        exclude: uuid.UUID | None = None,
        aborted: Callable[[JobResult, datetime.datetime | None], Any] | None = None,
        vouched: Callable[[], bool] = lambda: True,
    ) -> list[JobResult]:
        """Record the attempts of workers that stopped heartbeating as LOST (retried when retries
        remain), put those they never started back in the queue, remove those workers, and call
        ``on_aborted`` (through ``aborted`` when given, so a slow one never holds up the sweep).
        ``exclude`` is the sweeping worker, alive whatever its row says.

        Each worker is rescued in a transaction of its own that first locks its row and checks
        its heartbeat again by the database's clock at that moment, so a beat that arrives
        meanwhile wins; ``vouched()`` is asked last, before the commit: the sweeping worker's
        own heartbeat must vouch that beats were going through all along (a lock that held up
        the dead-looking worker's beats would have held up its own). The store guards each
        write: an attempt its worker finished in the meantime keeps that worker's result."""
        timeout = self.settings.heartbeat_timeout
        rescued: list[tuple[JobResult, datetime.datetime | None]] = []
        for worker_id in self.store.dead_workers(heartbeat_timeout=timeout):
            if worker_id == exclude:
                continue
            try:
                rescued += self._rescue_worker(worker_id, timeout, vouched)
            except _Withdrawn:
                logger.info(
                    "worker %s looked dead, but this worker's own heartbeat was held up "
                    "meanwhile: not rescuing it now",
                    worker_id,
                )
        for result, rerun_at in rescued:
            notify(self.pm.hook.jobkit_job_finished, result=result)
            (aborted or self.aborted)(result, rerun_at)
        return [result for result, _ in rescued]

    def _rescue_worker(
        self, worker_id: uuid.UUID, timeout: float, vouched: Callable[[], bool]
    ) -> list[tuple[JobResult, datetime.datetime | None]]:
        store = self.store
        why = (
            f"worker {worker_id} sent no heartbeat for more than {timeout:g} s; another worker "
            f"rescued its jobs"
        )
        with store.transaction() as conn:
            held = store.lock_dead_worker(
                worker_id=worker_id, heartbeat_timeout=timeout, connection=conn
            )
            if held is None:
                return []  # it beat meanwhile, or something holds its row
            ended = store.database_now()
            completions = [
                Completion(
                    process=process,
                    outcome=(
                        self.ended_outcome(process, Status.LOST, "WorkerLost", why)
                        if process.cancel_source is None
                        else self.operator_cancelled(process, process.cancel_source)
                    ),
                    started_at=process.started_at,
                    ended_at=ended,
                )
                for process in held
                # An attempt that never started goes back to the queue, unless it was cancelled.
                if process.started_at is not None or process.cancel_source is not None
            ]
            # With the limits, so the workers a limit held back are woken as these slots free.
            report, _ = store.finish_and_claim(
                worker_id=worker_id,
                completions=completions,
                queues=(),
                limit=0,
                limits=self.flow_limits,
                connection=conn,
            )
            # Attempts that never started go back to the queue as they were: they did not run.
            # (After the LOST ones' reruns, so those, claimed earlier, are first in line.)
            unstarted = [p.id for p in held if p.started_at is None and p.cancel_source is None]
            returned = store.release(worker_id=worker_id, process_ids=unstarted, connection=conn)
            store.unregister_worker(worker_id=worker_id, connection=conn)
            if not vouched():
                raise _Withdrawn
        written = [c for c in completions if c.process.id in report.written]
        logger.warning(
            "worker %s sent no heartbeat for more than %g s: recorded %d of its jobs LOST and "
            "returned %d it had not started to the queue",
            worker_id,
            timeout,
            len(written),
            len(returned),
        )
        return [
            (
                JobResult.from_completion(c, retry_request_id=report.written[c.process.id]),
                held_rerun_start(c),
            )
            for c in written
        ]

    def aborted(self, result: JobResult, rerun_at: datetime.datetime | None = None) -> None:
        """Call the job's ``on_aborted(result)`` and the ``jobkit_job_aborted`` event, after a
        LOST or CANCELLED result was written; then release its rerun, held until now, to start
        at ``rerun_at`` (see ``held_rerun_start``). Failures are logged, never raised."""
        try:
            self.rebuild_job(result).on_aborted(result)
        except Exception:
            logger.exception(
                "on_aborted of %s %s failed; its result stays %s",
                result.job_name,
                result.id,
                result.status.value,
            )
        notify(self.pm.hook.jobkit_job_aborted, result=result)
        if rerun_at is None or result.retry_request_id is None:
            return
        try:
            self.store.release_held_rerun(request_id=result.retry_request_id, start_at=rerun_at)
        except StoreError as error:
            logger.warning(
                "could not release the rerun %s of %s %s after on_aborted (%s); it starts when "
                "its hold of %g s ends",
                result.retry_request_id,
                result.job_name,
                result.id,
                error,
                ON_ABORTED_HOLD,
            )

    def middleware_chain(self) -> RunJob:
        """What runs each job: the plugins' middleware (``jobkit_add_middleware``), then the
        ``middleware`` setting's, then ``job.run()``; made on first use. Raises
        ``PluginError`` or ``SettingsError`` naming a middleware that is not one."""
        if self._run_chain is None:
            self._run_chain = build_chain(
                self.settings.middleware, plugin_middleware(self.pm, self.settings)
            )
        return self._run_chain

    def async_middleware_chain(self) -> AsyncRunJob:
        """``middleware_chain`` for async jobs (the middleware's ``aprocess_job``); also raises
        ``PluginError`` naming a middleware that cannot wrap async jobs."""
        if self._async_run_chain is None:
            self._async_run_chain = build_async_chain(
                self.settings.middleware, plugin_middleware(self.pm, self.settings)
            )
        return self._async_run_chain

    def run_job(self, job: Job, process: JobProcess) -> Outcome | Coroutine[Any, Any, Outcome]:
        """The kernel's ``jobkit_run_job``: the before-run hooks, the middleware chain and
        ``job.run()``, then the failure hooks if any of them raised, and the after-run hooks
        last (django-db-queue's order). (Its error text is bounded already, so wrappers see
        what will be stored.) For an async job, the coroutine that does it (the async chain,
        ``run()`` awaited), which ``call_awaiting`` awaits between the hook's wrappers."""
        if is_async_job(type(job)):
            return self._arun_job(job, process)
        run_chain = self.middleware_chain()
        try:
            self._before_run(job, process)
            value = run_chain(job)
        except BaseException as error:  # KeyboardInterrupt and SystemExit from a job are errors too
            return self._ran(job, process, error=error)
        return self._ran(job, process, value=value)

    async def _arun_job(self, job: Job, process: JobProcess) -> Outcome:
        try:
            run_chain = self.async_middleware_chain()
        except (PluginError, SettingsError) as error:
            return self.bounded(_failed(error, str(error)))
        try:
            self._before_run(job, process)
            value = await run_chain(job)
        except asyncio.CancelledError as cancelled:
            return self._ran(job, process, error=_interruption(cancelled))
        except BaseException as error:
            return self._ran(job, process, error=error)
        return self._ran(job, process, value=value)

    def _before_run(self, job: Job, process: JobProcess) -> None:
        self.pm.hook.jobkit_before_run(job=job, process=process)
        job.before_run()

    def _ran(
        self, job: Job, process: JobProcess, value: Any = None, error: BaseException | None = None
    ) -> Outcome:
        """The outcome of a run that returned ``value`` or raised ``error``, once the failure
        hooks (if it failed) and the after-run hooks have run."""
        failure: BaseException | None = None
        if isinstance(error, DeferJob):
            outcome = _deferred(error, process)
            if error.output is not None and outcome.status is Status.DEFERRED:
                try:
                    outcome.output = self.output_text(job, error.output)
                except OutputError as problem:  # as a returned value's: rerunning cannot fix it
                    failure, outcome = problem, self.bounded(_failed(problem, str(problem)))
        elif error is not None:
            failure, outcome = error, self.bounded(_errored(error, process, job=job))
        else:
            try:
                output = None if value is None else self.output_text(job, value)
                outcome = Outcome(status=Status.SUCCESSFUL, output=output)
            except OutputError as problem:  # the value cannot be stored: rerunning cannot fix it
                failure, outcome = problem, self.bounded(_failed(problem, str(problem)))
        if failure is not None:
            _logged(job.on_failure, failure)
            notify(self.pm.hook.jobkit_run_failed, job=job, process=process, error=failure)
        _logged(job.after_run)
        notify(self.pm.hook.jobkit_run_ended, job=job, process=process, outcome=outcome)
        return outcome

    def output_text(self, job: Job, value: Any) -> str:
        """``value`` (what ``run()`` returned, not None) as the serializer's JSON, stored with
        the SUCCESSFUL result. Raises ``OutputError`` when the serializer refuses it or its JSON
        is longer than ``output_max_length`` bytes. Never cut: cut JSON is no JSON."""
        job_class = type(job)
        try:
            text = self.serializer.dumps_output(job_class, value)
        except OutputError:
            raise
        except Exception as error:  # a converter hook's failure, a RecursionError from a cycle
            raise OutputError(
                f"{job_class.__qualname__}.run() returned a value of type "
                f"{type(value).__qualname__} that the serializer failed to store: {error!r}"
            ) from error
        limit = self.settings.output_max_length
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise OutputError(
                f"{job_class.__qualname__}.run() returned a value of type "
                f"{type(value).__qualname__} whose JSON is {size:,} bytes, more than the "
                f"output_max_length setting allows ({limit:,}); store big data elsewhere (a "
                f"file, a table) and return where it is, or raise output_max_length"
            )
        return text


class _Withdrawn(Exception):
    """Rolls a rescue back: the sweeping worker can no longer vouch that beats went through."""


class CorePlugin:
    """The kernel's default answers, registered as ``jobkit.core``; wrap them, don't block them."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @hookimpl(trylast=True)
    def jobkit_enqueue(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None] | Coroutine[Any, Any, list[JobRequest | None]]:
        """``enqueue_now``; for the async API's call (of these very requests), the coroutine
        of ``aenqueue_now``, which ``call_awaiting`` awaits between the hook's wrappers."""
        if _async_enqueue.get() is requests:
            return self.runtime.aenqueue_now(jobs, requests, connection)
        return self.runtime.enqueue_now(jobs, requests, connection)

    @hookimpl(trylast=True)
    def jobkit_run_job(
        self, job: Job, process: JobProcess
    ) -> Outcome | Coroutine[Any, Any, Outcome]:
        return self.runtime.run_job(job, process)


# Outcomes ----------------------------------------------------------------------------------------


def error_type(error: BaseException) -> str:
    """A low-cardinality name for the error: the class name, qualified outside builtins."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


IMPORT_FRAMES = 5
"""Frames of an import's traceback that ``where_it_failed`` shows, innermost last."""
_NOT_THE_IMPORTED_CODE = ("<frozen ", str(Path(importlib.__file__).parent), _JOBKIT_DIR)
"""Where the frames of the import machinery (``importlib``'s and jobkit's) come from."""


def where_it_failed(error: BaseException) -> str:
    """The end of ``error``'s traceback, as Python prints it: its last ``IMPORT_FRAMES``
    frames of the code being imported (file, line and the line's code; the machinery of
    ``importlib`` and jobkit left out), then the error (for a ``SyntaxError``, the line with
    a caret)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(_NOT_THE_IMPORTED_CODE)
    ]
    lines = traceback.StackSummary.from_list(frames[-IMPORT_FRAMES:]).format()
    if len(frames) > IMPORT_FRAMES:
        lines.insert(0, f"  ... {len(frames) - IMPORT_FRAMES} frames before these\n")
    return "".join([*lines, *traceback.format_exception_only(error)]).rstrip("\n")


def held_rerun_start(completion: Completion) -> datetime.datetime | None:
    """When the rerun of ``completion``, written held for ``on_aborted``, is to start once
    released: at its place in line (its request's start time) when it goes back in line, else
    its retry delay after the attempt ended. None when it was not held."""
    outcome = completion.outcome
    if outcome.hold_rerun is None or outcome.rerun_in is None:
        return None
    if outcome.rerun_in == 0 and outcome.status in (Status.LOST, Status.CANCELLED):
        return completion.process.start_at
    return completion.ended_at + datetime.timedelta(seconds=outcome.rerun_in)


def storable_error(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: its head and its tail around a note of how much
    was cut (a traceback's start and its last lines are what a reader needs), with lone
    surrogates (from ``surrogateescape``-decoded file names) escaped so it can be encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text

    def note(cut: int) -> str:
        return f"\n\n[... {cut:,} characters cut (error_max_length = {limit}) ...]\n\n"

    kept = limit - len(note(len(text)))  # the longest the note can be
    head = kept // 2
    return text[:head] + note(len(text) - kept) + text[len(text) - (kept - head) :]


def _answered(outcome: Outcome | None) -> Outcome:
    """What ``jobkit_run_job`` answered, or the error of no plugin answering it."""
    if outcome is None:
        unanswered = PluginError("no plugin answered jobkit_run_job (is jobkit.core blocked?)")
        return _failed(unanswered, str(unanswered))
    return outcome


def _call_on_enqueued(jobs: Sequence[Job], stored: Sequence[JobRequest | None]) -> None:
    """Each stored job's ``on_enqueued``; the first exception is raised once all have run (the
    others are logged), so one job's hook cannot keep the next from its own."""
    first: Exception | None = None
    for job, request in zip(jobs, stored, strict=True):
        if request is None or type(job).on_enqueued is Job.on_enqueued:
            continue
        try:
            job.on_enqueued(request)
        except Exception as error:
            if first is None:
                first = error
            else:
                logger.exception("%r.on_enqueued failed", job)
    if first is not None:
        raise first


def _logged(hook: Callable[..., None], *args: Any) -> None:
    """Call a job's failure or after-run hook; its exception is logged and changes nothing."""
    try:
        hook(*args)
    except Exception:
        logger.exception("%s failed", hook.__qualname__)


def _failed(error: BaseException, message: str) -> Outcome:
    return Outcome(status=Status.ERRORED, error=message, error_type=error_type(error))


def _interruption(cancelled: asyncio.CancelledError) -> BaseException:
    """What a sync run would have raised where an async one was cancelled: the worker cancels
    a task with its ``JobTimeout`` or ``JobCancelled`` as the message (see pool), which the
    hooks and the traceback then show; any other cancellation stays as it is."""
    given = cancelled.args[0] if cancelled.args else None
    if isinstance(given, JobInterrupted):
        return given.with_traceback(cancelled.__traceback__)
    return cancelled


def _errored(
    error: BaseException,
    process: JobProcess,
    *,
    job: Job | None = None,
    retry_delay: float | None = None,
) -> Outcome:
    rerun_in = None
    text = "".join(traceback.format_exception(error))
    if process.retry_attempt < process.retries:
        rerun_in = retry_delay
        if job is not None:
            attempt = process.retry_attempt + 1
            try:
                rerun_in = seconds(job.calculate_retry_delay(attempt))
            except ParameterError as problem:  # a delay no clock can schedule (2**attempt grew)
                rerun_in = None
                text += f"\nNot retried: calculate_retry_delay({attempt}): {problem}\n"
            except Exception:
                logger.exception("%r.calculate_retry_delay failed; retrying without delay", job)
                rerun_in = 0.0
    return Outcome(
        status=Status.ERRORED, error=text, error_type=error_type(error), rerun_in=rerun_in
    )


def _changed_init_advice(job_name: str) -> str:
    """What to do when parameters stored at enqueue no longer load: the job changed since."""
    return (
        f"The parameters were stored when the job was enqueued: if {job_name}.__init__ changed "
        f"since, let the jobs enqueued before a change finish first, or keep accepting the old "
        f"parameters (give new ones defaults, take removed ones through **kwargs)"
    )


def _deferred(deferral: DeferJob, process: JobProcess) -> Outcome:
    if deferral.increment_retries and process.retry_attempt >= process.retries:
        return Outcome(
            status=Status.ERRORED,
            error=f"DeferJob(increment_retries=True) with no retries left "
            f"(attempt {process.retry_attempt} of {process.retries} retries)",
            error_type=error_type(deferral),
        )
    try:
        delay = seconds(deferral.delay)
    except (TypeError, ValueError) as error:
        return _failed(error, f"DeferJob(delay={deferral.delay!r}): {error}")
    return Outcome(
        status=Status.DEFERRED, rerun_in=delay, rerun_uses_retry=deferral.increment_retries
    )


def seconds(value: float | datetime.timedelta, what: str = "a delay") -> float:
    """A delay as seconds from a number or a timedelta, from 0 to ``MAX_DELAY``; errors call
    it ``what``. (A ``TypeError`` for what is not a number: a ``calculate_retry_delay`` that
    returns one is retried at once, while a ``ParameterError`` stops its retries.)"""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    if value < 0:
        raise ParameterError(f"{what} cannot be negative, got {value!r}")
    if value > MAX_DELAY:
        raise ParameterError(
            f"{what} cannot be longer than 100 years ({MAX_DELAY:.0f} seconds), got {value!r}"
        )
    return float(value)


def parse_delay(name: str, delay: Delay | None) -> tuple[float, datetime.datetime | None]:
    """``delay`` (seconds, a timedelta, or an aware datetime) as ``(seconds, None)`` or
    ``(0.0, start_at)``; a ``ParameterError`` naming job ``name`` when it is not one."""
    if delay is None:
        return 0.0, None
    if isinstance(delay, datetime.datetime):
        if delay.tzinfo is None or delay.utcoffset() is None:
            raise ParameterError(
                f"{name}: delay as a datetime must be timezone-aware (e.g. "
                f"datetime.now(timezone.utc) + timedelta(minutes=5)), got {delay!r}"
            )
        from_now = delay - datetime.datetime.now(datetime.UTC)
        if abs(from_now.total_seconds()) > MAX_DELAY:
            raise ParameterError(
                f"{name}: delay as a datetime must be within 100 years of now, got "
                f"{delay.isoformat()}"
            )
        return 0.0, delay
    try:
        return seconds(delay, "delay"), None
    except TypeError:
        raise ParameterTypeError(
            f"{name}: delay must be a number of seconds, a timedelta, or an aware datetime to "
            f"start at, got {delay!r}"
        ) from None
    except ParameterError as error:
        raise ParameterError(f"{name}: {error}") from None


def _timeout(name: str, timeout: float | datetime.timedelta | None) -> float | None:
    if timeout is None:
        return None
    try:
        limit = seconds(timeout, "timeout")
    except TypeError as error:
        raise ParameterTypeError(f"{name}: {error}") from None
    except ParameterError as error:
        raise ParameterError(f"{name}: {error}") from None
    if limit == 0:
        raise ParameterError(f"{name}: timeout must be more than 0 seconds, got 0")
    return limit


def queue_names(queues: Iterable[str]) -> list[str]:
    """``queues`` as a list, each checked to be a queue name (``ParameterError`` if not)."""
    if isinstance(queues, str):
        raise ParameterError(
            f"queues is a list of queue names, such as [{queues!r}]; got {queues!r}"
        )
    names = list(queues)
    for name in names:
        if not isinstance(name, str) or not _QUEUE_NAME.match(name):
            raise ParameterError(
                f"a queue name is letters, digits and _.:- (at most 128 characters), got {name!r}"
            )
    return names


def _check_int(name: str, argument: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterTypeError(f"{name}: {argument} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ParameterError(f"{name}: {argument} must be between {low} and {high}, got {value}")


def _check_concurrency_key(name: str, key: Any) -> None:
    """A key PostgreSQL can store and index: text without NUL or lone surrogates, at most
    ``MAX_CONCURRENCY_KEY_BYTES`` long."""
    if not isinstance(key, str):
        raise ParameterTypeError(
            f"{name}: concurrency_key must be a string without NUL, got {key!r}"
        )
    if "\x00" in key:
        raise ParameterError(f"{name}: concurrency_key must be a string without NUL, got {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise ParameterError(
            f"{name}: concurrency_key is not valid Unicode text: it holds a lone surrogate "
            f"({key[error.start]!r} at index {error.start}; os.fsdecode makes those of bytes "
            f"that are not UTF-8), which PostgreSQL cannot store; got {_short(key)}"
        ) from None
    if size > MAX_CONCURRENCY_KEY_BYTES:
        raise ParameterError(
            f"{name}: concurrency_key is {size} bytes long in UTF-8, more than the "
            f"{MAX_CONCURRENCY_KEY_BYTES} its index can hold; use a shorter key (e.g. a hash of "
            f"this one), got {_short(key)}"
        )


def _named_after_the_script(job_class: type[Job]) -> str:
    """Why a job registered under ``__main__.X`` cannot be enqueued, and the two fixes."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    module = Path(script).stem if script else "yourmodule"
    where = f"the script being run ({script})" if script else "the script being run"
    qualname = job_class.__qualname__
    return (
        f"{qualname} is defined in {where}, which Python names __main__, so it is registered "
        f"as '__main__.{qualname}': a name no worker knows, since a worker imports your code as "
        f"modules. Move {qualname} into a module of your app, list that module in the imports "
        f"setting and import {qualname} from it here; or give it a name of its own, "
        f'@register_job(name="{qualname}"), and list this file\'s module ({module}) in the '
        f"imports setting, so that workers register it under that name too"
    )


def _attempt_id(function: str, value: uuid.UUID | str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise ParameterTypeError(
            f"{function}() takes an attempt id, a UUID such as run_in_worker().id, got {value!r}"
        ) from None


def _short(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 4]}...{shown[-1]}"


def caller_location() -> str:
    """``file:line`` of the first frame outside jobkit: where the job was enqueued."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_JOBKIT_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""


@contextlib.contextmanager
def _one_decision() -> Iterator[None]:
    """Let ``find_active`` answer from one read per job and key until the block ends."""
    token = _decision_reads.set({})
    try:
        yield
    finally:
        _decision_reads.reset(token)


@contextlib.contextmanager
def _using_connection(
    connection: Any, loop: asyncio.AbstractEventLoop | None = None
) -> Iterator[None]:
    token = _enqueue_connection.set((connection, loop))
    try:
        yield
    finally:
        _enqueue_connection.reset(token)


# The steps of an enqueue plan, and its two drivers ---------------------------------------------


@attrs.frozen
class _Insert:
    """Insert these requests; the driver sends back the stored ones."""

    requests: list[JobRequest]


@attrs.frozen
class _Lock:
    """Take the enqueue lock of this job's concurrency key, until the transaction ends."""

    job: Job
    request: JobRequest


@attrs.frozen
class _Decide:
    """Ask ``should_enqueue`` and the ``jobkit_should_enqueue`` plugins; send back the answer."""

    job: Job
    request: JobRequest


EnqueueStep = _Insert | _Lock | _Decide


def _insert(
    requests: Sequence[JobRequest], indexes: list[int], stored: list[JobRequest | None]
) -> Generator[EnqueueStep, Any, None]:
    """Yield the insert of ``requests`` at ``indexes`` (if any), note them stored, and empty
    ``indexes``."""
    if indexes:
        yield _Insert([requests[index] for index in indexes])
        for index in indexes:
            stored[index] = requests[index]
        indexes.clear()


def _drive(
    plan: Generator[EnqueueStep, Any, list[JobRequest | None]],
    perform: Callable[[EnqueueStep], Any],
) -> list[JobRequest | None]:
    """Run ``plan``, performing each step it yields and sending back the answer."""
    try:
        step = next(plan)
        while True:
            step = plan.send(perform(step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _adrive(
    plan: Generator[EnqueueStep, Any, list[JobRequest | None]],
    perform: Callable[[EnqueueStep], Awaitable[Any]],
) -> list[JobRequest | None]:
    """``_drive``, awaiting each step."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await perform(step))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def _held_in_a_thread(lock: contextlib.AbstractContextManager[Any]) -> AsyncIterator[Any]:
    """A sync lock held from an async enqueue: entered and exited in one thread of its own
    (a lock may keep its token per thread, as redis-py's does), the loop free meanwhile."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(1, "jobkit-enqueue-lock") as thread:
        entered = await loop.run_in_executor(thread, lock.__enter__)
        try:
            yield entered
        except BaseException as error:
            exit_ = functools.partial(lock.__exit__, type(error), error, error.__traceback__)
            if not await loop.run_in_executor(thread, exit_):
                raise
        else:
            await loop.run_in_executor(thread, lock.__exit__, None, None, None)


_ASYNC_STORE_METHODS = tuple(
    name for name, value in vars(AsyncStore).items() if callable(value) and name[0] != "_"
)
"""The methods of ``AsyncStore``, to name those a store lacks."""


# The process's current runtime -----------------------------------------------------------------

_current: Runtime | None = None
_current_pid: int | None = None
_current_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, built from its settings on first use (and again after a fork,
    since connections cannot cross one)."""
    global _current, _current_pid
    if _current is None or _current_pid != os.getpid():
        with _current_lock:
            if _current is None or _current_pid != os.getpid():
                _current = Runtime.from_settings(load_settings())
                _current_pid = os.getpid()
    return _current


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` this process's runtime; return the previous one."""
    global _current, _current_pid
    with _current_lock:
        previous = _current
        _current, _current_pid = runtime, os.getpid()
    return previous


def enqueue_many(
    jobs: Sequence[Job],
    *,
    queue: str | None = None,
    delay: Delay | None = None,
    priority: int | None = None,
    retries: int | None = None,
    timeout: float | datetime.timedelta | None = None,
    connection: Any = None,
) -> list[JobRequest | None]:
    """Enqueue many jobs in one round trip; arguments left out come from each job's
    ``default_*``. Returns each job's stored request, or None where it was declined."""
    return get_runtime().enqueue_many(
        jobs,
        queue=queue,
        delay=delay,
        priority=priority,
        retries=retries,
        timeout=timeout,
        connection=connection,
    )


async def aenqueue_many(
    jobs: Sequence[Job],
    *,
    queue: str | None = None,
    delay: Delay | None = None,
    priority: int | None = None,
    retries: int | None = None,
    timeout: float | datetime.timedelta | None = None,
    connection: Any = None,
) -> list[JobRequest | None]:
    """``enqueue_many``, async: on the store's async connection pool, or inside the
    transaction of ``connection`` (a ``psycopg.AsyncConnection`` for the built-in store)."""
    return await get_runtime().aenqueue_many(
        jobs,
        queue=queue,
        delay=delay,
        priority=priority,
        retries=retries,
        timeout=timeout,
        connection=connection,
    )


def get_result(attempt_id: uuid.UUID | str) -> JobResult | None:
    """The latest result of the job that ``attempt_id`` (e.g. ``run_in_worker().id``) belongs
    to, following its retries; None while it is pending or running, or when no job has it
    (``job_state`` tells these apart)."""
    return get_runtime().get_result(attempt_id)


async def aget_result(attempt_id: uuid.UUID | str) -> JobResult | None:
    """``get_result``, async."""
    return await get_runtime().aget_result(attempt_id)


async def aclose() -> None:
    """Close the connections the async API opened in the running event loop: await it as an
    app shuts down (a FastAPI lifespan's end), in the loop that enqueued, since a connection
    belongs to its loop. A process that has no runtime yet has nothing to close."""
    runtime = _current if _current_pid == os.getpid() else None
    if runtime is not None:
        await runtime.aclose()


def job_state(attempt_id: uuid.UUID | str) -> JobState:
    """Where the job that ``attempt_id`` (e.g. ``run_in_worker().id``) belongs to is now,
    following its retries: REQUESTED, PROCESSING, or FINISHED with its final ``result``. Raises
    ``UnknownJobError`` when no attempt has that id (never enqueued, rolled back, or its
    results deleted)."""
    return get_runtime().job_state(attempt_id)


def queue_depths(queues: Iterable[str] | None = None) -> dict[str, QueueDepth]:
    """How many jobs wait in each queue (``pending``: ready now), with the ``scheduled`` and
    ``running`` ones and the oldest pending job's wait (``oldest_pending_age``, seconds), read in
    one query cheap enough to poll (an autoscaler's input). With ``queues``, those queues in
    that order, a queue with no job at 0; without, every queue that has a waiting or running
    job, by name. django-db-queue's ``get_queue_depths()`` is ``{name: depth.pending}``."""
    return get_runtime().queue_depths(queues)


__all__ = [
    "JobkitError",
    "Runtime",
    "aenqueue_many",
    "aget_result",
    "enqueue_many",
    "get_result",
    "get_runtime",
    "job_state",
    "queue_depths",
    "set_runtime",
]
