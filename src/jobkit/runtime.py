"""The runtime of one process: its settings, plugin manager, store, serializer and registry.

A producer gets one lazily from its settings on the first ``run_in_worker()``; the worker and
its pool children build theirs from the settings they are given. The kernel's own answers to
``jobkit_enqueue`` and ``jobkit_run_job`` live here, registered as the ``jobkit.core`` plugin;
the enqueue path itself is ``jobkit.enqueueing``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import logging
import os
import threading
import traceback
import uuid
from collections.abc import (
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from pathlib import Path
from typing import Any

import attrs
import pluggy

from jobkit.enqueueing import (
    JOBKIT_DIR,
    Enqueuer,
    enqueued_asynchronously,
    seconds,
    using_connection,
)
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
    QueueCounts,
    QueueDepth,
    Status,
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

ON_ABORTED_HOLD = 10.0
"""Seconds the rerun of a LOST or CANCELLED attempt waits, at most, for its job's ``on_aborted``
to return: it is released as soon as it has, and starts when the hold runs out if the call hangs
or the worker making it dies (as long as a stopping worker waits for ``on_aborted`` calls)."""


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
        self.enqueuer = Enqueuer(self)

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

    # Enqueue (the path itself is jobkit.enqueueing's) ----------------------------------------

    def enqueue(self, job: Job, *, connection: Any = None, **options: Any) -> JobRequest | None:
        """``job`` enqueued with ``build_request``'s options; see ``Enqueuer.enqueue``."""
        return self.enqueuer.enqueue(job, connection=connection, **options)

    def enqueue_many(
        self, jobs: Sequence[Job], *, connection: Any = None, **options: Any
    ) -> list[JobRequest | None]:
        return self.enqueuer.enqueue_many(jobs, connection=connection, **options)

    async def aenqueue(
        self, job: Job, *, connection: Any = None, **options: Any
    ) -> JobRequest | None:
        return await self.enqueuer.aenqueue(job, connection=connection, **options)

    async def aenqueue_many(
        self, jobs: Sequence[Job], *, connection: Any = None, **options: Any
    ) -> list[JobRequest | None]:
        return await self.enqueuer.aenqueue_many(jobs, connection=connection, **options)

    def build_request(self, job: Job, **options: Any) -> JobRequest:
        return self.enqueuer.build_request(job, **options)

    def enqueue_requests(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        return self.enqueuer.enqueue_requests(jobs, requests, connection)

    def find_active(
        self, job_class: type[Job], concurrency_key: str | None
    ) -> tuple[JobList[JobRequest], JobList[JobProcess]]:
        return self.enqueuer.find_active(job_class, concurrency_key)

    def workflow_inputs(self, process: JobProcess | None) -> list[MemberResult]:
        """What the callback running as ``process`` receives: the members of the workflow link
        it waited for, with their final results; empty for any other job."""
        if process is None or INPUTS_HEADER not in process.headers:
            return []
        return self.store.workflow_members(uuid.UUID(process.headers[INPUTS_HEADER]))

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
        if self.is_async(process.job_name):  # the registered class, which ``job`` is of
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
        return self.registry.is_async(job_name)

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
        return self.enqueuer.needs_decision(self.registry.get(process.job_name), process)

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
            using_connection(conn),
        ):
            report = store.finish(worker_id=worker_id, completions=[result_only], connection=conn)
            if process.id not in report.written:
                return report
            locks.enter_context(self.enqueuer.enqueue_lock(job, rerun, conn))
            if self.enqueuer.allowed(job, rerun):
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
        if enqueued_asynchronously(requests):
            return self.runtime.enqueuer.aenqueue_now(jobs, requests, connection)
        return self.runtime.enqueuer.enqueue_now(jobs, requests, connection)

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
_NOT_THE_IMPORTED_CODE = ("<frozen ", str(Path(importlib.__file__).parent), JOBKIT_DIR)
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


def _attempt_id(function: str, value: uuid.UUID | str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise ParameterTypeError(
            f"{function}() takes an attempt id, a UUID such as run_in_worker().id, got {value!r}"
        ) from None


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
