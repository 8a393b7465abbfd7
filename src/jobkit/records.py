"""The records passed between the kernel, the store and plugins.

A job moves through three stages, the seed systems' data model and the operator's vocabulary:
a **request** waits to be claimed, a **process** is claimed by a worker and runs, a **result**
is history. One attempt keeps one ``id`` through all three stages; ``job_id`` is the id of the
first attempt and stays the same across retries and deferrals, so it names the job as a whole.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import operator
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from jobkit.redaction import redact_credentials


class Status(enum.StrEnum):
    """How an attempt ended."""

    SUCCESSFUL = "SUCCESSFUL"
    ERRORED = "ERRORED"
    DEFERRED = "DEFERRED"
    LOST = "LOST"
    CANCELLED = "CANCELLED"


class Stage(enum.StrEnum):
    """Where a job is: its latest attempt's stage."""

    REQUESTED = "requested"
    """Waiting to be claimed: a request, pending or scheduled (a retry or a deferral too)."""
    PROCESSING = "processing"
    """Claimed by a worker: a process, waiting in its pool or running."""
    FINISHED = "finished"
    """Ended: a result that no further attempt follows."""


def new_attempt_id() -> uuid.UUID:
    """A new attempt (and job) id: a UUID in the version 7 layout of RFC 9562, its first 48 bits
    the Unix time in milliseconds and the rest random. Ids made later sort later, so the primary
    key of a big ``results`` table takes each new one near its right edge; a random (version 4)
    id lands on a random page of it, and after each checkpoint the first change to a page writes
    all of it to the WAL (about 12 KB a job with ten million results, against 1.7 KB)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # the version, 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the variant, RFC 9562's
    return uuid.UUID(int=value)


def _read_output(text: str | None) -> Any:
    if text is None:
        return None
    from jobkit.runtime import get_runtime

    return get_runtime().serializer.loads_output(text)


@attrs.define(kw_only=True)
class JobRequest:
    """A job waiting to be claimed.

    ``parameters`` is the JSON text the serializer made of the job's ``__init__`` arguments.
    Before the store inserts a request, ``delay`` (seconds from the database's ``now()``) or
    ``start_at`` (an absolute time) says when it may start; the stored request has ``start_at``
    and ``created_at`` from the database clock.
    """

    id: uuid.UUID = attrs.field(factory=new_attempt_id)
    job_id: uuid.UUID = attrs.field()
    job_name: str
    parameters: str
    queue: str = "default"
    priority: int = 0
    retries: int = 0
    retry_attempt: int = 0
    concurrency_key: str = ""
    headers: dict[str, str] = attrs.field(factory=dict)
    source: str = ""
    retry_of: uuid.UUID | None = None
    delay: float = 0.0
    start_at: datetime.datetime | None = None
    created_at: datetime.datetime | None = None
    timeout: float | None = None
    """Seconds a run may take before its process is killed and it is recorded ERRORED."""

    @job_id.default
    def _first_attempt_names_the_job(self) -> uuid.UUID:
        return self.id

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # Records cross the worker's pipes by the thousand: a tuple of values pickles in a
        # fraction of the time of attrs' default dict of fields.
        cls: type = type(self)
        return _rebuild, (cls, _field_values(cls)(self))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls))


@functools.cache
def _field_values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    return operator.attrgetter(*_field_names(cls))


def _rebuild(cls: type, values: tuple[Any, ...]) -> Any:
    return cls(**dict(zip(_field_names(cls), values, strict=True)))


_REQUEST_FIELDS = tuple(field.name for field in attrs.fields(JobRequest) if field.name != "delay")


@attrs.define(kw_only=True)
class JobProcess(JobRequest):
    """A job claimed by a worker: pending start, or running."""

    worker_id: uuid.UUID
    claimed_at: datetime.datetime
    started_at: datetime.datetime | None = None
    """When a pool child started it, as far as its worker has reported (None: not yet)."""
    cancel_source: str | None = None
    """Who asked to cancel it (``jobkit cancel``), when an operator did; its worker ends it."""


@attrs.define(kw_only=True)
class JobResult(JobRequest):
    """The record of one finished attempt."""

    worker_id: uuid.UUID | None = None
    status: Status
    error: str = ""
    error_type: str = ""
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    retry_request_id: uuid.UUID | None = None
    output_json: str | None = None
    """The JSON text the serializer made of what a SUCCESSFUL attempt's ``run()`` returned, or
    as the store gives it back (the same JSON value, not always the same text: ``jsonb`` orders
    keys its own way); None when it returned None (and for every other status)."""

    @property
    def output(self) -> Any:
        """What ``run()`` returned, read back by this process's serializer; None when it
        returned None."""
        return _read_output(self.output_json)

    @classmethod
    def from_completion(
        cls, completion: Completion, *, retry_request_id: uuid.UUID | None
    ) -> JobResult:
        """The result ``Store.finish`` wrote for ``completion``."""
        process = completion.process
        outcome = completion.outcome
        fields = {name: getattr(process, name) for name in _REQUEST_FIELDS}
        return cls(
            **fields,
            worker_id=process.worker_id,
            status=outcome.status,
            error=outcome.error,
            error_type=outcome.error_type,
            started_at=completion.started_at,
            ended_at=completion.ended_at,
            retry_request_id=retry_request_id,
            output_json=outcome.output,
        )

    @property
    def retries_exhausted(self) -> bool:
        """True when no further attempt follows this one because of its retry budget."""
        return self.retry_attempt >= self.retries


WORKFLOW_HEADER = "jobkit-workflow"
"""The request header naming the workflow a job is a member of: its final result counts there."""
INPUTS_HEADER = "jobkit-inputs"
"""The request header naming the workflow whose members' final results a callback receives."""
PIPELINE_HEADER = "jobkit-pipeline"
"""The request header of a pipeline's attempts: each step's result saves its workspace."""
HELD_UNTIL = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)
"""The start time of a workflow's callback until the store releases it (sets it to now)."""


