"""Every jobkit hook, with its contract in the docstring.

A hook's name says how it is called: ``jobkit_<noun>`` is a provider (first non-None answer
wins; the built-in answers ``trylast`` so any installed plugin wins), ``jobkit_<verb>`` is an
action (first result, wrappable with ``wrapper=True``), ``jobkit_register_*`` / ``jobkit_add_*``
/ ``jobkit_configure_*`` are contributions (every plugin is called), and
``jobkit_<subject>_<past participle>`` are events (every plugin is called, return values are
ignored, and an exception is logged and swallowed so a broken plugin never loses a result).

``docs/hooks.md`` is generated from this module: ``python docs/gen_hooks.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from jobkit.records import JobProcess, JobRequest, JobResult, Outcome, WorkerInfo
from jobkit.schedule import Recurrence
from jobkit.services import WorkerService
from jobkit.store import Store

if TYPE_CHECKING:
    import uuid

    import cattrs
    import click

    from jobkit.job import Job
    from jobkit.registry import JobRegistry
    from jobkit.runtime import Runtime
    from jobkit.serializer import Serializer
    from jobkit.settings import Settings

hookspec = pluggy.HookspecMarker("jobkit")
hookimpl = pluggy.HookimplMarker("jobkit")


# Store ------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_store(settings: Settings) -> Store | None:
    """Return the Store for ``settings.database_url``, or None if this plugin does not handle
    its scheme.

    :param settings: the resolved settings; ``database_url`` is always set by now.

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.postgres`` answers for
    ``postgresql://`` and ``postgres://`` URLs, ``trylast``.
    Called: once per process (producer, worker main, pool child) when its runtime starts.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_database_url(settings: Settings) -> str | None:
    """Return a database URL to use when the ``database_url`` setting is empty. Not called
    when the ``embedded`` setting is false: then no database_url is an error.

    :param settings: the settings, with ``database_url`` unset.

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.embedded`` starts a PostgreSQL
    server under ``.jobkit/`` when the ``embedded`` extra is installed, ``trylast``.
    Called: once, in the process that resolves settings (the CLI or the app's first enqueue);
    worker pool children receive the resolved URL.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_connection() -> Any:
    """Return the connection of the caller's current transaction, so ``run_in_worker()``
    without ``connection=`` still enqueues inside it; None to use a connection of the store's.

    Framework integrations answer this (e.g. Django's current connection).

    Kind: provider (firstresult). Built-in: none.
    Called: in the producer, once per ``run_in_worker()`` / ``enqueue_many()`` without an
    explicit ``connection``.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_driver_connection(connection: Any) -> Any:
    """Return the store's connection underneath ``connection``, an object of a library this
    plugin adapts (an ORM session, a framework's connection wrapper), so that
    ``run_in_worker(connection=session)`` enqueues inside that object's transaction; None when
    this plugin does not know the object.

    An answer must be the connection the object's transaction runs on (for the built-in store,
    a psycopg 3 connection), with that transaction begun as the library would begin it, so the
    library's commit or rollback decides the job. Raise an error that says how to fix it for
    an object of the library that cannot be adapted (another driver, no database bound).

    For an object of an async library, whose connection is begun by awaiting, answer with an
    awaitable of it (a coroutine): ``arun_in_worker()`` and ``aenqueue_many()`` await it, and
    the sync ``run_in_worker()`` refuses it with an error that names the async API.

    :param connection: what the app passed as ``connection=``, or what ``jobkit_connection``
        answered.

    Kind: provider (firstresult). Built-in: none; an object no plugin answers for goes to the
    store as it is.
    Called: in the producer, once per ``run_in_worker()`` / ``enqueue_many()`` (or their async
    forms) that has a connection.
    Added: 0.1
    """


# Serializers ------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_serializer(settings: Settings, pluginmanager: pluggy.PluginManager) -> Serializer | None:
    """Return the Serializer that turns job parameters into JSON text and back.

    :param settings: the resolved settings.
    :param pluginmanager: the plugin manager, to call ``jobkit_configure_converter``.

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.serializers`` (JSON through a cattrs
    converter), ``trylast``.
    Called: once per process (producer, worker main, pool child) when its runtime starts.
    Added: 0.1
    """


@hookspec
def jobkit_configure_converter(converter: cattrs.Converter) -> None:
    """Register cattrs unstructure/structure hooks for parameter types jobkit does not know.

    A parameter of such a type must be annotated in the job's ``__init__`` so the worker knows
    what to structure it as.

    :param converter: the built-in serializer's ``cattrs.Converter``.

    Kind: contribution (all). Built-in: none; the built-in serializer registers its own hooks
    first, so a plugin's hooks win.
    Called: once per process (producer, worker main, pool child), when the serializer is made.
    Added: 0.1
    """


# Locks ------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_enqueue_lock(
    job_name: str, concurrency_key: str, connection: Any, settings: Settings
) -> contextlib.AbstractContextManager[Any] | None:
    """Return the lock to hold around ``should_enqueue()`` and the insert of a job that has a
    concurrency key, so two producers cannot both pass the check.

    The lock is entered before the check and exited after the enqueue's transaction commits,
    so the next holder sees the insert. (When the enqueue joins the caller's transaction, the
    commit comes later, in the caller's hands: only a lock that lasts until that commit, like
    the built-in, covers the window until then.) A job class's own ``get_enqueue_lock()`` takes
    precedence when it returns a lock. No lock is taken for jobs without a key.

    :param job_name: the registered name of the job.
    :param concurrency_key: the job's non-empty concurrency key.
    :param connection: the enqueue's connection, inside its transaction.
    :param settings: the settings, for a plugin's own section (``settings.section(name)``).

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.locks`` (a transaction-scoped
    PostgreSQL advisory lock), ``trylast``.
    Called: in the producer, once per keyed job enqueued.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_async_enqueue_lock(
    job_name: str, concurrency_key: str, connection: Any, settings: Settings
) -> contextlib.AbstractAsyncContextManager[Any] | None:
    """The async form of ``jobkit_enqueue_lock``, for ``await arun_in_worker()`` and
    ``aenqueue_many()``: return an async context manager held, as that hook's lock is, around
    ``should_enqueue()`` and the insert until the enqueue's transaction commits; None when
    this plugin has no async lock for ``connection``.

    The async path asks ``jobkit_enqueue_lock`` first, with the async connection, so that sync
    and async producers of a key take the same lock: a lock that needs no connection (like
    ``jobkit-redis-lock``'s) answers there, and is entered and exited in a thread of its own;
    one that locks on a sync connection answers None for an async one (as the built-in does),
    and this hook is asked. A plugin whose sync lock declines async connections implements
    this hook too, with the same lock.

    :param job_name: the registered name of the job.
    :param concurrency_key: the job's non-empty concurrency key.
    :param connection: the enqueue's async connection, inside its transaction.
    :param settings: the settings, for a plugin's own section (``settings.section(name)``).

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.locks`` (the same
    transaction-scoped PostgreSQL advisory lock, on a ``psycopg.AsyncConnection``),
    ``trylast``.
    Called: in the producer, once per keyed job enqueued by the async API.
    Added: 0.1
    """


# Enqueue ----------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_should_enqueue(job: Job, request: JobRequest) -> bool | None:
    """Return False to refuse a job across the whole app (a global limit, a rate limit), None to
    let the job's own ``should_enqueue()`` decide. True allows it without asking other plugins.

    Runs under the enqueue lock when the job has a concurrency key, after the job's own
    ``should_enqueue()`` allowed it.

    :param job: the job instance.
    :param request: the request about to be inserted.

    Kind: provider (firstresult). Built-in: none.
    Called: in the producer, once per job enqueued.
    Added: 0.1
    """


# Actions ----------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_enqueue(
    jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
) -> list[JobRequest | None] | None:
    """Enqueue ``jobs`` (paired by position with their ``requests``); return, for each, the
    stored request or None where it was declined.

    Wrap it (``@hookimpl(wrapper=True)``) to observe or decorate every enqueue, e.g. to add
    ``headers`` to the requests before they are stored.

    For the async API (``await arun_in_worker()``, ``aenqueue_many()``) the kernel's answer is a
    coroutine, awaited in the caller's task between the wrappers' halves (as ``jobkit_run_job``'s
    for an async job): wrappers need no change, but run on the event loop, so must not block.
    ``connection`` is then an async one (a ``psycopg.AsyncConnection`` for the built-in store).
    (``docs/async-enqueue.md``)

    :param jobs: the job instances; one for ``run_in_worker()``, many for ``enqueue_many()``.
    :param requests: their requests, with defaults resolved and parameters serialized.
    :param connection: the connection the insert runs on (the caller's, for a transactional
        enqueue).

    Kind: action (firstresult, wrappable). Built-in: the kernel (lock, ``should_enqueue``,
    ``Store.enqueue``; ``Store.aenqueue`` for the async API), ``trylast``.
    Called: in the producer, once per ``run_in_worker()`` or ``enqueue_many()`` call, and per
    ``arun_in_worker()`` or ``aenqueue_many()`` call.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_run_job(job: Job, process: JobProcess) -> Outcome | None:
    """Run one attempt of a job and return its Outcome.

    Wrap it (``@hookimpl(wrapper=True)``) for cross-cutting concerns: spans, logging context,
    timing. A wrapper cannot skip or repeat the job; middleware can (``jobkit_add_middleware``,
    or the ``middleware`` setting).

    For an async job (``async def run``) the kernel's answer is a coroutine, which the pool child
    awaits between the wrappers' halves, in the job's own task: a wrapper runs up to its
    ``yield`` before the job starts and on after it ended, and the context variables it sets are
    the job's alone among the tasks of the loop. Wrappers need no change for async jobs, but run
    on the event loop, so must not block. An implementation that answers instead of the kernel
    may return an awaitable for async jobs too. (``docs/async.md``)

    :param job: the job instance, rebuilt from the stored parameters, with ``job.job_process``
        set.
    :param process: the attempt being run.

    Kind: action (firstresult, wrappable). Built-in: the kernel (the middleware chain, then
    ``job.run()``, awaited for an async job; exceptions become ERRORED, ``DeferJob`` becomes
    DEFERRED, a value returned becomes the SUCCESSFUL outcome's ``output``, the serializer's JSON
    of it), ``trylast``;
    ``jobkit.builtin.logcontext`` wraps it (``tryfirst``) to put the job's id, name and retry
    attempt on every log record made during the run.
    Called: in a worker pool child, once per attempt.
    Added: 0.1
    """


# Lifecycle --------------------------------------------------------------------------------------


@hookspec
def jobkit_before_run(job: Job, process: JobProcess) -> None:
    """Prepare an attempt before ``run()``: the plugin form of a job's ``before_run``
    (django-db-queue's pre-task hook), called before it.

    Raising fails the attempt as if ``run()`` had raised it: ``run()`` and the remaining
    implementations are skipped, the failure hooks are given the exception, the after-run hooks
    still run, and the attempt is ERRORED and retried by the job's policy. Raising ``DeferJob``
    defers it instead. (``jobkit_job_started`` is the event for observing a start: its errors
    are only logged.)

    :param job: the job instance, with ``job.job_process`` set.
    :param process: the attempt about to run.

    Kind: action (all; an exception fails the attempt). Built-in: none.
    Called: in a worker pool child, inside ``jobkit_run_job`` (so its wrappers see it), before
    the middleware chain.
    Added: 0.1
    """


@hookspec
def jobkit_run_failed(job: Job, process: JobProcess, error: BaseException) -> None:
    """Clean up after an attempt that raised: the plugin form of a job's ``on_failure``
    (django-db-queue's failure hook), called after it.

    :param job: the job instance.
    :param process: the attempt.
    :param error: what ``run()`` or a before-run hook raised: any exception, ``JobCancelled``
        when an operator or the shutdown grace interrupted the run, or the ``OutputError`` of a
        value ``run()`` returned that cannot be stored. Not called for ``DeferJob``, nor for an
        attempt whose process died (a timeout kills it; see ``Job.on_aborted``).

    Kind: event (all; an exception is logged and changes nothing). Built-in: none.
    Called: in a worker pool child, inside ``jobkit_run_job``, before the after-run hooks.
    Added: 0.1
    """


@hookspec
def jobkit_run_ended(job: Job, process: JobProcess, outcome: Outcome) -> None:
    """Always last: the plugin form of a job's ``after_run`` (django-db-queue's post-task hook),
    called after it, whether the attempt succeeded, failed or was deferred.

    :param job: the job instance.
    :param process: the attempt.
    :param outcome: how the attempt ends (its status, error text, output).

    Kind: event (all; an exception is logged and never fails the job). Built-in: none.
    Called: in a worker pool child, inside ``jobkit_run_job``, after the failure hooks. Not
    called for an attempt whose process died (a timeout kills it; see ``Job.on_aborted``).
    Added: 0.1
    """


# Middleware -------------------------------------------------------------------------------------


@hookspec
def jobkit_add_middleware(settings: Settings) -> Sequence[type] | None:
    """Return middleware classes to run around every job, like the ``middleware`` setting's:
    each is built with the next step (``cls(run_job)``) and its ``process_job(job)`` calls
    ``self.run_job(job)``, or does not, to skip the job; it returns what that returned (the
    job's output). Subclass ``jobkit.JobMiddleware``.

    Order, outermost first: the classes of the plugin pluggy calls first (the order ``jobkit
    plugins --hook jobkit_add_middleware`` lists), each answer's in its order; then the
    ``middleware`` setting's; then ``job.run()``. The chain runs inside the kernel's
    ``jobkit_run_job``, so that hook's wrappers (spans, log context) surround all of it. Around
    async jobs the chain calls each class's ``async def aprocess_job(job)``, which awaits
    ``self.run_job(job)``; a worker that imports an async job refuses at start-up a middleware
    without one.

    :param settings: the resolved settings, for a plugin's own section.

    Kind: contribution (all). Built-in: none.
    Called: once per process that runs jobs (each worker pool child, ``jobkit run``), before
    its first job; and in the worker's main process at start-up, which stops with the
    plugin's name when an answer is not a list of middleware classes.
    Added: 0.1
    """


# Events -----------------------------------------------------------------------------------------


@hookspec
def jobkit_job_enqueued(job: Job, request: JobRequest) -> None:
    """A request was inserted. With a caller's connection it is not committed yet: the
    transaction may still roll back. The plugin form of a job's ``on_enqueued`` (django-db-queue's
    creation hook), called before it.

    :param job: the job instance that was enqueued (take only ``request`` if you need only it).
    :param request: the stored request.

    Kind: event (all). Built-in: none.
    Called: in the producer, once per stored request.
    Added: 0.1
    """


@hookspec
def jobkit_job_committed(requests: Sequence[JobRequest]) -> None:
    """Requests are in the database for good: the transaction that inserted them committed.

    For an enqueue on jobkit's own connection (or an autocommit one) that is as soon as the
    insert returns. For an enqueue inside the caller's transaction it is after the caller
    commits, noticed by the store a moment later (the built-in asks PostgreSQL about the
    transaction about once a second); if the transaction rolls back, it is never called. Count
    sent jobs here, not in ``jobkit_job_enqueued``. Nothing is watched when no plugin
    implements this hook.

    :param requests: the stored requests of one enqueue call.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts
    ``messaging.client.sent.messages``.
    Called: in the producer, once per enqueue call that stored at least one request, from the
    producer's thread or, after a caller's commit, from the store's watcher thread.
    Added: 0.1
    """


@hookspec
def jobkit_job_started(job: Job, process: JobProcess) -> None:
    """An attempt is about to run.

    :param job: the job instance.
    :param process: the attempt.

    Kind: event (all). Built-in: none.
    Called: in a worker pool child, before ``jobkit_run_job``.
    Added: 0.1
    """


@hookspec
def jobkit_job_finished(result: JobResult) -> None:
    """An attempt's result was written (any status), by the attempt's own worker or by a worker
    that rescued a dead one's attempts (LOST).

    :param result: the stored result; ``retry_request_id`` is set when a retry or deferral
        was enqueued.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts
    ``messaging.client.consumed.messages`` and times ``messaging.process.duration``, by outcome.
    Called: in the worker main process, after the batch of results commits.
    Added: 0.1
    """


@hookspec
def jobkit_job_aborted(result: JobResult) -> None:
    """An attempt ended without ``run()`` seeing it end: LOST (its pool child or its whole worker
    died) or CANCELLED (a shutdown's grace period ran out). Called after the result is written
    and after the job's own ``on_aborted(result)``.

    :param result: the stored result; ``retry_request_id`` is set when it will run again.

    Kind: event (all). Built-in: none.
    Called: in the worker main process that wrote the result: the job's own worker, or the
    worker that rescued a dead worker's jobs.
    Added: 0.1
    """


@hookspec
def jobkit_job_retried(request: JobRequest, source: str) -> None:
    """An operator retried a job that had ended: ``request`` is its new attempt, stored (in the
    transaction that links the job's last result to it).

    :param request: the new attempt's request (``retry_of`` is the result it follows).
    :param source: who retried it (``cli user@host``, a dashboard user, the caller's file and
        line).

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that retried it (the CLI, a dashboard, the app).
    Added: 0.1
    """


@hookspec
def jobkit_job_cancelled(job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
    """An operator cancelled a job: its waiting attempt was recorded CANCELLED, or its running
    attempt's worker was asked to end it (it records the CANCELLED result, and
    ``jobkit_job_aborted`` follows there).

    :param job_id: the job.
    :param attempt_id: the attempt cancelled.
    :param source: who cancelled it.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that cancelled it.
    Added: 0.1
    """


@hookspec
def jobkit_job_deleted(job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
    """An operator deleted a job that did not run: every result of it, and the request its
    latest attempt waited in, are gone (nothing of the job is left to record who did it).

    :param job_id: the job.
    :param attempt_id: its latest attempt when it was deleted.
    :param source: who deleted it.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that deleted it.
    Added: 0.1
    """


@hookspec
def jobkit_job_rescheduled(job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
    """An operator let a job's scheduled attempt start now (run now): its start time became
    the database's now, and the workers of its queue were woken.

    :param job_id: the job.
    :param attempt_id: the attempt that starts now.
    :param source: who asked.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that asked.
    Added: 0.1
    """


@hookspec
def jobkit_queue_paused(queue: str, source: str) -> None:
    """An operator paused a queue: workers claim nothing from it until it is resumed.

    :param queue: the queue.
    :param source: who paused it.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that paused it.
    Added: 0.1
    """


@hookspec
def jobkit_queue_resumed(queue: str, source: str) -> None:
    """An operator resumed a paused queue.

    :param queue: the queue.
    :param source: who resumed it.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` counts it.
    Called: in the process that resumed it.
    Added: 0.1
    """


@hookspec
def jobkit_worker_started(worker: WorkerInfo) -> None:
    """A worker registered and is about to claim jobs.

    :param worker: the worker's heartbeat row.

    Kind: event (all). Built-in: none.
    Called: in the worker main process.
    Added: 0.1
    """


@hookspec
def jobkit_worker_stopped(worker: WorkerInfo) -> None:
    """A worker stopped: its running jobs ended (finished, or CANCELLED at the end of the
    shutdown grace), their results are written, and its heartbeat row is gone.

    :param worker: the worker's heartbeat row (as it was).

    Kind: event (all). Built-in: none.
    Called: in the worker main process, after a SIGTERM/SIGINT or the end of ``--burst``.
    Added: 0.1
    """


@hookspec
def jobkit_worker_stats_reported(worker: WorkerInfo, stats: dict[str, Any]) -> None:
    """A worker's periodic figures: jobs done per outcome since the last report, rate, jobs in
    flight, pool children, and the queue figures from the store.

    :param worker: the worker's heartbeat row.
    :param stats: the same figures the stats log line shows, in its order: ``done_<status>``
        for each status (this worker, since the last report), ``rate_per_second`` (of those),
        ``in_flight`` (jobs its pool children hold, running or waiting their turn),
        ``processes`` (its pool children, those starting included), then from
        ``Store.stats(include_results=False)``, in total over every queue: ``pending``,
        ``scheduled``, ``running`` and ``oldest_pending_age`` (seconds; 0.0 when nothing is
        pending). The store's figures are missing when its query failed.

    Kind: event (all). Built-in: ``jobkit.builtin.otel`` reports ``processes`` as the
    ``jobkit.worker.processes`` gauge.
    Called: in the worker main process every ``worker_stats_every`` seconds.
    Added: 0.1
    """


# Schedules --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def jobkit_parse_schedule(spec: str, timezone: str) -> Recurrence | None:
    """Read the schedule text of a schedule entry, or return None if this plugin does not
    understand it (the next plugin is asked).

    Return a ``jobkit.Schedule``, or any object with ``next(after)`` and
    ``last_fire_at_or_before(moment)`` (see ``jobkit.schedule.Recurrence``), e.g. one that
    reads ``"every 5 minutes"``. Raise ``jobkit.ScheduleError`` for text this plugin owns
    but that is wrong; the worker stops with the entry's position and the message.

    :param spec: the entry's schedule text, as written.
    :param timezone: the IANA zone the entry follows (its own ``timezone``, else the
        ``timezone`` setting).

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.cron`` reads cron expressions and
    ``@daily``-style macros, ``trylast``.
    Called: in the worker main process at start-up and in ``jobkit schedule``, once per entry
    whose schedule is text.
    Added: 0.1
    """


@hookspec
def jobkit_add_schedules(settings: Settings) -> Sequence[Any] | None:
    """Return schedule entries a plugin contributes, in the forms the ``schedule`` setting
    takes: ``(job, schedule)`` pairs or mappings with ``job``, ``schedule`` and the options
    (``queue``, ``priority``, ``retries``, ``timezone``, ``key``, ``catch_up``, ``kwargs``).

    :param settings: the resolved settings, for a plugin's own section.

    Kind: contribution (all). Built-in: none (``jobkit.builtin.cron`` reads the ``schedule``
    setting and the ``schedule`` attribute of job classes itself).
    Called: in the worker main process at start-up and in ``jobkit schedule``.
    Added: 0.1
    """


@hookspec(firstresult=True)
def jobkit_schedule_entries(runtime: Runtime) -> list[dict[str, Any]] | None:
    """Describe every schedule entry with its last recorded tick and its next firings, or
    return None if this plugin keeps no schedules (the next plugin is asked).

    Each entry is a mapping of plain data, as ``jobkit schedule --json`` prints it: ``key``,
    ``job``, ``schedule`` (as text), ``timezone``, ``queue``, ``priority``, ``retries``,
    ``catch_up``, ``kwargs``, ``origin`` (where it was written), ``last_tick`` (an ISO time
    in the entry's zone, or None) and ``next`` (the next three firings, ISO times, after the
    database's now). Raise ``jobkit.ScheduleError`` naming the entry that is wrong.

    :param runtime: the asking process's runtime: settings, plugin manager, store, registry.

    Kind: provider (firstresult). Built-in: ``jobkit.builtin.cron`` describes the entries it
    schedules (the ``schedule`` setting's, job classes', plugins'), ``trylast``.
    Called: by ``jobkit.operations.Operations.schedules`` (the dashboard's Schedules page), in
    the process that asks.
    Added: 0.1
    """


# Extension --------------------------------------------------------------------------------------


@hookspec
def jobkit_configure_runtime(runtime: Runtime) -> None:
    """Set up what a plugin needs in a process that just made its runtime: e.g. the
    OpenTelemetry SDK of a pool child, or a plugin's view of the settings. Raise a
    ``JobkitError`` to stop the process with a message that says what to fix.

    :param runtime: the new runtime: settings (with plugin sections), plugin manager,
        registry. Its store is made on first use; do not touch it here.

    Kind: contribution (all). Built-in: ``jobkit.builtin.otel`` reads its settings section and,
    when ``otel.sdk`` is ``"environment"``, sets up the SDK from the ``OTEL_*`` variables.
    Called: once per runtime: in a producer on the first enqueue, in the worker's main process
    and in each pool child, at start.
    Added: 0.1
    """


@hookspec
def jobkit_register_jobs(registry: JobRegistry) -> None:
    """Register job classes that a plugin provides, with ``registry.register(cls, name)``.

    :param registry: the job registry of this process.

    Kind: contribution (all). Built-in: none.
    Called: once per process, when its runtime starts.
    Added: 0.1
    """


@hookspec
def jobkit_add_worker_services(
    runtime: Runtime, worker_id: uuid.UUID
) -> Sequence[WorkerService] | None:
    """Return services to run inside the worker's main process beside the job loop (see
    ``jobkit.services.WorkerService``). Check their configuration here: raise a
    ``JobkitError`` to stop the worker before it registers, with a message that says what to
    fix.

    :param runtime: the worker's runtime: settings, plugin manager, store, registry (the
        ``imports`` setting's jobs are imported by now).
    :param worker_id: the id the worker registers under.

    Kind: contribution (all). Built-in: ``jobkit.builtin.cron`` (the scheduler, unless
    ``worker_scheduler`` is off).
    Called: once per worker, at start-up; the services start after the worker registered and
    stop while it shuts down.
    Added: 0.1
    """


@hookspec
def jobkit_add_commands(cli: click.Group) -> None:
    """Add commands to the ``jobkit`` command line with ``cli.add_command(...)``.

    :param cli: the ``jobkit`` click group.

    Kind: contribution (all). Built-in: none.
    Called: when the ``jobkit`` command lists or looks up commands.
    Added: 0.1
    """


@hookspec
def jobkit_settings_defaults() -> dict[str, type] | None:
    """Declare a plugin's settings: return ``{section: attrs_class}``.

    Each section is read like jobkit's own settings, with the same errors: from
    ``[tool.jobkit.<section>]`` in pyproject.toml or ``[<section>]`` in jobkit.toml, then
    ``JOBKIT_<SECTION>_<FIELD>`` environment variables. The attrs class's defaults are the
    defaults; ``settings.section(name)`` returns the instance.

    Kind: contribution (all). Built-in: none.
    Called: once per process, while settings are resolved.
    Added: 0.1
    """


@hookspec(historic=True)
def jobkit_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add a plugin's own hook specifications with ``pluginmanager.add_hookspecs(module)``.

    :param pluginmanager: the plugin manager.

    Kind: contribution (historic: a plugin registered later is still called). Built-in: none.
    Called: once per process, when the plugin manager is made.
    Added: 0.1
    """


__all__ = ["hookimpl", "hookspec"]
