"""Job outputs against the real database: what run() returns is stored with its successful
result and read back by get_result, job_state, the operations API and its JSON; None stores
nothing; a value the serializer refuses, or one over output_max_length, is ERRORED, not retried."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit import OutputError, SettingsError, Status, get_result, job_state
from jobkit.settings import load_settings
from jobkit.testing import run_jobs
from testapp.jobs import Returns, create_ledger

WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def stored_output(settings, attempt_id: uuid.UUID) -> object:
    """The results.output column of one attempt, as PostgreSQL holds it (parsed jsonb)."""
    query = sql.SQL("SELECT output FROM {}.results WHERE id = %s").format(
        sql.Identifier(settings.schema)
    )
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        (row,) = connection.execute(query, (attempt_id,)).fetchall()
    return row[0]


@pytest.mark.parametrize(
    "value",
    [
        {"sent": 3, "to": ["ada@example.com"], "nested": {"ok": True, "none": None}},
        [1, "two", 3.5, [4]],
        42,
        -0.25,
        "done",
        "",
        0,
        False,
        [],
        {},
        "café ☕ \U0001f600",
        {"__jobkit__": "not a tag", "value": 1},
        (1, "a"),
        {"when": WHEN, "id": uuid.UUID(int=7), "amount": decimal.Decimal("19.90")},
    ],
    ids=repr,
)
def test_what_run_returns_is_the_output(jobkit_runtime, value):
    request = Returns("value", value).run_in_worker()

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.SUCCESSFUL, result.error
    assert result.output == value
    again = get_result(request.id)
    assert again is not None and again.output == value
    assert type(again.output) is type(value)
    assert job_state(request.id).result.output == value
    (attempt,) = jobkit.job(request.job_id).attempts
    assert attempt.output == value
    assert json.loads(json.dumps(jobkit.job(request.job_id).as_dict()))  # JSON all the way


def test_the_output_is_stored_as_json_with_tags(jobkit_runtime):
    request = Returns("when").run_in_worker()
    run_jobs(jobkit_runtime)
    assert stored_output(jobkit_runtime.settings, request.id) == {
        "at": {"__jobkit__": "datetime", "value": "2026-01-02T03:04:05+00:00"}
    }
    (attempt,) = jobkit.job(request.job_id).as_dict()["attempts"]
    assert attempt["output"] == {
        "at": {"__jobkit__": "datetime", "value": "2026-01-02T03:04:05+00:00"}
    }
    assert get_result(request.id).output == {"at": WHEN}


def test_none_stores_nothing(jobkit_runtime):
    request = Returns("value", None).run_in_worker()
    (result,) = run_jobs(jobkit_runtime)
    assert (result.status, result.output_json, result.output) == (Status.SUCCESSFUL, None, None)
    assert stored_output(jobkit_runtime.settings, request.id) is None
    assert jobkit.job(request.job_id).as_dict()["attempts"][0]["output"] is None


def test_listings_leave_the_output_out(jobkit_runtime):
    Returns("value", {"big": "x" * 1000}).run_in_worker()
    run_jobs(jobkit_runtime)
    (listed,) = jobkit.jobs().attempts
    assert listed.output_json is None


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("object", "returned a value of type object, which jobkit cannot store"),
        ("set", "a value of type set at output['tags'], which jobkit cannot store"),
        ("nan", "returned nan at output[1], which JSON cannot hold"),
        ("int key", "a dict with a key of type int"),
        ("NUL", "the NUL character (\\x00) at output['text']"),
        ("surrogate", "text that is not valid Unicode (a surrogate)"),
    ],
)
def test_an_output_the_serializer_refuses_is_errored_and_not_retried(
    jobkit_runtime, kind, expected
):
    request = Returns(kind).run_in_worker(retries=3)
    (result,) = run_jobs(jobkit_runtime)
    assert result.id == request.id
    assert (result.status, result.error_type) == (Status.ERRORED, "jobkit.errors.OutputError")
    assert result.error.startswith("Returns.run() returned ")
    assert expected in result.error
    assert (result.retry_request_id, result.output_json) == (None, None)
    assert run_jobs(jobkit_runtime) == []


def test_an_output_over_output_max_length_is_errored_never_cut(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(output_max_length=100)
    fits = Returns("big", size=98).run_in_worker()  # "x" * 98 is 100 bytes of JSON
    too_big = Returns("big", size=99).run_in_worker(retries=2)

    first, second = run_jobs(runtime)

    assert (first.id, first.status, len(first.output)) == (fits.id, Status.SUCCESSFUL, 98)
    assert (second.id, second.status) == (too_big.id, Status.ERRORED)
    assert second.error_type == "jobkit.errors.OutputError"
    assert second.error == (
        "Returns.run() returned a value of type str whose JSON is 101 bytes, more than the "
        "output_max_length setting allows (100); store big data elsewhere (a file, a table) and "
        "return where it is, or raise output_max_length"
    )
    assert second.retry_request_id is None


def test_the_cap_counts_bytes_of_utf8(jobkit_runtime_factory):
    # The built-in serializer escapes non-ASCII text, so é is 6 bytes of its JSON.
    runtime = jobkit_runtime_factory(output_max_length=20)
    Returns("value", "é" * 3).run_in_worker()  # "\u00e9\u00e9\u00e9": 20 bytes
    Returns("value", "é" * 4).run_in_worker()
    fits, over = run_jobs(runtime)
    assert (fits.status, fits.output) == (Status.SUCCESSFUL, "ééé")
    assert over.status is Status.ERRORED and "26 bytes" in over.error


def test_the_default_cap_is_64_kib(jobkit_runtime):
    assert jobkit_runtime.settings.output_max_length == 65536
    Returns("big", size=65534).run_in_worker()
    Returns("big", size=65535).run_in_worker()
    fits, over = run_jobs(jobkit_runtime)
    assert fits.status is Status.SUCCESSFUL and len(fits.output) == 65534
    assert over.status is Status.ERRORED and "65,537 bytes" in over.error


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_a_bad_output_max_length_is_refused_at_start(bad):
    with pytest.raises(SettingsError, match="output_max_length"):
        load_settings(environ={"JOBKIT_OUTPUT_MAX_LENGTH": bad})


def test_middleware_passes_the_output_on(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(middleware=["testapp.integration_jobs.OuterMiddleware"])
    create_ledger(runtime.settings)
    Returns("value", {"through": "middleware"}).run_in_worker()
    (result,) = run_jobs(runtime)
    assert result.output == {"through": "middleware"}


def test_a_retried_job_s_output_is_its_successful_attempt_s(jobkit_runtime):
    request = Returns("fail-once", {"second": True}).run_in_worker(retries=1)
    failed, succeeded = run_jobs(jobkit_runtime)
    assert (failed.status, failed.output) == (Status.ERRORED, None)
    assert (succeeded.status, succeeded.output) == (Status.SUCCESSFUL, {"second": True})
    assert get_result(request.id).output == {"second": True}
    assert [a.output for a in jobkit.job(request.job_id).attempts] == [None, {"second": True}]


def test_a_serializer_without_output_methods_errors_clearly(jobkit_runtime):
    class OldSerializer:
        """A replacement serializer written before outputs: dumps and loads only."""

        def __init__(self, serializer):
            self.dumps, self.loads = serializer.dumps, serializer.loads

    jobkit_runtime._serializer = OldSerializer(jobkit_runtime.serializer)
    Returns("value", None).run_in_worker()
    Returns("value", 1).run_in_worker()
    nothing, something = run_jobs(jobkit_runtime)
    assert nothing.status is Status.SUCCESSFUL  # None never reaches the serializer
    assert something.status is Status.ERRORED
    assert something.error_type == "jobkit.errors.OutputError"
    assert "the serializer failed to store: AttributeError(" in something.error
    assert issubclass(OutputError, jobkit.JobkitError)