@attrs.define(kw_only=True)
class WorkflowLink:
    """One fan-in of a workflow as a store keeps it: jobs whose final results, once each has one,
    release a callback request enqueued held (``start_at`` at ``HELD_UNTIL``). A group is one
    link; a chain of n jobs is n - 1 links, each job the callback of the link before it."""

    id: uuid.UUID
    root_id: uuid.UUID
    """The workflow as its caller knows it (a group's own id, a chain's first link's)."""
    name: str
    members: list[JobRequest]
    callback: JobRequest | None
    callback_on_failure: bool
    """Whether the callback is released when a member's final result is not SUCCESSFUL."""


@attrs.define(kw_only=True)
class MemberResult:
    """A workflow member as its callback receives it: its final result so far."""

    job_id: uuid.UUID
    job_name: str
    position: int
    """Its place in the order the workflow was given its jobs (from 0)."""
    status: Status | None
    """Its final attempt's status; None while it has none."""
    output_json: str | None = None
    ended_at: datetime.datetime | None = None

    @property
    def output(self) -> Any:
        """What its ``run()`` returned, read back by this process's serializer (None: nothing)."""
        return _read_output(self.output_json)

    @property
    def failed(self) -> bool:
        """True when it ended other than SUCCESSFUL (ERRORED, LOST or CANCELLED)."""
        return self.status is not None and self.status is not Status.SUCCESSFUL


class CallbackStage(enum.StrEnum):
    """What became of a workflow link's callback (``WorkflowState.callback_stage``)."""

    HELD = "held"
    """It waits for the link's members to end."""
    RELEASED = "released"
    """The members ended and released it; its state says how it went since."""
    NEVER_RELEASED = "never released"
    """It no longer waits, yet the members did not release it: an operator cancelled it, or ran
    it at once, before they ended."""


