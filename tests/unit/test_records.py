"""Tests of the records passed between the kernel, the store and plugins."""

from __future__ import annotations

import datetime
import pickle
import time
import uuid
from multiprocessing.reduction import ForkingPickler

import attrs
import pytest

from jobkit.records import (
    STAT_KEYS,
    Completion,
    JobList,
    JobProcess,
    JobRequest,
    JobResult,
    Outcome,
    QueueCounts,
    Stats,
    Status,
    new_attempt_id,
)

T0 = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
WORKER = uuid.UUID("00000000-0000-0000-0000-00000000000a")
FIRST_ATTEMPT = uuid.UUID("00000000-0000-0000-0000-000000000001")


def full_request_fields() -> dict:
    """A value other than the default for every field of a request."""
    return {
        "id": uuid.UUID("00000000-0000-0000-0000-000000000002"),
        "job_id": FIRST_ATTEMPT,
        "job_name": "app.SendEmail",
        "parameters": '{"args":[42],"kwargs":{}}',
        "queue": "emails",
        "priority": -5,
        "retries": 3,
        "retry_attempt": 1,
        "concurrency_key": "user-42",
        "headers": {"traceparent": "00-abc-def-01"},
        "source": "app/views.py:10",
        "retry_of": FIRST_ATTEMPT,
        "delay": 2.5,
        "start_at": T0,
        "created_at": T0 - SECOND,
        "timeout": 30.0,
    }


def make_process(**changes) -> JobProcess:
    return JobProcess(**{**full_request_fields(), "worker_id": WORKER, "claimed_at": T0, **changes})


def test_every_request_field_has_a_value_in_the_fixture():
    # So the round trips below would notice a field that pickling loses.
    assert set(full_request_fields()) == {field.name for field in attrs.fields(JobRequest)}


@pytest.mark.parametrize(
    "record",
    [
        JobRequest(**full_request_fields()),
        JobRequest(job_name="app.Noop", parameters="{}"),
        make_process(),
        JobResult(
            **full_request_fields(),
            worker_id=WORKER,
            status=Status.ERRORED,
            error="Traceback ...",
            error_type="ValueError",
            started_at=T0,
            ended_at=T0 + SECOND,
            retry_request_id=uuid.uuid4(),
        ),
    ],
    ids=["request", "request with defaults", "process", "result"],
)
@pytest.mark.parametrize("pickler", ["pickle", "pool pipes"])
def test_records_survive_a_pickle_round_trip(record, pickler):
    """Also as the pool's pipes pickle them (multiprocessing's pickler, told by jobkit.pool to
    pickle UUIDs as their integer)."""
    import jobkit.pool  # noqa: F401 - registers the pipes' way with UUIDs

    dumped = pickle.dumps(record) if pickler == "pickle" else ForkingPickler.dumps(record)
    copy = pickle.loads(dumped)

    assert copy == record
    assert type(copy) is type(record)
    assert copy is not record
    for field in attrs.fields(type(record)):
        original = getattr(record, field.name)
        if isinstance(original, uuid.UUID):
            copied = getattr(copy, field.name)
            assert type(copied) is uuid.UUID
            assert (str(copied), hash(copied), copied.version) == (
                str(original),
                hash(original),
                original.version,
            )


def test_job_id_defaults_to_the_attempt_id():
    request = JobRequest(job_name="app.Noop", parameters="{}")

    assert request.job_id == request.id
    assert isinstance(request.id, uuid.UUID)


def test_a_given_job_id_is_kept():
    request = JobRequest(job_name="app.Noop", parameters="{}", job_id=FIRST_ATTEMPT)

    assert request.job_id == FIRST_ATTEMPT
    assert request.id != FIRST_ATTEMPT


def test_request_defaults():
    request = JobRequest(job_name="app.Noop", parameters="{}")

    assert (request.queue, request.priority, request.retries, request.retry_attempt) == (
        "default",
        0,
        0,
        0,
    )
    assert (request.concurrency_key, request.headers, request.source) == ("", {}, "")
    assert (request.retry_of, request.delay, request.start_at, request.created_at) == (
        None,
        0.0,
        None,
        None,
    )


def test_result_from_completion_copies_the_attempt_and_the_outcome():
    process = make_process()
    retry_id = uuid.uuid4()
    completion = Completion(
        process=process,
        outcome=Outcome(status=Status.ERRORED, error="Traceback ...", error_type="ValueError"),
        started_at=T0 + SECOND,
        ended_at=T0 + 2 * SECOND,
    )

    result = JobResult.from_completion(completion, retry_request_id=retry_id)

    request_fields = [f.name for f in attrs.fields(JobRequest) if f.name != "delay"]
    for name in request_fields:
        assert getattr(result, name) == getattr(process, name), name
    assert result.worker_id == WORKER
    assert (result.status, result.error, result.error_type) == (
        Status.ERRORED,
        "Traceback ...",
        "ValueError",
    )
    assert (result.started_at, result.ended_at) == (T0 + SECOND, T0 + 2 * SECOND)
    assert result.retry_request_id == retry_id


