"""The enqueue path of a process's runtime: a job becomes a request (its options checked and
its parameters serialized), is decided on under its concurrency key's lock (``should_enqueue``,
the ``jobkit_should_enqueue`` plugins) and inserted, with the same decisions on the sync and the
async API, and the enqueue hooks are told. A ``Runtime`` holds one ``Enqueuer``
(``runtime.enqueuer``) and hands it every enqueue, an operator's retry and a deferral's rerun
included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import datetime
import functools
import inspect
import logging
import math
import sys
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from jobkit.errors import (
    ParameterError,
    ParameterTypeError,
    PluginError,
    UnknownJobError,
)
from jobkit.job import Delay, Job
from jobkit.plugins import call_awaiting, notify
from jobkit.records import (
    JobList,
    JobProcess,
    JobRequest,
    PipelineState,
    WorkflowLink,
)
from jobkit.settings import _QUEUE_NAME

if TYPE_CHECKING:
    from jobkit.runtime import Runtime
    from jobkit.store import AsyncStore

logger = logging.getLogger("jobkit")

JOBKIT_DIR = str(Path(__file__).parent)
"""Where jobkit's own modules are: frames from there are not where a job was enqueued."""
_INT32 = 2**31 - 1
MAX_DELAY = 100 * 365.25 * 86400
"""The longest delay jobkit takes, in seconds (100 years): for ``run_in_worker(delay=...)``
(a number, a timedelta, or a datetime that far from now), ``DeferJob(delay=...)``,
``calculate_retry_delay`` and ``timeout``. A longer one is a mistake (milliseconds taken for
seconds), and past about 290,000 years it no longer fits PostgreSQL's timestamps."""
MAX_CONCURRENCY_KEY_BYTES = 1000
"""The longest concurrency key, in UTF-8 bytes: an index on (job_name, concurrency_key) holds
rows of at most about 2,700 bytes, so this leaves the job name room to spare."""
# The connection of the enqueue in progress, so should_enqueue() sees the same transaction; for
# an async enqueue, with the event loop the connection belongs to (should_enqueue() runs in a
# thread, and reads through that loop, with the async store).
_enqueue_connection: contextvars.ContextVar[
    tuple[Any, tuple[asyncio.AbstractEventLoop, AsyncStore] | None]
] = contextvars.ContextVar("jobkit_enqueue_connection", default=(None, None))
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