@attrs.define(kw_only=True)
class WorkflowState:
    """One link of a workflow as its store keeps it (a group is one link; a chain of n jobs
    n - 1, in order): its members with their final results so far, and its callback."""

    id: uuid.UUID
    root_id: uuid.UUID
    name: str
    created_at: datetime.datetime
    unfinished: int
    """Members without a final result yet."""
    failed: int
    """Members whose final result is not SUCCESSFUL."""
    callback_id: uuid.UUID | None
    """The callback's first attempt id (its job id); None for a group without one."""
    callback_on_failure: bool
    released_at: datetime.datetime | None
    """When the callback was released to run (None: it is held, or there is none)."""
    members: list[MemberResult]
    callback_state: AttemptState | None = None
    """The callback's state now (its latest attempt's), as the operations API reads it (a
    store's own ``workflow()`` leaves it None); None as well without a callback."""

    @property
    def callback_stage(self) -> CallbackStage | None:
        """What became of the callback (None: there is none). Without ``callback_state``, an
        unreleased callback counts as held."""
        if self.callback_id is None:
            return None
        if self.released_at is not None:
            return CallbackStage.RELEASED
        if self.callback_state in (None, AttemptState.SCHEDULED):
            return CallbackStage.HELD
        return CallbackStage.NEVER_RELEASED

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: ids and times as text, outputs as stored."""
        return {
            "id": str(self.id),
            "root_id": str(self.root_id),
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "unfinished": self.unfinished,
            "failed": self.failed,
            "callback_id": None if self.callback_id is None else str(self.callback_id),
            "callback_on_failure": self.callback_on_failure,
            "released_at": None if self.released_at is None else self.released_at.isoformat(),
            "callback_state": None if self.callback_state is None else self.callback_state.value,
            "callback_stage": None if self.callback_stage is None else self.callback_stage.value,
            "members": [
                {
                    "job_id": str(member.job_id),
                    "job_name": member.job_name,
                    "position": member.position,
                    "status": None if member.status is None else member.status.value,
                    "output": None
                    if member.output_json is None
                    else json.loads(member.output_json),
                    "ended_at": None if member.ended_at is None else member.ended_at.isoformat(),
                }
                for member in self.members
            ],
        }


@attrs.define(kw_only=True)
class PipelineState:
    """A pipeline as its store keeps it: the step it runs next (None once it ended) and its
    workspace as saved after its last step that ended."""

    job_id: uuid.UUID
    job_name: str
    step: str | None
    workspace_json: str
    """The serializer's JSON of the workspace (a dict)."""
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None

    @property
    def workspace(self) -> dict[str, Any]:
        """The workspace, read back by this process's serializer."""
        return dict(_read_output(self.workspace_json))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the id and times as text, the workspace as stored."""
        return {
            "job_id": str(self.job_id),
            "job_name": self.job_name,
            "step": self.step,
            "workspace": json.loads(self.workspace_json),
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


class AttemptState(enum.StrEnum):
    """Where an attempt is, as the operations API lists it: waiting (``pending``: ready now;
    ``scheduled``: later), claimed by a worker (``running``), or ended with a status."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    ERRORED = "errored"
    DEFERRED = "deferred"
    LOST = "lost"
    CANCELLED = "cancelled"


FAILED = "failed"
"""A state filter, not a state: attempts that ended ERRORED, LOST or CANCELLED and that no
further attempt follows (the job failed)."""


