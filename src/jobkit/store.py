"""The Store protocol: what a storage plugin implements for the kernel.

A store keeps requests, processes, results and worker heartbeats, and makes the moves between
them atomic. The built-in ``jobkit.builtin.postgres`` is one; a third party's store answers the
``jobkit_store`` hook and proves itself with ``jobkit.testing.store_contract``.

Every time a store writes or compares is the database's clock, never the caller's. A
``connection`` argument is the store's own kind of connection (a psycopg connection for the
built-in): the caller's, for a transactional enqueue, or one the store handed out from
``transaction()``.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from jobkit.records import (
    Attempt,
    Completion,
    FinishReport,
    FlowLimit,
    JobFilter,
    JobProcess,
    JobRequest,
    JobResult,
    JobState,
    MemberResult,
    PipelineState,
    QueuePause,
    Stats,
    WorkerInfo,
    WorkflowLink,
    WorkflowState,
)


@runtime_checkable
class Listener(Protocol):
    """A wake-up channel: readable when a request was committed to one of its queues."""

    def fileno(self) -> int:
        """The file descriptor to wait on with ``select``."""

    def drain(self) -> set[str]:
        """Read what arrived without blocking; return the queues that were woken."""

    def probe(self) -> None:
        """Send, over another connection, a notification only this listener hears (``drain``
        takes it in). A worker probes now and then: a connection whose server hangs, or whose
        packets vanish without a reset, reads as idle for ever."""

    def unheard_for(self) -> float:
        """Seconds since the oldest probe not heard yet was sent; 0.0 when none is waiting."""

    def close(self) -> None: ...


@runtime_checkable
class Store(Protocol):
    """Storage for requests, processes, results and workers."""

    # Producer side -------------------------------------------------------------------------

    def transaction(self, connection: Any = None) -> contextlib.AbstractContextManager[Any]:
        """Yield a connection inside a transaction: ``connection``'s own (a savepoint in the
        caller's transaction) or a new one that commits when the block exits cleanly."""

    def enqueue(self, requests: Sequence[JobRequest], *, connection: Any) -> list[JobRequest]:
        """Insert requests in one round trip and wake listeners when the transaction commits.

        Returns the stored requests, with ``start_at`` and ``created_at`` from the database.
        """

    def create_workflows(self, links: Sequence[WorkflowLink], *, connection: Any) -> None:
        """Record workflow links inside ``connection``'s transaction, the one that enqueues
        their members and held callbacks. From then on, in the transaction that writes a
        member's final result (a result no attempt follows, whoever writes it: a worker, a
        rescue, an operator's cancel), the store records it on the member and, when every member
        of the link has one (and none failed, unless ``callback_on_failure``), releases the
        callback (``start_at`` now, its queue woken): once per link, ever, however many
        transactions end members at the same moment. A member an operator retries after it
        failed counts again when its new attempt ends."""

    def workflow_members(self, workflow_id: uuid.UUID) -> list[MemberResult]:
        """The members of the workflow link ``workflow_id`` in order, with their final results
        so far; empty for a link the store does not know."""

    def workflow(self, root_id: uuid.UUID) -> list[WorkflowState]:
        """The links of the workflow ``root_id`` in order, each with its members; empty for a
        workflow the store does not know (or has cleared)."""

    def workflow_of_job(self, job_id: uuid.UUID) -> uuid.UUID | None:
        """The root id of the workflow whose member or callback the job ``job_id`` is."""

    def create_pipeline(self, pipeline: PipelineState, *, connection: Any) -> None:
        """Record a pipeline (its first step and initial workspace) inside ``connection``'s
        transaction, the one that enqueues its first attempt. From then on, the transaction that
        writes a SUCCESSFUL or DEFERRED result of an attempt carrying ``PIPELINE_HEADER`` with
        an output ``{"step": ..., "workspace": ...}`` saves that step and workspace on it."""

    def pipeline(self, job_id: uuid.UUID) -> PipelineState | None:
        """The pipeline whose job is ``job_id``, as last saved; None for any other job."""

    def pipeline_steps(self) -> dict[str, dict[str, int]]:
        """How many pipelines that have not ended are at each step (the one they run next or
        run now), by job name then step, both sorted."""

    def find_pipelines(self, *, workspace_json: str, limit: int) -> list[PipelineState]:
        """Up to ``limit`` pipelines whose workspace contains the JSON object ``workspace_json``
        (each of its keys with that value, nested objects alike), the most recently updated
        first, read through an index rather than every pipeline."""

    def find_active(
        self, *, job_name: str, concurrency_key: str | None, connection: Any
    ) -> tuple[list[JobRequest], list[JobProcess]]:
        """The pending requests and the processes of ``job_name`` (with ``concurrency_key``
        when given), as seen inside ``connection``'s transaction, both read at one moment (one
        statement, one snapshot): a job claimed meanwhile is in exactly one of the two lists.
        ``should_enqueue`` counts with them, and a job missing from both lets a duplicate in."""

    # Worker side ---------------------------------------------------------------------------

    def claim(
        self,
        *,
        worker_id: uuid.UUID,
        queues: Sequence[str],
        limit: int,
        limits: Sequence[FlowLimit] = (),
    ) -> list[JobProcess]:
        """Move up to ``limit`` ready requests to processes owned by ``worker_id``, in one
        statement that no two workers can both win: highest priority first, then the earliest
        start time, then the order of enqueueing.

        With ``limits``, keep each flow limit exactly, whatever other workers claim at the
        same time: at most ``max_running`` processes of its scope at once (a process counts
        from its claim until its result is written or a rescue ends it), and at most
        ``max_starts`` claims of its scope in any ``per`` seconds. A request a limit holds back
        does not hold back the requests behind it that the limit does not count. Without
        ``limits``, a claim costs what it cost before limits existed."""

    def seconds_until_next_start(
        self,
        *,
        queues: Sequence[str],
        limits: Sequence[FlowLimit] = (),
        since: datetime.datetime | None = None,
    ) -> float | None:
        """Seconds until the earliest request of ``queues`` that is not ready yet, or until
        the first of the rate ``limits`` that has no room has room again; None if neither.
        With ``since`` (a worker's claim that came up short, asked at that time), a rate limit
        that had no room then counts even if it has room again now, as 0 seconds: the claim
        found it full, and the window reopened before this question (else the worker, told
        None, would wait for its next poll)."""

    def finish(
        self, *, worker_id: uuid.UUID, completions: Sequence[Completion], connection: Any = None
    ) -> FinishReport:
        """Write results for completed attempts in one transaction, and the retry or deferral
        requests their outcomes ask for. An attempt that ``worker_id`` no longer owns (it was
        rescued by another worker) gets no second result: its id is reported in ``lost_lease``.
        The results are exactly ``JobResult.from_completion`` of each written completion.
        """

    def finish_and_claim(
        self,
        *,
        worker_id: uuid.UUID,
        completions: Sequence[Completion],
        queues: Sequence[str],
        limit: int,
        started: Sequence[tuple[uuid.UUID, datetime.datetime]] = (),
        limits: Sequence[FlowLimit] = (),
        connection: Any = None,
    ) -> tuple[FinishReport, list[JobProcess]]:
        """``finish`` then ``claim`` (keeping ``limits``) in one transaction: the worker's hot
        path, one commit and (where the database allows) one round trip per batch. Either may
        be empty. ``started`` marks attempts that began running (``(id, when)``; never ones in
        ``completions``), so ``dead_workers`` can tell them from attempts that never ran. When a
        completion ends an attempt that a ``max_running`` limit counts, the workers of its queue
        are woken at commit (a claim the limit held back may succeed now). With ``connection``,
        inside that connection's transaction."""

    def link_reruns(
        self, links: Sequence[tuple[uuid.UUID, uuid.UUID]], *, connection: Any = None
    ) -> None:
        """Record on results the requests that run their jobs again (``(result id, request
        id)`` pairs): a deferral re-enqueued through the enqueue lock and ``should_enqueue``
        after its result was written, an operator's retry."""

    def lock_for_retry(
        self, result_ids: Sequence[uuid.UUID], *, connection: Any
    ) -> list[JobResult]:
        """Those of ``result_ids`` that no attempt follows yet, locked in ``connection``'s
        transaction (which links each to its retry); one another transaction holds is left
        out."""

    def release(
        self,
        *,
        worker_id: uuid.UUID,
        process_ids: Sequence[uuid.UUID],
        connection: Any = None,
    ) -> list[uuid.UUID]:
        """Put claimed attempts that never started back in the queue, unchanged (no attempt is
        used); return the ids released. Attempts ``worker_id`` no longer owns are left alone.
        With ``connection``, inside that connection's transaction."""

    def release_held_rerun(self, *, request_id: uuid.UUID, start_at: datetime.datetime) -> bool:
        """Let a rerun written held (``Outcome.hold_rerun``) start at ``start_at``, unless it
        starts sooner already (its hold ran out, or it ran); wake the workers of its queue.
        True if it was still held."""

    def release_unknown(
        self, *, worker_id: uuid.UUID, known_ids: Sequence[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Put back in the queue, unchanged, every attempt ``worker_id`` owns but ``known_ids``
        does not list; return their ids."""

    def listen(self, *, queues: Sequence[str]) -> Listener:
        """A listener woken by ``enqueue`` commits to any of ``queues``."""

    def register_worker(self, worker: WorkerInfo) -> WorkerInfo:
        """Insert the worker's heartbeat row; return it with the database's timestamps."""

    def heartbeat(self, *, worker_id: uuid.UUID) -> datetime.datetime:
        """Record that the worker is alive, stamped with the database's time when the row is
        written (not when the statement began: a beat held up by a lock must not look older
        than it is); return that time. Raise ``LeaseLost`` when the worker's row is gone."""

    def unregister_worker(self, *, worker_id: uuid.UUID, connection: Any = None) -> None:
        """Delete the worker's heartbeat row (on a clean exit, or when it is rescued, inside the
        rescue's ``connection``)."""

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker."""

    def dead_workers(self, *, heartbeat_timeout: float) -> dict[uuid.UUID, list[JobProcess]]:
        """Workers whose heartbeat is older than ``heartbeat_timeout`` seconds, by the database
        clock, with their processes; also the owners of processes whose worker row is gone. A
        restart of the database must not make every live worker look dead: the built-in counts
        the database's start as a heartbeat of every worker."""

    def lock_dead_worker(
        self, *, worker_id: uuid.UUID, heartbeat_timeout: float, connection: Any
    ) -> list[JobProcess] | None:
        """Inside the rescue's transaction (``connection``): if ``worker_id``'s heartbeat is
        still older than ``heartbeat_timeout`` by the database's clock *now* (or its row is gone),
        lock its row, so that a beat arriving meanwhile waits for the rescue's outcome, and
        return its processes; else None. Never waits long for a lock: a row or table someone
        else holds means None (the rescue tries again at the next sweep)."""

    def database_now(self) -> datetime.datetime:
        """The database's clock, read without writing (so no commit delays the answer)."""

    def after_commit(self, connection: Any, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the transaction ``connection`` is in has committed: at once
        when ``connection`` is None (the store's own, committed already), in autocommit mode
        or outside a transaction; otherwise later, from a thread of the store's, once the
        database says the transaction committed. Never when it rolls back. When a callback
        runs, every transaction watched before it that had ended by its commit has been
        decided (called back or dropped). Callbacks are not kept across a restart of the
        process."""

    # Schedules -----------------------------------------------------------------------------

    def record_tick(self, *, key: str, fire_at: datetime.datetime, connection: Any) -> bool:
        """Record that the tick ``fire_at`` of the schedule entry ``key`` is being enqueued,
        inside ``connection``'s transaction; True for exactly one caller per ``(key, fire_at)``
        ever. A concurrent caller waits until the first one's transaction ends: False if it
        committed, True (this caller's turn) if it rolled back. A store may instead raise
        ``TickBusy`` at once while another transaction is recording a tick of ``key`` (the
        built-in one does): the caller tries again shortly, with the same ``fire_at``, and one
        slow or frozen transaction does not hold up the caller's other entries."""

    def last_ticks(self, keys: Sequence[str]) -> dict[str, datetime.datetime]:
        """The latest recorded tick of each of ``keys`` that has one."""

    # Reading and housekeeping ---------------------------------------------------------------

    # Operations ----------------------------------------------------------------------------

    def list_attempts(
        self,
        *,
        filter: JobFilter,
        limit: int,
        after: tuple[datetime.datetime, uuid.UUID] | None = None,
    ) -> list[Attempt]:
        """Up to ``limit`` attempts that ``filter`` matches, newest first by ``Attempt.at`` (ties
        by id, descending), only those after ``after`` (the ``(at, id)`` of the last one of the
        previous page). Reads a page without reading everything that matches."""

    def count_attempts(self, *, filter: JobFilter, cap: int) -> tuple[int, bool]:
        """How many attempts ``filter`` matches, and whether that is exact: when more than
        ``cap`` match, an estimate (never less than ``cap``) and False."""

    def cancel_attempt(
        self, *, attempt_id: uuid.UUID, source: str, why: str
    ) -> tuple[str, uuid.UUID | None] | None:
        """Cancel an attempt for an operator (``source``). A waiting one becomes a CANCELLED
        result, with ``why`` as its error and no rerun: ``("cancelled", None)``. A running one
        is marked, and its worker told, which ends it (only a worker ends its attempts):
        ``("requested", worker_id)``. None when it is neither waiting nor running (it ended, or
        it moved between stages while the store looked: ask again)."""

    def delete_job(self, *, job_id: uuid.UUID) -> tuple[str, int]:
        """Delete a job that does not run, for an operator: every result of it and the request
        its latest attempt waits in, if any, in one transaction. ``("deleted", rows)`` with the
        rows that went (0: no such job, or it went meanwhile). ``("running", 0)`` when its
        latest attempt is claimed or running: nothing is deleted (a running attempt never is).
        ``("moved", 0)`` when an attempt of it moved between stages while the store looked (it
        was claimed, or a rerun of it written): nothing is deleted, ask again."""

    def run_now(self, *, attempt_id: uuid.UUID) -> bool:
        """Let a waiting attempt that is not ready yet (scheduled) start now, by the database's
        clock, and wake the workers of its queue as an enqueue does; True if it was scheduled
        (one that is ready already, runs, ended or does not exist is left alone: False)."""

    def count_results_by_time(
        self, *, buckets: int, bucket_seconds: int
    ) -> tuple[datetime.datetime, list[tuple[datetime.datetime, str, int]]]:
        """How many results ended in each of the last ``buckets`` time buckets of
        ``bucket_seconds``, by status: the start of the current bucket (by the database clock;
        buckets start at multiples of their length since 2000-01-01 UTC), and ``(bucket start,
        status, count)`` rows, oldest first, leaving out buckets and statuses with none. Reads
        only the results of the window, not the whole history."""

    def cancel_requests(self, *, worker_id: uuid.UUID) -> dict[uuid.UUID, str]:
        """The attempts of ``worker_id`` that an operator asked to cancel, with who asked."""

    def pause_queue(self, *, queue: str, source: str) -> tuple[QueuePause, bool]:
        """Stop every worker claiming from ``queue``; return the pause, and whether it is new."""

    def resume_queue(self, *, queue: str) -> bool:
        """Let workers claim from ``queue`` again, and wake them; whether it was paused."""

    def paused_queues(self) -> list[QueuePause]:
        """The paused queues, by name."""

    def job_attempts(self, job_id: uuid.UUID) -> list[Attempt]:
        """Every attempt of the job, oldest first (its results, then the attempt that waits or
        runs now); empty for a job the store does not know."""

    def get_result(self, attempt_id: uuid.UUID) -> JobResult | None:
        """The latest result of the job that ``attempt_id`` belongs to, or None while any
        attempt of it is pending or running (or when no such job exists)."""

    def job_state(self, attempt_id: uuid.UUID) -> JobState | None:
        """Where the job that ``attempt_id`` belongs to is now, following its attempts forward
        from that one (each result to the retry or deferral it led to), read at one moment: its
        latest attempt's request (REQUESTED), process (PROCESSING) or, when no further attempt
        follows, result (FINISHED). None when no attempt has this id: it was never enqueued
        here, its transaction rolled back, or its results were cleared."""

    def stats(
        self,
        *,
        include_results: bool = True,
        heartbeat_timeout: float | None = None,
        queues: Sequence[str] | None = None,
    ) -> Stats:
        """Counts of requests, processes and results, in total and per queue, read at one
        moment of the database clock; with ``include_results=False`` the result counts are left
        at 0 (a cheap query for periodic stats). With ``queues``, only the jobs of those queues
        are counted, in the queues and in the total.

        Each queue's ``oldest_pending_age`` is the seconds since its oldest pending request
        became ready (``now()`` minus the earliest ``start_at`` at or before ``now()``), 0.0
        when none is pending; the total's is the greatest of the queues'. A queue appears
        when it has any request, process or (counted) result.

        With ``heartbeat_timeout`` (seconds, normally the setting), the registered workers are
        counted: ``workers_stale`` those whose heartbeat is older than the timeout by the rule
        of ``dead_workers`` (the database's start counting as a beat), ``workers_active`` the
        rest. Without it both are left at 0. Owners of processes whose worker row is gone are
        not counted."""

    def maintain(self) -> None:
        """Upkeep the store needs now and then, so its queries stay cheap; every running worker
        calls it every few seconds (``MAINTAIN_EVERY``), so concurrent calls must be safe. The
        Postgres store folds the changes of its result counts into one row per queue and status
        here. A store that needs no upkeep does nothing."""

    def clear_results(self, *, older_than: float) -> int:
        """Delete results that ended more than ``older_than`` seconds ago; return how many.
        Schedule ticks that old go too, except each key's latest, and the workflow links that
        ended that long ago (every member ended, the callback, if any, released), and the
        pipelines that ended that long ago."""

    def purge(self) -> int:
        """Delete every request, process, result, schedule tick, workflow and pipeline; return
        how many rows of jobs and ticks went."""

    # Schema -------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations not applied yet; return their names. Safe to run concurrently."""

    def migration_sql(self) -> str:
        """Every migration as one SQL script, for teams that apply migrations their own way;
        made without connecting to the database (it may be out of reach)."""

    def check_schema(self) -> None:
        """Raise ``StoreError`` with the fix when migrations are missing."""

    def location(self) -> str:
        """Where this store keeps jobs, in words for the worker's start line, enough to tell one
        database from another and never a password (the built-in: ``PostgreSQL database 'app'
        at db.internal:5432, schema jobkit``)."""

    def close(self) -> None:
        """Close connections and pools."""


@runtime_checkable
class AsyncStore(Protocol):
    """The async producer side a store adds for ``await arun_in_worker()``,
    ``aenqueue_many()`` and ``aget_result()``. Each method keeps the contract of the ``Store``
    method of the same name without the ``a``; a ``connection`` is the store's async kind (a
    ``psycopg.AsyncConnection`` for the built-in), and one of the sync kind is refused with a
    ``ParameterTypeError`` (as the sync methods refuse an async one). A store without these
    methods serves the sync API only: the async one says so (``StoreError``)."""

    def atransaction(self, connection: Any = None) -> contextlib.AbstractAsyncContextManager[Any]:
        """``transaction``, async: yield an async connection inside a transaction."""

    async def aenqueue(
        self, requests: Sequence[JobRequest], *, connection: Any
    ) -> list[JobRequest]:
        """``enqueue``, async."""

    async def afind_active(
        self, *, job_name: str, concurrency_key: str | None, connection: Any
    ) -> tuple[list[JobRequest], list[JobProcess]]:
        """``find_active``, async."""

    async def aafter_commit(self, connection: Any, callback: Callable[[], None]) -> None:
        """``after_commit``, async (the callback itself is a plain function, called as there)."""

    async def aget_result(self, attempt_id: uuid.UUID) -> JobResult | None:
        """``get_result``, async."""

    async def aclose(self) -> None:
        """Close the async connections (the pool of the running event loop)."""