class Enqueuer:
    """The enqueues of one runtime. It reads the runtime's plugins, store and serializer when it
    needs them, as the runtime makes them on first use."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

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
        stored = self.runtime.pm.hook.jobkit_enqueue(
            jobs=jobs, requests=requests, connection=connection
        )
        committed = self._enqueued(jobs, stored)
        if committed is not None:
            self.runtime.store.after_commit(connection, committed)
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
        store = await self.runtime.aget_async_store()
        connection = self._callers_connection(connection, asynchronous=True)
        if inspect.isawaitable(connection):  # an async library's connection, begun by awaiting
            connection = await connection
        token = _async_enqueue.set(requests)
        try:
            stored = await call_awaiting(
                self.runtime.pm.hook.jobkit_enqueue,
                jobs=jobs,
                requests=requests,
                connection=connection,
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
                notify(self.runtime.pm.hook.jobkit_job_enqueued, job=job, request=request)
        committed = self.runtime.pm.hook.jobkit_job_committed
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
            connection = self.runtime.pm.hook.jobkit_connection()
        if connection is None:
            return None
        driver = self.runtime.pm.hook.jobkit_driver_connection(connection=connection)
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
        with self.runtime.store.transaction(self._callers_connection(connection)) as conn:
            self.runtime.store.create_workflows(links, connection=conn)
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
        with self.runtime.store.transaction(self._callers_connection(connection)) as conn:
            (stored,) = self.enqueue_requests([job], [request], conn)
            if stored is not None:
                pipeline.job_id = stored.job_id
                self.runtime.store.create_pipeline(pipeline, connection=conn)
        return stored

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
        name = self.runtime.registry.name_of(job_class)
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
            parameters=self.runtime.serializer.dumps(job_class, job._init_args, job._init_kwargs),
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
            if not any(map(self.needs_decision, jobs, requests)):
                return _drive(plan, lambda step: self._perform(step, connection, locks))
            with self.runtime.store.transaction(connection) as conn, using_connection(conn):
                return _drive(plan, lambda step: self._perform(step, conn, locks))

    async def aenqueue_now(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> list[JobRequest | None]:
        """The kernel's ``jobkit_enqueue`` for the async API: ``_enqueue_plan`` run on the
        store's async methods, the same way as ``enqueue_now``."""
        plan = self._enqueue_plan(jobs, requests)
        store = await self.runtime.aget_async_store()
        async with contextlib.AsyncExitStack() as locks:
            if not any(map(self.needs_decision, jobs, requests)):
                return await _adrive(plan, lambda step: self._aperform(step, connection, locks))
            async with store.atransaction(connection) as conn:
                with using_connection(conn, (asyncio.get_running_loop(), store)):
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
            if not self.needs_decision(job, request):
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
            return self.runtime.store.enqueue(step.requests, connection=connection)
        if isinstance(step, _Lock):
            return locks.enter_context(self.enqueue_lock(step.job, step.request, connection))
        return self.allowed(step.job, step.request)

    async def _aperform(
        self, step: EnqueueStep, connection: Any, locks: contextlib.AsyncExitStack
    ) -> Any:
        """Do one step of ``_enqueue_plan`` with the store's async methods. The decision is
        user code written sync (``should_enqueue``, ``get_requested_jobs``): it runs in a
        thread, and its reads come back to this loop, on the enqueue's connection."""
        store = await self.runtime.aget_async_store()
        if isinstance(step, _Insert):
            return await store.aenqueue(step.requests, connection=connection)
        if isinstance(step, _Lock):
            lock = self._aenqueue_lock(step.job, step.request, connection)
            return await locks.enter_async_context(lock)
        return await asyncio.to_thread(self.allowed, step.job, step.request)

    @staticmethod
    def needs_decision(job: Job | type[Job], request: JobRequest) -> bool:
        job_class = job if isinstance(job, type) else type(job)
        return bool(request.concurrency_key) or job_class.should_enqueue is not Job.should_enqueue

    def _plugins_allow(self, job: Job, request: JobRequest) -> bool:
        return self.runtime.pm.hook.jobkit_should_enqueue(job=job, request=request) is not False

    def allowed(self, job: Job, request: JobRequest) -> bool:
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

    def enqueue_lock(
        self, job: Job, request: JobRequest, connection: Any
    ) -> contextlib.AbstractContextManager[Any]:
        if not request.concurrency_key:
            return contextlib.nullcontext()
        lock = job.get_enqueue_lock(request.concurrency_key)
        if lock is None:
            lock = self._lock_hook(self.runtime.pm.hook.jobkit_enqueue_lock, request, connection)
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
            lock = self._lock_hook(self.runtime.pm.hook.jobkit_enqueue_lock, request, connection)
        if lock is not None:
            return _held_in_a_thread(lock)
        async_lock = self._lock_hook(
            self.runtime.pm.hook.jobkit_async_enqueue_lock, request, connection
        )
        if async_lock is None:
            raise self._no_lock(request, connection)
        return async_lock  # type: ignore[no-any-return]

    def _lock_hook(self, hook: pluggy.HookCaller, request: JobRequest, connection: Any) -> Any:
        return hook(
            job_name=request.job_name,
            concurrency_key=request.concurrency_key,
            connection=connection,
            settings=self.runtime.settings,
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
        name = self.runtime.registry.name_of(job_class)
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
        connection, on_loop = _enqueue_connection.get()
        if on_loop is None:
            return self.runtime.store.find_active(
                job_name=name, concurrency_key=concurrency_key, connection=connection
            )
        loop, store = on_loop
        read = store.afind_active(
            job_name=name, concurrency_key=concurrency_key, connection=connection
        )
        return asyncio.run_coroutine_threadsafe(read, loop).result()


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


def _short(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 4]}...{shown[-1]}"


def caller_location() -> str:
    """``file:line`` of the first frame outside jobkit: where the job was enqueued."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(JOBKIT_DIR):
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
def using_connection(
    connection: Any, on_loop: tuple[asyncio.AbstractEventLoop, AsyncStore] | None = None
) -> Iterator[None]:
    """Make ``connection`` the one ``find_active`` reads on while the block runs (with, for an
    async enqueue, its event loop and the async store that reads on it)."""
    token = _enqueue_connection.set((connection, on_loop))
    try:
        yield
    finally:
        _enqueue_connection.reset(token)


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


def enqueued_asynchronously(requests: Sequence[JobRequest]) -> bool:
    """Whether ``requests`` are those of the async API's enqueue in progress."""
    return _async_enqueue.get() is requests