@attrs.define(kw_only=True)
class Attempt(JobRequest):
    """One attempt as the operations API lists it: the request's fields, where it is
    (``state``), and what happened to it so far. ``at`` orders listings, newest first: when it
    was enqueued (waiting), started or claimed (running), or ended."""

    state: AttemptState
    at: datetime.datetime
    worker_id: uuid.UUID | None = None
    claimed_at: datetime.datetime | None = None
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    error: str = ""
    error_type: str = ""
    retry_request_id: uuid.UUID | None = None
    cancel_requested_at: datetime.datetime | None = None
    output_json: str | None = None
    """A successful attempt's output as stored (see ``JobResult.output_json``). Only
    ``jobkit.job()`` reads it; listings leave it None, so a page stays small."""

    @property
    def output(self) -> Any:
        """What ``run()`` returned, read back by this process's serializer (None: nothing)."""
        return _read_output(self.output_json)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: ids and times as text, ``parameters`` and ``output`` parsed
        (the output as stored: JSON, with the serializer's tags)."""
        data = attrs.asdict(
            self, filter=lambda field, _: field.name not in ("delay", "output_json")
        )
        for name, value in data.items():
            if isinstance(value, uuid.UUID | datetime.datetime):
                data[name] = str(value) if isinstance(value, uuid.UUID) else value.isoformat()
        data["parameters"] = json.loads(self.parameters)
        data["output"] = None if self.output_json is None else json.loads(self.output_json)
        data["state"] = self.state.value
        return data


@attrs.frozen(kw_only=True)
class JobFilter:
    """Which attempts a listing shows; every criterion given must hold (empty: any)."""

    states: tuple[str, ...] = ()
    """``AttemptState`` values, or ``FAILED``."""
    queues: tuple[str, ...] = ()
    job_names: tuple[str, ...] = ()
    concurrency_key: str | None = None
    since: datetime.datetime | None = None
    """Only attempts whose ``at`` is at or after this."""
    until: datetime.datetime | None = None
    """Only attempts whose ``at`` is before this."""
    error_contains: str | None = None
    """Only ended attempts whose error (traceback) holds this text, case-insensitively."""


class LimitScope(enum.StrEnum):
    """What a flow limit counts: the attempts of one queue, of one job name, or with one
    concurrency key."""

    QUEUE = "queue"
    JOB_NAME = "job_name"
    CONCURRENCY_KEY = "concurrency_key"


@attrs.frozen(kw_only=True)
class FlowLimit:
    """A limit that every worker's claim keeps, across the fleet: at most ``max_running``
    attempts of its scope claimed or running at once, and at most ``max_starts`` claimed in any
    ``per`` seconds. At least one of the two is set."""

    scope: LimitScope
    name: str
    """The queue, job name or concurrency key it limits."""
    max_running: int | None = None
    max_starts: int | None = None
    per: float | None = None
    """Seconds of the window ``max_starts`` counts in (set exactly when ``max_starts`` is)."""

    @property
    def key(self) -> str:
        """What names it in the store: ``queue:emails``, ``job_name:app.Send``."""
        return f"{self.scope.value}:{self.name}"

    def applies_to(self, queue: str, job_name: str, concurrency_key: str) -> bool:
        """Whether an attempt of ``queue``, ``job_name`` and ``concurrency_key`` counts."""
        counted = {
            LimitScope.QUEUE: queue,
            LimitScope.JOB_NAME: job_name,
            LimitScope.CONCURRENCY_KEY: concurrency_key,
        }
        return counted[self.scope] == self.name


@attrs.frozen(kw_only=True)
class QueuePause:
    """A paused queue: workers claim nothing from it until it is resumed."""

    queue: str
    paused_at: datetime.datetime
    source: str
    """Who paused it (``cli root@host``, the caller's file and line, a dashboard user)."""


@attrs.define(kw_only=True)
class JobInfo:
    """A job with every attempt it has had, oldest first: ended ones, then the one that waits or
    runs now, if any."""

    job_id: uuid.UUID
    attempts: list[Attempt]
    pipeline: PipelineState | None = None
    """For a pipeline: the step it runs next and its workspace, as saved."""
    workflow_id: uuid.UUID | None = None
    """The workflow it is a member or the callback of (``jobkit.workflow``); None: none."""

    @property
    def latest(self) -> Attempt:
        return self.attempts[-1]

    @property
    def job_name(self) -> str:
        return self.latest.job_name

    @property
    def state(self) -> AttemptState:
        """The state of its latest attempt."""
        return self.latest.state

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "job_name": self.job_name,
            "state": self.state.value,
            "attempts": [attempt.as_dict() for attempt in self.attempts],
            "pipeline": None if self.pipeline is None else self.pipeline.as_dict(),
            "workflow_id": None if self.workflow_id is None else str(self.workflow_id),
        }


@attrs.define(kw_only=True)
class Page:
    """A page of a listing, newest first. ``next_cursor`` fetches the next page (None: this is
    the last). ``total`` counts every attempt that matches; past a threshold it is the
    database's estimate, and ``total_is_estimate`` says so."""

    attempts: list[Attempt]
    next_cursor: str | None
    total: int
    total_is_estimate: bool = False


@attrs.define(kw_only=True)
class JobState:
    """Where a job is now (``jobkit.job_state``): its latest attempt, as the record of its
    stage: a ``JobRequest`` while REQUESTED, a ``JobProcess`` while PROCESSING, and the
    ``JobResult`` once FINISHED."""

    stage: Stage
    attempt: JobRequest

    @property
    def job_id(self) -> uuid.UUID:
        """The id of the job as a whole (its first attempt's)."""
        return self.attempt.job_id

    @property
    def result(self) -> JobResult | None:
        """The job's final result once it is FINISHED; None before."""
        return self.attempt if isinstance(self.attempt, JobResult) else None


RecordT = TypeVar("RecordT", bound=JobRequest)
_EVERY_ITEM: Any = object()


class JobList(list[RecordT]):
    """A list of requests or processes (``get_requested_jobs``, ``get_processing_jobs``) whose
    ``count()`` without an argument is its length, as the seed systems' query sets answer, so
    their ``.count()`` works here; ``count(x)`` is a list's."""

    def count(self, value: Any = _EVERY_ITEM, /) -> int:
        return len(self) if value is _EVERY_ITEM else super().count(value)


