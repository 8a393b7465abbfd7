"""Operating jobs: find them, look at one, retry, cancel, delete, run now, pause a queue. The
CLI's commands, the dashboard and the Django admin are faces of these, so each is safe under
concurrency and says what it did: an action that has nothing to do does nothing and says why.

Every action records who took it (``source``: ``cli root@host``, a dashboard user, the caller's
file and line): a retry's request carries it, a cancelled attempt's result says it, a pause keeps
it; a deletion and a run-now, which leave nothing to keep it in, log it and pass it to their
events.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from jobkit.enqueueing import caller_location, parse_delay
from jobkit.errors import JobkitError, ParameterError, UnknownJobError
from jobkit.job import Delay
from jobkit.plugins import notify
from jobkit.records import (
    FAILED,
    Attempt,
    AttemptState,
    JobFilter,
    JobInfo,
    JobRequest,
    JobResult,
    Page,
    PipelineState,
    QueuePause,
    WorkerInfo,
    WorkflowState,
)
from jobkit.runtime import get_runtime

if TYPE_CHECKING:
    from jobkit.runtime import Runtime

logger = logging.getLogger("jobkit.operations")

MAX_PAGE = 1000
"""The most attempts one page may hold."""
COUNT_CAP = 10_000
"""Attempts a listing counts exactly; past it, the database's estimate."""
RETRY_BATCH = 500
"""Jobs one transaction of a bulk retry takes."""
CANCEL_TRIES = 5
"""How often a cancel looks again for an attempt that moved between stages while it looked."""

EVERY_JOB = JobFilter()
WAITING = (AttemptState.PENDING, AttemptState.SCHEDULED)
LIVE = (*WAITING, AttemptState.RUNNING)


class JobNotFound(JobkitError, LookupError):
    """No job has that id (it never existed, it was rolled back, or its results were cleared)."""