def test_result_from_a_completion_that_never_started():
    completion = Completion(
        process=make_process(),
        outcome=Outcome(status=Status.LOST),
        started_at=None,
        ended_at=T0,
    )

    result = JobResult.from_completion(completion, retry_request_id=None)

    assert (result.status, result.error, result.error_type) == (Status.LOST, "", "")
    assert (result.started_at, result.retry_request_id) == (None, None)


@pytest.mark.parametrize(
    ("retry_attempt", "retries", "exhausted"),
    [(0, 0, True), (0, 1, False), (1, 1, True), (2, 3, False), (3, 3, True)],
)
def test_retries_exhausted(retry_attempt, retries, exhausted):
    result = JobResult(
        job_name="app.Noop",
        parameters="{}",
        status=Status.ERRORED,
        retry_attempt=retry_attempt,
        retries=retries,
    )

    assert result.retries_exhausted is exhausted


def test_status_values_are_their_names():
    assert [status.value for status in Status] == [
        "SUCCESSFUL",
        "ERRORED",
        "DEFERRED",
        "LOST",
        "CANCELLED",
    ]
    assert Status("LOST") is Status.LOST


def test_stats_as_dict_has_the_totals_and_each_queue():
    stats = Stats(
        total=QueueCounts(
            pending=3, scheduled=1, running=2, successful=10, errored=1, oldest_pending_age=7.5
        ),
        queues={
            "emails": QueueCounts(pending=1, successful=4, lost=1, oldest_pending_age=7.5),
            "default": QueueCounts(
                pending=2, scheduled=1, running=2, deferred=1, cancelled=1, oldest_pending_age=0.25
            ),
        },
        workers_active=4,
        workers_stale=1,
    )

    data = stats.as_dict()

    assert list(data) == [
        "pending",
        "scheduled",
        "running",
        "successful",
        "errored",
        "deferred",
        "lost",
        "cancelled",
        "oldest_pending_age",
        "paused",
        "workers_active",
        "workers_stale",
        "queues",
    ]
    assert data == {
        "pending": 3,
        "scheduled": 1,
        "running": 2,
        "successful": 10,
        "errored": 1,
        "deferred": 0,
        "lost": 0,
        "cancelled": 0,
        "oldest_pending_age": 7.5,
        "paused": False,
        "workers_active": 4,
        "workers_stale": 1,
        "queues": {
            "default": {
                "pending": 2,
                "scheduled": 1,
                "running": 2,
                "successful": 0,
                "errored": 0,
                "deferred": 1,
                "lost": 0,
                "cancelled": 1,
                "oldest_pending_age": 0.25,
                "paused": False,
            },
            "emails": {
                "pending": 1,
                "scheduled": 0,
                "running": 0,
                "successful": 4,
                "errored": 0,
                "deferred": 0,
                "lost": 1,
                "cancelled": 0,
                "oldest_pending_age": 7.5,
                "paused": False,
            },
        },
    }
    assert list(data["queues"]) == ["default", "emails"]


def test_empty_stats():
    assert Stats().as_dict() == {
        **dict.fromkeys(STAT_KEYS, 0),
        "oldest_pending_age": 0.0,
        "paused": False,
        "workers_active": 0,
        "workers_stale": 0,
        "queues": {},
    }


def test_queue_counts_add():
    counts = QueueCounts(pending=1, lost=2, oldest_pending_age=3.0)

    counts.add(QueueCounts(pending=2, successful=5, lost=1, oldest_pending_age=1.5))

    assert counts == QueueCounts(pending=3, successful=5, lost=3, oldest_pending_age=3.0)
    counts.add(QueueCounts(oldest_pending_age=9.0))
    assert counts.oldest_pending_age == 9.0


def test_a_job_list_counts_itself_without_an_argument_and_like_a_list_with_one():
    first, second = (
        JobRequest(job_name="a", parameters="{}"),
        JobRequest(job_name="b", parameters="{}"),
    )
    jobs = JobList([first, second, first])

    assert jobs.count() == 3
    assert jobs.count(first) == 2
    assert jobs.count(None) == 0
    assert JobList().count() == 0
    assert jobs == [first, second, first]


def test_attempt_ids_are_version_7_uuids_that_sort_by_when_they_were_made():
    earlier = [new_attempt_id() for _ in range(100)]
    made_in = time.time_ns() // 1_000_000
    deadline = time.monotonic() + 1
    while time.time_ns() // 1_000_000 <= made_in:  # the next millisecond, when later ids begin
        assert time.monotonic() < deadline
    later = new_attempt_id()
    assert {(i.version, i.variant) for i in [*earlier, later]} == {(7, uuid.RFC_4122)}
    assert len(set(earlier)) == 100
    assert max(earlier) < later
    made_at = later.int >> 80  # the first 48 bits: Unix milliseconds
    assert abs(made_at - time.time() * 1000) < 1000
    assert JobRequest(job_id=later, job_name="x", parameters="{}").id.version == 7