@attrs.define(kw_only=True)
class Outcome:
    """What running one attempt came to, before it is written as a result.

    ``rerun_in`` asks for a new attempt that many seconds from now (a retry or a deferral);
    ``None`` means none. ``rerun_uses_retry`` says whether that attempt counts against the
    job's retries. ``hold_rerun`` (seconds) holds that new attempt back for at most that long,
    until the job's ``on_aborted`` has returned and the kernel releases it.
    """

    status: Status
    error: str = attrs.field(default="", converter=redact_credentials)
    """The traceback or reason, with any password in it masked (``user:***@``): it is stored
    in the result, logged and exported."""
    error_type: str = ""
    rerun_in: float | None = None
    rerun_uses_retry: bool = True
    hold_rerun: float | None = None
    output: str | None = None
    """The JSON text the serializer made of what ``run()`` returned (SUCCESSFUL), or of a
    ``DeferJob``'s ``output`` (DEFERRED); None when there was none."""


@attrs.define(kw_only=True)
class Completion:
    """An outcome with the attempt it belongs to and when it ran (database clock)."""

    process: JobProcess
    outcome: Outcome
    started_at: datetime.datetime | None
    ended_at: datetime.datetime


@attrs.define(kw_only=True)
class FinishReport:
    """What ``Store.finish`` wrote: for each attempt given a result, the id of the retry or
    deferral request it led to (or None); and the attempts this worker no longer owned."""

    written: dict[uuid.UUID, uuid.UUID | None] = attrs.field(factory=dict)
    lost_lease: list[uuid.UUID] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class WorkerInfo:
    """A worker's heartbeat row."""

    id: uuid.UUID
    hostname: str
    pid: int
    queues: list[str]
    started_at: datetime.datetime | None = None
    last_heartbeat_at: datetime.datetime | None = None


STAT_KEYS = (
    "pending",
    "scheduled",
    "running",
    "successful",
    "errored",
    "deferred",
    "lost",
    "cancelled",
)


@attrs.define(kw_only=True)
class QueueCounts:
    """One queue's jobs by stage (``pending`` is ready now, ``scheduled`` starts later), and how
    long its oldest ready request has waited."""

    pending: int = 0
    scheduled: int = 0
    running: int = 0
    successful: int = 0
    errored: int = 0
    deferred: int = 0
    lost: int = 0
    cancelled: int = 0
    oldest_pending_age: float = 0.0
    """Seconds, by the database clock, since the oldest pending request became ready (``now()``
    minus the earliest ``start_at`` of the pending requests); 0.0 when none is pending. In a
    total, the greatest of the queues'."""
    paused: bool = False
    """Whether an operator paused the queue (workers claim nothing from it); in a total,
    whether any queue is paused."""

    def add(self, other: QueueCounts) -> None:
        """Add ``other``'s counts to these; the age becomes the greater of the two."""
        for key in STAT_KEYS:
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.oldest_pending_age = max(self.oldest_pending_age, other.oldest_pending_age)
        self.paused = self.paused or other.paused


@attrs.frozen(kw_only=True)
class QueueDepth:
    """A queue's waiting and running jobs, as ``jobkit.queue_depths()`` answers: ``pending`` is
    its depth (ready now), ``scheduled`` start later, ``running`` are claimed by workers."""

    pending: int = 0
    scheduled: int = 0
    running: int = 0
    oldest_pending_age: float = 0.0
    """Seconds, by the database clock, since its oldest pending job became ready; 0.0 when
    none is pending."""
    paused: bool = False
    """Whether an operator paused the queue: its pending jobs wait for ``jobkit resume``, not
    for more workers."""

    @classmethod
    def of(cls, counts: QueueCounts) -> QueueDepth:
        return cls(
            pending=counts.pending,
            scheduled=counts.scheduled,
            running=counts.running,
            oldest_pending_age=counts.oldest_pending_age,
            paused=counts.paused,
        )


@attrs.define(kw_only=True)
class Stats:
    """The figures ``jobkit stats`` shows: counts (and the oldest pending age) across all
    queues and per queue, and how many registered workers are active or stale."""

    total: QueueCounts = attrs.field(factory=QueueCounts)
    queues: dict[str, QueueCounts] = attrs.field(factory=dict)
    workers_active: int = 0
    """Registered workers whose last heartbeat is within ``heartbeat_timeout`` (the one given to
    ``Store.stats``); 0 when none was given."""
    workers_stale: int = 0
    """Registered workers whose last heartbeat is older than ``heartbeat_timeout``: the ones the
    next rescue sweep declares dead; 0 when no timeout was given."""

    def as_dict(self) -> dict[str, object]:
        return {
            **attrs.asdict(self.total),
            "workers_active": self.workers_active,
            "workers_stale": self.workers_stale,
            "queues": {name: attrs.asdict(counts) for name, counts in sorted(self.queues.items())},
        }
