"""Running jobs against the real database with run_jobs: results, typed parameters, errors and
retries, DeferJob, poison rows written straight into the requests table, and middleware."""

from __future__ import annotations

import datetime
import os
import uuid

import psycopg
import pytest
from psycopg import sql

from jobkit import Status, get_result
from jobkit.testing import run_jobs
from testapp.integration_jobs import SlowRetryFail
from testapp.jobs import Defer, Fail, Noop, Record, Typed, create_ledger, ledger

# Helpers -----------------------------------------------------------------------------------------


def execute(settings, statement: str, params=()) -> list[tuple]:
    """Run SQL with ``{schema}`` filled in, on a connection of our own."""
    query = sql.SQL(statement).format(schema=sql.Identifier(settings.schema))
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def insert_request(settings, job_name: str, parameters: str, retries: int = 3) -> uuid.UUID:
    """A request row written the way no producer would, as a poison-input test needs."""
    request_id = uuid.uuid4()
    execute(
        settings,
        "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue, retries) "
        "VALUES (%s, %s, %s, %s::jsonb, 'default', %s)",
        (request_id, request_id, job_name, parameters, retries),
    )
    return request_id


def pending(settings) -> list[tuple]:
    return execute(
        settings,
        "SELECT id, retry_attempt, start_at, created_at, retry_of FROM {schema}.requests "
        "ORDER BY seq",
    )


# Results -----------------------------------------------------------------------------------------


def test_successful_job_has_a_result_with_times_and_worker(jobkit_runtime):
    request = Noop(3).run_in_worker()
    assert request is not None

    (result,) = run_jobs(jobkit_runtime)

    assert (result.id, result.job_id, result.status) == (request.id, request.id, Status.SUCCESSFUL)
    assert result.started_at is not None and result.ended_at is not None
    assert result.started_at <= result.ended_at
    assert result.worker_id is not None
    assert (result.error, result.error_type, result.retry_request_id) == ("", "", None)
    assert result.source == request.source
    assert get_result(request.id) == result
    assert run_jobs(jobkit_runtime) == []


@pytest.mark.parametrize("as_keywords", [False, True], ids=["positional", "keywords"])
def test_typed_parameters_arrive_exactly_as_sent(jobkit_runtime, as_keywords):
    create_ledger(jobkit_runtime.settings)
    offset = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    when = datetime.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=offset)
    job = Typed(when=when, amount=42) if as_keywords else Typed(when, 42)
    job.run_in_worker()

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.SUCCESSFUL, result.error
    assert ledger(jobkit_runtime.settings) == [
        ("2026-03-04T05:06:07.890123+05:30|42", "typed", os.getpid(), 0)
    ]


# Errors and retries ------------------------------------------------------------------------------


def test_failing_job_is_errored_with_its_traceback(jobkit_runtime):
    request = Fail("bad input").run_in_worker()
    assert request is not None

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.ERRORED
    assert result.error_type == "ValueError"
    assert result.error.startswith("Traceback (most recent call last):")
    assert "ValueError: bad input" in result.error
    assert "testapp/jobs.py" in result.error
    assert result.retry_request_id is None
    assert pending(jobkit_runtime.settings) == []


def test_retries_make_a_chain_of_results(jobkit_runtime):
    request = Fail().run_in_worker(retries=2)
    assert request is not None

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [Status.ERRORED] * 3
    assert [r.retry_attempt for r in results] == [0, 1, 2]
    assert [r.retries for r in results] == [2, 2, 2]
    assert {r.job_id for r in results} == {request.id}
    assert results[0].id == request.id
    assert [r.retry_request_id for r in results] == [results[1].id, results[2].id, None]
    assert [r.retry_of for r in results] == [None, results[0].id, results[1].id]
    assert [r.retries_exhausted for r in results] == [False, False, True]
    assert pending(jobkit_runtime.settings) == []


def test_retry_waits_for_calculate_retry_delay(jobkit_runtime):
    settings = jobkit_runtime.settings
    request = SlowRetryFail(retry_seconds=60).run_in_worker(retries=2)
    assert request is not None

    (first,) = run_jobs(jobkit_runtime)

    assert first.status is Status.ERRORED and first.retry_request_id is not None
    ((retry_id, attempt, start_at, created_at, retry_of),) = pending(settings)
    assert (retry_id, attempt, retry_of) == (first.retry_request_id, 1, first.id)
    assert start_at - created_at == datetime.timedelta(seconds=60)  # attempt 1: 60 s * 1
    assert run_jobs(jobkit_runtime) == []

    # Bring the retry forward: the next one is computed for attempt 2.
    execute(settings, "UPDATE {schema}.requests SET start_at = now()")
    (second,) = run_jobs(jobkit_runtime)
    assert (second.id, second.retry_attempt) == (retry_id, 1)
    ((_, attempt, start_at, created_at, retry_of),) = pending(settings)
    assert (attempt, retry_of) == (2, second.id)
    assert start_at - created_at == datetime.timedelta(seconds=120)