@attrs.frozen(kw_only=True)
class ActionReport:
    """What an action did to one job: ``done`` False means it did nothing, and ``message``
    says why (it was retried already, it ended before it could be cancelled, ...)."""

    done: bool
    message: str
    job_id: uuid.UUID | None = None
    """The job acted on (None for an action on a queue)."""
    attempt_id: uuid.UUID | None = None
    """The attempt the action made (a retry's request) or ended (a cancel)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id) if self.job_id else None,
            "done": self.done,
            "message": self.message,
            "attempt_id": str(self.attempt_id) if self.attempt_id else None,
        }


@attrs.frozen(kw_only=True)
class WorkerStatus:
    """A registered worker, whether its heartbeat is stale (the next rescue sweep declares it
    dead), the attempts it runs now, and which of its queues are paused."""

    info: WorkerInfo
    stale: bool
    running: list[Attempt]
    paused_queues: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "id": str(info.id),
            "hostname": info.hostname,
            "pid": info.pid,
            "queues": list(info.queues),
            "started_at": info.started_at.isoformat() if info.started_at else None,
            "last_heartbeat_at": (
                info.last_heartbeat_at.isoformat() if info.last_heartbeat_at else None
            ),
            "stale": self.stale,
            "running": [attempt.as_dict() for attempt in self.running],
            "paused_queues": list(self.paused_queues),
        }


FAILURES = ("ERRORED", "LOST")
"""The statuses a failure rate counts as failed (cancelled and deferred attempts are neither)."""


@attrs.frozen(kw_only=True)
class ThroughputBucket:
    """The results that ended in one time bucket, by status (``SUCCESSFUL``, ``ERRORED``,
    ...)."""

    start: datetime.datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(self.counts.get(status, 0) for status in FAILURES)

    @property
    def failure_rate(self) -> float | None:
        """Failed (errored or lost) among the attempts that succeeded or failed; None when
        none did."""
        settled = self.failed + self.counts.get("SUCCESSFUL", 0)
        return self.failed / settled if settled else None


@attrs.frozen(kw_only=True)
class Throughput:
    """Results per time bucket over a window: every bucket, oldest first, the current one (up
    to now) last, empty ones included."""

    bucket_seconds: int
    buckets: list[ThroughputBucket]

    @property
    def total(self) -> int:
        return sum(bucket.total for bucket in self.buckets)

    @property
    def failed(self) -> int:
        return sum(bucket.failed for bucket in self.buckets)

    @property
    def failure_rate(self) -> float | None:
        settled = self.failed + sum(b.counts.get("SUCCESSFUL", 0) for b in self.buckets)
        return self.failed / settled if settled else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket_seconds": self.bucket_seconds,
            "buckets": [
                {"start": bucket.start.isoformat(), "counts": dict(bucket.counts)}
                for bucket in self.buckets
            ],
        }


def encode_cursor(attempt: Attempt) -> str:
    """The cursor of the page after ``attempt``: opaque text to pass back."""
    text = f"{attempt.at.isoformat()}|{attempt.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, attempt_id = text.partition("|")
        return datetime.datetime.fromisoformat(at), uuid.UUID(attempt_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ParameterError(
            f"cursor {cursor!r} is not one a listing gave: pass the next_cursor of the page "
            f"before, as it was"
        ) from None


def check_filter(filter: JobFilter) -> JobFilter:
    """``filter``, or a ``ParameterError`` naming what is wrong in it."""
    known = {state.value for state in AttemptState} | {FAILED}
    unknown = sorted(set(filter.states) - known)
    if unknown:
        raise ParameterError(f"unknown state {unknown[0]!r}: use {', '.join(sorted(known))}")
    if filter.since and filter.until and filter.since >= filter.until:
        raise ParameterError(f"since ({filter.since}) must be before until ({filter.until})")
    for moment in (filter.since, filter.until):
        if moment is not None and moment.tzinfo is None:
            raise ParameterError(f"since and until must be timezone-aware, got {moment!r}")
    return filter


class Operations:
    """The operations on one runtime's store (see the module docstring)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @property
    def store(self) -> Any:
        return self.runtime.store

    # Finding ------------------------------------------------------------------------------------

    def jobs(
        self,
        filter: JobFilter = EVERY_JOB,
        *,
        limit: int = 50,
        cursor: str | None = None,
        count: bool = True,
    ) -> Page:
        """A page of the attempts ``filter`` matches, newest first, and the cursor of the next
        page; with ``count``, how many match in all (exactly up to ``COUNT_CAP``)."""
        check_filter(filter)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ParameterError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        after = decode_cursor(cursor) if cursor else None
        found = self.store.list_attempts(filter=filter, limit=limit + 1, after=after)
        page, more = found[:limit], len(found) > limit
        total, exact = (
            self.store.count_attempts(filter=filter, cap=COUNT_CAP) if count else (-1, False)
        )
        return Page(
            attempts=page,
            next_cursor=encode_cursor(page[-1]) if more else None,
            total=total,
            total_is_estimate=not exact,
        )

    def job(self, job_id: uuid.UUID | str) -> JobInfo:
        """The job with every attempt it has had; ``JobNotFound`` when there is none."""
        job_id = _uuid(job_id)
        attempts = self.store.job_attempts(job_id)
        if not attempts:
            raise JobNotFound(
                f"no job has the id {job_id}: it was never enqueued, its enqueue rolled back, "
                f"or its results were cleared (results_retention)"
            )
        return JobInfo(
            job_id=job_id,
            attempts=attempts,
            pipeline=self.store.pipeline(job_id),
            workflow_id=self.store.workflow_of_job(job_id),
        )

    def workflow(self, workflow_id: uuid.UUID | str) -> list[WorkflowState]:
        """The workflow's links in order (a group has one, a chain of n jobs n - 1), each with
        its members' final results so far, and its callback with its state now (one read a
        callback); ``JobNotFound`` when there is none."""
        workflow_id = _uuid(workflow_id)
        links = self.store.workflow(workflow_id)
        if not links:
            raise JobNotFound(
                f"no workflow has the id {workflow_id}: it was never enqueued, its enqueue "
                f"rolled back, or it was cleared with its results (results_retention)"
            )
        for link in links:
            if link.callback_id is not None:
                link.callback_state = self._state_now(link.callback_id)
        return links

    def _state_now(self, job_id: uuid.UUID) -> AttemptState | None:
        """The state of the job's latest attempt (None: it has none), in one read."""
        attempts = self.store.job_attempts(job_id)
        return attempts[-1].state if attempts else None

    def cancel_workflow(self, workflow_id: uuid.UUID | str, *, source: str) -> list[ActionReport]:
        """Cancel every job of the workflow that waits: its held callbacks first (last link
        first), so no member's end releases one meanwhile, then its waiting members. Running
        members run on; nothing follows them. A report for each job cancelled."""
        links = self.workflow(workflow_id)
        callbacks = [link.callback_id for link in reversed(links) if link.callback_id]
        members = [m.job_id for link in links for m in link.members if m.status is None]
        reports = []
        for job_id in dict.fromkeys([*callbacks, *members]):
            if self._state_now(job_id) in WAITING:
                reports.append(self.cancel(job_id, source=source))
        return reports

    def pipeline_steps(self) -> dict[str, dict[str, int]]:
        """How many pipelines that have not ended are at each step, by job name then step."""
        return self.store.pipeline_steps()

    def pipelines(self, *, workspace: dict[str, Any], limit: int = 100) -> list[PipelineState]:
        """The pipelines whose workspace contains ``workspace`` (``{"user_id": 42}``: every
        key with that value), the most recently updated first, found through an index."""
        if not isinstance(workspace, dict):
            raise ParameterError(
                f"workspace must be a dict such as {{'user_id': 42}}, got {workspace!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ParameterError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        text = self.runtime.serializer.dumps_output(dict, workspace)
        return self.store.find_pipelines(workspace_json=text, limit=limit)

    def throughput(self, *, buckets: int = 60, bucket_seconds: int = 60) -> Throughput:
        """How many results ended in each of the last ``buckets`` buckets of
        ``bucket_seconds``, by status: ``throughput()`` the last hour by minute,
        ``throughput(buckets=24, bucket_seconds=3600)`` the last day by hour."""
        for name, value, most in (
            ("buckets", buckets, 1440),
            ("bucket_seconds", bucket_seconds, 86400),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise ParameterError(f"{name} must be an integer from 1 to {most}, got {value!r}")
        current, rows = self.store.count_results_by_time(
            buckets=buckets, bucket_seconds=bucket_seconds
        )
        step = datetime.timedelta(seconds=bucket_seconds)
        starts = [current - step * back for back in range(buckets - 1, -1, -1)]
        counts: dict[datetime.datetime, dict[str, int]] = {start: {} for start in starts}
        for start, status, count in rows:
            if start in counts:
                counts[start][status] = count
        return Throughput(
            bucket_seconds=bucket_seconds,
            buckets=[ThroughputBucket(start=start, counts=counts[start]) for start in starts],
        )

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule entry with its last recorded tick and next firings, as the plugin
        that schedules them describes it (``jobkit_schedule_entries``; the built-in cron's, as
        ``jobkit schedule --json`` prints them); empty when no plugin keeps schedules."""
        answer = self.runtime.pm.hook.jobkit_schedule_entries(runtime=self.runtime)
        return list(answer or [])

    def workers(self) -> list[WorkerStatus]:
        """Every registered worker, stale or not, with what it runs now."""
        timeout = self.runtime.settings.heartbeat_timeout
        stale = set(self.store.dead_workers(heartbeat_timeout=timeout))
        running = self.store.list_attempts(
            filter=JobFilter(states=(AttemptState.RUNNING,)), limit=MAX_PAGE
        )
        paused = {pause.queue for pause in self.store.paused_queues()}
        return [
            WorkerStatus(
                info=info,
                stale=info.id in stale,
                running=[attempt for attempt in running if attempt.worker_id == info.id],
                paused_queues=tuple(queue for queue in info.queues if queue in paused),
            )
            for info in self.store.workers()
        ]

    # Retrying ---------------------------------------------------------------------------------

    def retry(
        self, job_id: uuid.UUID | str, *, delay: Delay | None = None, source: str
    ) -> ActionReport:
        """Run a job that ended once more, ``delay`` from now: a new attempt, through the job's
        concurrency key and ``should_enqueue`` like any enqueue. A job that waits or runs, or
        that another retry is taking now, is left alone, and the report says so."""
        job = self.job(job_id)
        latest = job.latest
        if latest.state in LIVE:
            return ActionReport(
                job_id=job.job_id,
                done=False,
                message=f"it has an attempt {latest.state.value} already ({latest.id})",
                attempt_id=latest.id,
            )
        return self._retry([latest.id], delay=delay, source=source).get(
            job.job_id,
            ActionReport(job_id=job.job_id, done=False, message="another retry took it first"),
        )

    def retry_failed(
        self,
        filter: JobFilter = EVERY_JOB,
        *,
        delay: Delay | None = None,
        source: str,
        dry_run: bool = False,
        limit: int | None = None,
    ) -> list[ActionReport]:
        """Retry every failed job ``filter`` matches (its states are replaced by "failed"): at
        most ``limit``; with ``dry_run``, only report which would be retried."""
        failed = attrs.evolve(check_filter(filter), states=(FAILED,))
        reports: list[ActionReport] = []
        after = None
        while limit is None or len(reports) < limit:
            batch = RETRY_BATCH if limit is None else min(RETRY_BATCH, limit - len(reports))
            attempts = self.store.list_attempts(filter=failed, limit=batch, after=after)
            if not attempts:
                break
            after = (attempts[-1].at, attempts[-1].id)
            if dry_run:
                reports += [
                    ActionReport(
                        job_id=a.job_id,
                        done=False,
                        message=f"would retry {a.job_name} ({a.state.value} {a.error_type})",
                        attempt_id=a.id,
                    )
                    for a in attempts
                ]
                continue
            done = self._retry([a.id for a in attempts], delay=delay, source=source)
            reports += [
                done.get(
                    a.job_id,
                    ActionReport(job_id=a.job_id, done=False, message="another retry took it"),
                )
                for a in attempts
            ]
        return reports

    def _retry(
        self, result_ids: Sequence[uuid.UUID], *, delay: Delay | None, source: str
    ) -> dict[uuid.UUID, ActionReport]:
        """Retry the jobs whose final attempts are ``result_ids``, in one transaction that
        holds those results until each is linked to its retry."""
        runtime, store = self.runtime, self.store
        reports: dict[uuid.UUID, ActionReport] = {}
        with store.transaction() as connection:
            results = store.lock_for_retry(result_ids, connection=connection)
            jobs, requests = [], []
            for result in results:
                try:
                    job = runtime.rebuild_job(result)
                except (UnknownJobError, ParameterError) as error:
                    reports[result.job_id] = ActionReport(
                        job_id=result.job_id, done=False, message=f"cannot be retried: {error}"
                    )
                    continue
                jobs.append(job)
                requests.append(self._retry_request(result, delay, source))
            stored = runtime.enqueue_requests(jobs, requests, connection)
            store.link_reruns(
                [(request.retry_of, request.id) for request in stored if request is not None],
                connection=connection,
            )
        for request, stored_request in zip(requests, stored, strict=True):
            if stored_request is None:
                reports[request.job_id] = ActionReport(
                    job_id=request.job_id,
                    done=False,
                    message="should_enqueue declined it (its concurrency key is taken?)",
                )
                continue
            reports[request.job_id] = ActionReport(
                job_id=request.job_id,
                done=True,
                message=f"retried as {stored_request.id}",
                attempt_id=stored_request.id,
            )
            notify(runtime.pm.hook.jobkit_job_retried, request=stored_request, source=source)
        return reports

    @staticmethod
    def _retry_request(result: JobResult, delay: Delay | None, source: str) -> JobRequest:
        """The next attempt of ``result``'s job: as it was, one attempt further, waiting
        ``delay``."""
        seconds, start_at = parse_delay(result.job_name, delay)
        return JobRequest(
            job_id=result.job_id,
            job_name=result.job_name,
            parameters=result.parameters,
            queue=result.queue,
            priority=result.priority,
            retries=result.retries,
            retry_attempt=result.retry_attempt + 1,
            concurrency_key=result.concurrency_key,
            headers=dict(result.headers),
            source=f"retried by {source}",
            retry_of=result.id,
            delay=seconds,
            start_at=start_at,
            timeout=result.timeout,
        )

    # Cancelling -------------------------------------------------------------------------------

    def cancel(self, job_id: uuid.UUID | str, *, source: str) -> ActionReport:
        """Cancel a job's waiting or running attempt. A waiting one is recorded CANCELLED now; a
        running one is ended by its worker within a few seconds (recorded CANCELLED, its
        ``on_aborted`` called). Neither runs again. A job that ended is left alone."""
        job_id = _uuid(job_id)
        why = f"cancelled by an operator ({source})"
        for _ in range(CANCEL_TRIES):
            latest = self.job(job_id).latest
            if latest.state not in LIVE:
                return ActionReport(
                    job_id=job_id,
                    done=False,
                    message=f"nothing to cancel: it ended {latest.state.value.upper()}",
                    attempt_id=latest.id,
                )
            answer = self.store.cancel_attempt(attempt_id=latest.id, source=source, why=why)
            if answer is None:
                continue  # it moved from one stage to the next while we looked: look again
            what, worker_id = answer
            notify(
                self.runtime.pm.hook.jobkit_job_cancelled,
                job_id=job_id,
                attempt_id=latest.id,
                source=source,
            )
            message = (
                "cancelled while it waited"
                if what == "cancelled"
                else f"asked worker {worker_id}, which runs it, to end it"
            )
            return ActionReport(job_id=job_id, done=True, message=message, attempt_id=latest.id)
        return ActionReport(
            job_id=job_id, done=False, message="it kept moving between stages: try again"
        )

    # Deleting and running now -----------------------------------------------------------------

    def delete(
        self, job_id: uuid.UUID | str, *, source: str, dry_run: bool = False
    ) -> ActionReport:
        """Delete a job for good: every attempt's result, and the request its latest attempt
        waits in (a pending or scheduled job is deleted before it runs). A job whose attempt is
        running (or claimed) is left alone: a running attempt is never deleted; cancel it, and
        delete it once it has ended. Who deleted it (``source``) is logged, since nothing of
        the job is left to keep it. With ``dry_run``, only say what would go."""
        job_id = _uuid(job_id)
        for _ in range(CANCEL_TRIES):
            job = self.job(job_id)
            latest = job.latest
            if latest.state is AttemptState.RUNNING:
                return _running_report(job_id, latest)
            if dry_run:
                count = len(job.attempts)
                return ActionReport(
                    job_id=job_id,
                    done=False,
                    message=f"would delete {latest.job_name} ({latest.state.value}, "
                    f"{count} attempt{'s' if count != 1 else ''})",
                    attempt_id=latest.id,
                )
            what, deleted = self.store.delete_job(job_id=job_id)
            if what == "moved":
                continue  # an attempt moved between stages while the store looked: look again
            if what == "running":
                return _running_report(job_id, self.job(job_id).latest)
            if not deleted:
                return ActionReport(
                    job_id=job_id, done=False, message="nothing to delete: it went meanwhile"
                )
            logger.info("job %s (%s) deleted by %s", job_id, latest.job_name, source)
            notify(
                self.runtime.pm.hook.jobkit_job_deleted,
                job_id=job_id,
                attempt_id=latest.id,
                source=source,
            )
            kept = "its request and results" if latest.state in WAITING else "its results"
            return ActionReport(
                job_id=job_id,
                done=True,
                message=f"deleted {kept} ({deleted} attempt{'s' if deleted != 1 else ''})",
                attempt_id=latest.id,
            )
        return ActionReport(
            job_id=job_id, done=False, message="it kept moving between stages: try again"
        )

    def run_now(self, job_id: uuid.UUID | str, *, source: str) -> ActionReport:
        """Let a job's scheduled attempt (a delayed enqueue, a retry waiting out its delay) start
        now, and wake the workers of its queue. Idempotent: a job that is ready already, runs,
        or ended is left alone, and the report says so (retry a job that ended to run it
        again)."""
        job_id = _uuid(job_id)
        latest = self.job(job_id).latest
        if latest.state is AttemptState.SCHEDULED:
            if self.store.run_now(attempt_id=latest.id):
                logger.info("job %s (%s) made to run now by %s", job_id, latest.job_name, source)
                notify(
                    self.runtime.pm.hook.jobkit_job_rescheduled,
                    job_id=job_id,
                    attempt_id=latest.id,
                    source=source,
                )
                when = f"{latest.start_at:%Y-%m-%d %H:%M:%S %Z}" if latest.start_at else "later"
                return ActionReport(
                    job_id=job_id,
                    done=True,
                    message=f"starts now (it was scheduled for {when})",
                    attempt_id=latest.id,
                )
            latest = self.job(job_id).latest  # it became ready, or ran, while we looked
        if latest.state in WAITING:
            paused = {pause.queue for pause in self.store.paused_queues()}
            message = f"it is pending already: a worker of queue {latest.queue} takes it next"
            if latest.queue in paused:
                message = f"it is pending already, but its queue {latest.queue} is paused"
        elif latest.state is AttemptState.RUNNING:
            message = "it runs already"
        else:
            message = f"it ended {latest.state.value.upper()}: retry it to run it again"
        return ActionReport(job_id=job_id, done=False, message=message, attempt_id=latest.id)

    # Queues -----------------------------------------------------------------------------------

    def pause_queue(self, queue: str, *, source: str) -> ActionReport:
        """Stop every worker claiming from ``queue`` (its jobs stay pending) until it is
        resumed; it stays paused across worker restarts."""
        pause, new = self.store.pause_queue(queue=_queue(queue), source=source)
        if new:
            notify(self.runtime.pm.hook.jobkit_queue_paused, queue=queue, source=source)
            return ActionReport(done=True, message=f"paused {queue}")
        when = f"{pause.paused_at:%Y-%m-%d %H:%M:%S %Z}"
        return ActionReport(
            done=False, message=f"{queue} was paused already, at {when} by {pause.source}"
        )

    def resume_queue(self, queue: str, *, source: str) -> ActionReport:
        """Let workers claim from ``queue`` again, and wake them."""
        resumed = self.store.resume_queue(queue=_queue(queue))
        if resumed:
            notify(self.runtime.pm.hook.jobkit_queue_resumed, queue=queue, source=source)
        return ActionReport(
            done=resumed, message=f"resumed {queue}" if resumed else f"{queue} was not paused"
        )

    def paused_queues(self) -> list[QueuePause]:
        return list(self.store.paused_queues())


def _running_report(job_id: uuid.UUID, latest: Attempt) -> ActionReport:
    return ActionReport(
        job_id=job_id,
        done=False,
        message=f"it runs now ({latest.id}), and a running attempt is never deleted: cancel it "
        f"first, then delete it once it has ended",
        attempt_id=latest.id,
    )


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ParameterError(f"{value!r} is not a job id (a UUID)") from None


def _queue(queue: str) -> str:
    from jobkit.settings import _QUEUE_NAME

    if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
        raise ParameterError(
            f"a queue is a name of letters, digits and _.:- (at most 128 characters), got {queue!r}"
        )
    return queue


# The public API: module-level functions on the process's runtime --------------------------------

States = str | Sequence[str] | None


def job_filter(
    *,
    status: States = None,
    queue: States = None,
    name: States = None,
    concurrency_key: str | None = None,
    since: datetime.datetime | datetime.timedelta | None = None,
    until: datetime.datetime | datetime.timedelta | None = None,
    error: str | None = None,
) -> JobFilter:
    """A ``JobFilter`` from keywords: a state (``"errored"``, ``"failed"``, ...), queue or job
    name, or a list of them; ``since``/``until`` as aware datetimes or as timedeltas back from
    now (``since=timedelta(hours=2)``); ``error``: text the error holds."""
    now = datetime.datetime.now(datetime.UTC)
    return check_filter(
        JobFilter(
            states=_names(status),
            queues=_names(queue),
            job_names=_names(name),
            concurrency_key=concurrency_key,
            since=now - since if isinstance(since, datetime.timedelta) else since,
            until=now - until if isinstance(until, datetime.timedelta) else until,
            error_contains=error,
        )
    )


def _names(value: States) -> tuple[str, ...]:
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(name, str) for name in names):
        raise ParameterError(f"expected a name or a list of names, got {value!r}")
    return names


def _source(source: str | None) -> str:
    return source if source is not None else f"python {caller_location()}"


def jobs(
    *,
    limit: int = 50,
    cursor: str | None = None,
    count: bool = True,
    **criteria: Any,
) -> Page:
    """A page of attempts, newest first (criteria as ``job_filter`` takes them):
    ``jobkit.jobs(status="errored", queue="emails", since=timedelta(hours=2))``."""
    return Operations(get_runtime()).jobs(
        job_filter(**criteria), limit=limit, cursor=cursor, count=count
    )


def job(job_id: uuid.UUID | str) -> JobInfo:
    """The job with every attempt it has had; ``JobNotFound`` if there is none."""
    return Operations(get_runtime()).job(job_id)


def workflow(workflow_id: uuid.UUID | str) -> list[WorkflowState]:
    """The workflow's links, members and callbacks; see ``Operations.workflow``."""
    return Operations(get_runtime()).workflow(workflow_id)


def cancel_workflow(
    workflow_id: uuid.UUID | str, *, source: str | None = None
) -> list[ActionReport]:
    """Cancel every waiting job of the workflow; see ``Operations.cancel_workflow``."""
    return Operations(get_runtime()).cancel_workflow(workflow_id, source=_source(source))


def pipeline_steps() -> dict[str, dict[str, int]]:
    """How many pipelines that have not ended are at each step, by job name then step."""
    return Operations(get_runtime()).pipeline_steps()


def pipelines(*, workspace: dict[str, Any], limit: int = 100) -> list[PipelineState]:
    """The pipelines whose workspace contains ``workspace``; see ``Operations.pipelines``."""
    return Operations(get_runtime()).pipelines(workspace=workspace, limit=limit)


def retry(
    job_id: uuid.UUID | str, *, delay: Delay | None = None, source: str | None = None
) -> ActionReport:
    """Run a job that ended once more (after ``delay``); see ``Operations.retry``."""
    return Operations(get_runtime()).retry(job_id, delay=delay, source=_source(source))


def retry_failed(
    *,
    delay: Delay | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    source: str | None = None,
    **criteria: Any,
) -> list[ActionReport]:
    """Retry every failed job the criteria match (``jobkit.retry_failed(queue="emails")``)."""
    return Operations(get_runtime()).retry_failed(
        job_filter(**criteria),
        delay=delay,
        dry_run=dry_run,
        limit=limit,
        source=_source(source),
    )


def cancel(job_id: uuid.UUID | str, *, source: str | None = None) -> ActionReport:
    """Cancel a job's waiting or running attempt; see ``Operations.cancel``."""
    return Operations(get_runtime()).cancel(job_id, source=_source(source))


def delete_job(job_id: uuid.UUID | str, *, source: str | None = None) -> ActionReport:
    """Delete a job that does not run, results and all; see ``Operations.delete``."""
    return Operations(get_runtime()).delete(job_id, source=_source(source))


def run_now(job_id: uuid.UUID | str, *, source: str | None = None) -> ActionReport:
    """Let a job's scheduled attempt start now; see ``Operations.run_now``."""
    return Operations(get_runtime()).run_now(job_id, source=_source(source))


def pause_queue(queue: str, *, source: str | None = None) -> ActionReport:
    """Stop every worker claiming from ``queue`` until ``resume_queue``."""
    return Operations(get_runtime()).pause_queue(queue, source=_source(source))


def resume_queue(queue: str, *, source: str | None = None) -> ActionReport:
    """Let workers claim from ``queue`` again."""
    return Operations(get_runtime()).resume_queue(queue, source=_source(source))


def throughput(*, buckets: int = 60, bucket_seconds: int = 60) -> Throughput:
    """Results per time bucket and status; see ``Operations.throughput``."""
    return Operations(get_runtime()).throughput(buckets=buckets, bucket_seconds=bucket_seconds)


def schedules() -> list[dict[str, Any]]:
    """Every schedule entry, its last tick and next firings; see ``Operations.schedules``."""
    return Operations(get_runtime()).schedules()


def workers() -> list[WorkerStatus]:
    """Every registered worker, stale or not, with what it runs now."""
    return Operations(get_runtime()).workers()