# DeferJob ----------------------------------------------------------------------------------------


def test_deferred_job_runs_again_without_using_a_retry(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = Defer("d", times=1).run_in_worker()
    assert request is not None

    deferred, done = run_jobs(jobkit_runtime)

    assert (deferred.id, deferred.status) == (request.id, Status.DEFERRED)
    assert deferred.retry_request_id == done.id
    assert (done.status, done.retry_of, done.job_id) == (Status.SUCCESSFUL, request.id, request.id)
    assert [deferred.retry_attempt, done.retry_attempt] == [0, 0]
    assert [row[3] for row in ledger(jobkit_runtime.settings)] == [0, 0]
    assert get_result(request.id) == done


def test_deferred_job_waits_for_its_delay(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    Defer("later", times=1, delay=60).run_in_worker()

    (deferred,) = run_jobs(jobkit_runtime)

    assert deferred.status is Status.DEFERRED
    ((retry_id, attempt, start_at, created_at, _),) = pending(jobkit_runtime.settings)
    assert retry_id == deferred.retry_request_id and attempt == 0
    assert start_at - created_at == datetime.timedelta(seconds=60)


def test_deferral_that_increments_retries_uses_one(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    Defer("counted", times=1, increment_retries=True).run_in_worker(retries=1)

    deferred, done = run_jobs(jobkit_runtime)

    assert (deferred.status, deferred.retry_attempt) == (Status.DEFERRED, 0)
    assert (done.status, done.retry_attempt) == (Status.SUCCESSFUL, 1)


def test_deferral_that_increments_retries_with_none_left_is_errored(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = Defer("spent", times=5, increment_retries=True).run_in_worker(retries=0)
    assert request is not None

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.ERRORED
    assert "no retries left" in result.error
    assert "increment_retries=True" in result.error
    assert result.error_type.endswith("DeferJob")
    assert result.retry_request_id is None
    assert pending(jobkit_runtime.settings) == []


# Poison input ------------------------------------------------------------------------------------


def test_unregistered_job_name_is_errored_without_retry(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(imports=["testapp.jobs", "testapp.integration_jobs"])
    request_id = insert_request(runtime.settings, "testapp.jobs.Vanished", '{"args": []}')

    (result,) = run_jobs(runtime)

    assert (result.id, result.status) == (request_id, Status.ERRORED)
    assert result.retry_request_id is None
    assert "'testapp.jobs.Vanished'" in result.error
    assert "testapp.jobs, testapp.integration_jobs" in result.error
    assert "imports" in result.error
    assert result.error_type == "jobkit.errors.UnknownJobError"
    assert pending(runtime.settings) == []


POISON_PARAMETERS = {
    "missing argument": ("testapp.jobs.Typed", '{"args": [], "kwargs": {"amount": 1}}', "'when'"),
    "unknown keyword": ("testapp.jobs.Noop", '{"args": [], "kwargs": {"colour": 1}}', "'colour'"),
    "too many arguments": ("testapp.jobs.Noop", '{"args": [1, 2], "kwargs": {}}', "positional"),
    "wrong type": ("testapp.jobs.Noop", '{"args": ["many"], "kwargs": {}}', "'number'"),
    "wrong nested type": (
        "testapp.jobs.Typed",
        '{"args": ["not a date", 1], "kwargs": {}}',
        "'when'",
    ),
    "a fraction for an int": ("testapp.jobs.Noop", '{"args": [5.7], "kwargs": {}}', "'number'"),
    "a string for a bool": (
        "testapp.jobs.Defer",
        '{"args": ["key", 1, 0, "false"], "kwargs": {}}',
        "'increment_retries'",
    ),
    "a number for a str": ("testapp.jobs.Fail", '{"args": [123], "kwargs": {}}', "'message'"),
    "args not a list": ("testapp.jobs.Noop", '{"args": {"number": 1}, "kwargs": {}}', "args"),
    "kwargs not an object": ("testapp.jobs.Noop", '{"args": [], "kwargs": [1]}', "kwargs"),
    "not an object": ("testapp.jobs.Noop", "[1, 2]", "stored form"),
    "unknown key": ("testapp.jobs.Noop", '{"args": [], "extra": 1}', "stored form"),
}


@pytest.mark.parametrize(
    ("job_name", "parameters", "named"), POISON_PARAMETERS.values(), ids=POISON_PARAMETERS.keys()
)
def test_parameters_that_do_not_fit_are_errored_without_retry(
    jobkit_runtime, job_name, parameters, named
):
    request_id = insert_request(jobkit_runtime.settings, job_name, parameters)

    (result,) = run_jobs(jobkit_runtime)

    assert (result.id, result.status) == (request_id, Status.ERRORED)
    assert result.error_type == "jobkit.errors.ParameterError"
    assert job_name.rpartition(".")[2] in result.error
    assert named in result.error
    assert f"stored when the job was enqueued: if {job_name}.__init__ changed since" in (
        result.error
    )
    assert result.retry_request_id is None
    assert pending(jobkit_runtime.settings) == []


def test_normal_jobs_still_run_after_poison_rows(jobkit_runtime):
    settings = jobkit_runtime.settings
    create_ledger(settings)
    before = Record("before").run_in_worker()
    poison = [
        insert_request(settings, "nobody.registered.This", '{"args": [], "kwargs": {}}'),
        *(insert_request(settings, name, text) for name, text, _ in POISON_PARAMETERS.values()),
    ]
    after = Record("after").run_in_worker()
    assert before is not None and after is not None

    results = run_jobs(jobkit_runtime)

    status = {result.id: result.status for result in results}
    assert status == {
        before.id: Status.SUCCESSFUL,
        **dict.fromkeys(poison, Status.ERRORED),
        after.id: Status.SUCCESSFUL,
    }
    assert [(key, phase) for key, phase, _, _ in ledger(settings)] == [
        ("before", "start"),
        ("before", "end"),
        ("after", "start"),
        ("after", "end"),
    ]
    assert pending(settings) == []


# Middleware --------------------------------------------------------------------------------------

MIDDLEWARE = "testapp.integration_jobs."


def test_middleware_runs_around_run_outermost_first(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(
        middleware=[MIDDLEWARE + "OuterMiddleware", MIDDLEWARE + "InnerMiddleware"]
    )
    create_ledger(runtime.settings)
    Record("mw").run_in_worker()

    (result,) = run_jobs(runtime)

    assert result.status is Status.SUCCESSFUL
    assert [phase for _, phase, _, _ in ledger(runtime.settings)] == [
        "outer:before",
        "inner:before",
        "start",
        "end",
        "inner:after",
        "outer:after",
    ]


def test_middleware_sees_the_jobs_exception(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(middleware=[MIDDLEWARE + "OuterMiddleware"])
    create_ledger(runtime.settings)
    Record("ok").run_in_worker()
    Fail("through middleware").run_in_worker()  # has no key: its ledger rows say "?"

    ok, failed = run_jobs(runtime)

    assert ok.status is Status.SUCCESSFUL
    assert failed.status is Status.ERRORED
    assert "ValueError: through middleware" in failed.error
    phases = [(key, phase) for key, phase, _, _ in ledger(runtime.settings)]
    assert phases == [
        ("ok", "outer:before"),
        ("ok", "start"),
        ("ok", "end"),
        ("ok", "outer:after"),
        ("?", "outer:before"),
        ("?", "outer:after"),
    ]


def test_middleware_can_skip_a_job(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(
        middleware=[MIDDLEWARE + "OuterMiddleware", MIDDLEWARE + "SkipMiddleware"]
    )
    create_ledger(runtime.settings)
    skipped = Record("skip-me").run_in_worker()
    ran = Record("run-me").run_in_worker()
    assert skipped is not None and ran is not None

    results = run_jobs(runtime)

    assert {r.id: r.status for r in results} == {
        skipped.id: Status.SUCCESSFUL,
        ran.id: Status.SUCCESSFUL,
    }
    assert [(key, phase) for key, phase, _, _ in ledger(runtime.settings)] == [
        ("skip-me", "outer:before"),
        ("skip-me", "skipped"),
        ("skip-me", "outer:after"),
        ("run-me", "outer:before"),
        ("run-me", "start"),
        ("run-me", "end"),
        ("run-me", "outer:after"),
    ]
