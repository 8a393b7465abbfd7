"""The lifecycle hooks against the real database (django-db-queue's creation, pre-task, failure
and post-task hooks): a job's ``on_enqueued``, ``before_run``, ``on_failure`` and ``after_run``,
their order and error rules, and the same four as plugin hooks."""

from __future__ import annotations

import logging

import pytest

from jobkit import Status, enqueue_many, get_result, hookimpl
from jobkit.testing import run_jobs
from testapp.jobs import Lifecycle, create_ledger, ledger


@pytest.fixture
def phases(jobkit_settings):
    """The ledger's phases of one key, oldest first, with the attempt each ran in."""
    create_ledger(jobkit_settings)

    def read(key: str) -> list[tuple[str, int]]:
        return [(phase, attempt) for k, phase, _, attempt in ledger(jobkit_settings) if k == key]

    return read


def only(results, request):
    return [result for result in results if result.job_id == request.job_id]


def test_a_successful_run_calls_its_hooks_in_order(jobkit_runtime, phases):
    request = Lifecycle("ok", returns={"sent": 1}).run_in_worker()
    assert phases("ok") == [("enqueued", -1)]  # in the enqueueing process, once stored

    (result,) = run_jobs(jobkit_runtime)

    assert (result.status, result.output) == (Status.SUCCESSFUL, {"sent": 1})
    assert result.job_id == request.job_id
    assert phases("ok") == [("enqueued", -1), ("before", 0), ("run", 0), ("after", 0)]


def test_a_failing_run_calls_the_failure_hook_then_after_run_on_every_attempt(
    jobkit_runtime, phases
):
    Lifecycle("fails", fail_in="run", retries=1).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [result.status for result in results] == [Status.ERRORED, Status.ERRORED]
    assert results[0].retry_request_id is not None  # retried by the job's policy
    assert "RuntimeError: run failed" in results[1].error
    one_attempt = ["before", "run", "failure RuntimeError: run failed", "after"]
    assert phases("fails") == [("enqueued", -1)] + [
        (phase, attempt) for attempt in (0, 1) for phase in one_attempt
    ]


def test_a_failing_before_run_skips_run_and_fails_the_attempt(jobkit_runtime, phases):
    Lifecycle("no-run", fail_in="before", retries=1).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [result.status for result in results] == [Status.ERRORED, Status.ERRORED]
    assert results[0].error_type == "RuntimeError" and "before failed" in results[0].error
    assert results[0].retry_request_id is not None
    assert [phase for phase, attempt in phases("no-run") if attempt == 0] == [
        "before",
        "failure RuntimeError: before failed",
        "after",
    ]


def test_an_after_run_error_is_logged_and_never_fails_the_job(jobkit_runtime, phases, caplog):
    Lifecycle("after", fail_in="after", returns=7).run_in_worker()

    with caplog.at_level(logging.ERROR):
        (result,) = run_jobs(jobkit_runtime)

    assert (result.status, result.output, result.error) == (Status.SUCCESSFUL, 7, "")
    assert "Lifecycle.after_run failed" in caplog.text and "after failed" in caplog.text
    assert [phase for phase, _ in phases("after")] == ["enqueued", "before", "run", "after"]


def test_a_failure_hook_error_is_logged_and_the_run_error_is_kept(jobkit_runtime, phases, caplog):
    Lifecycle("both", fail_in="run,failure").run_in_worker()

    with caplog.at_level(logging.ERROR):
        (result,) = run_jobs(jobkit_runtime)

    assert (result.status, result.error_type) == (Status.ERRORED, "RuntimeError")
    assert "run failed" in result.error and "failure failed" not in result.error
    assert "Lifecycle.on_failure failed" in caplog.text
    assert [phase for phase, _ in phases("both")] == [
        "enqueued",
        "before",
        "run",
        "failure RuntimeError: run failed",
        "after",
    ]


def test_a_deferral_is_no_failure(jobkit_runtime, phases):
    Lifecycle("later", defer=True).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [result.status for result in results] == [Status.DEFERRED, Status.SUCCESSFUL]
    assert [phase for phase, _ in phases("later")] == ["enqueued"] + 2 * ["before", "run", "after"]


def test_an_output_that_cannot_be_stored_goes_to_the_failure_hook(jobkit_runtime, phases):
    Lifecycle("big", returns="x" * 70_000).run_in_worker(retries=2)

    (result,) = run_jobs(jobkit_runtime)

    assert (result.status, result.error_type) == (Status.ERRORED, "jobkit.errors.OutputError")
    assert result.retry_request_id is None  # not retried: running again cannot fix it
    failure = [phase for phase, _ in phases("big") if phase.startswith("failure")]
    assert len(failure) == 1 and failure[0].startswith("failure OutputError: ")
    assert [phase for phase, _ in phases("big")][-1] == "after"


def test_an_on_enqueued_error_is_raised_after_every_hook_and_loses_no_job(
    jobkit_runtime, phases, caplog
):
    with pytest.raises(RuntimeError, match="enqueued failed"):
        Lifecycle("raises", fail_in="enqueued").run_in_worker()
    jobs = [
        Lifecycle("first", fail_in="enqueued"),
        Lifecycle("fine"),
        Lifecycle("third", fail_in="enqueued"),
    ]
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="enqueued failed"):
        enqueue_many(jobs)

    assert [phases(key) for key in ("first", "fine", "third")] == [[("enqueued", -1)]] * 3
    assert "Lifecycle('third', fail_in='enqueued').on_enqueued failed" in caplog.text  # logged
    results = run_jobs(jobkit_runtime)
    assert len(results) == 4 and {result.status for result in results} == {Status.SUCCESSFUL}


def test_an_on_enqueued_in_a_rolled_back_transaction_leaves_nothing(
    jobkit_runtime, jobkit_settings, phases
):
    import psycopg

    with psycopg.connect(jobkit_settings.database_url) as connection:
        request = Lifecycle("rolled back").run_in_worker(connection=connection)
        connection.rollback()

    assert phases("rolled back") == [("enqueued", -1)]
    assert get_result(request.id) is None and run_jobs(jobkit_runtime) == []


# The plugin forms ------------------------------------------------------------------------------


class Hooks:
    """Every lifecycle plugin hook, noting its calls in ``calls``; ``before_raises`` makes
    ``jobkit_before_run`` raise."""

    def __init__(self, calls, before_raises=False):
        self.calls = calls
        self.before_raises = before_raises

    @hookimpl
    def jobkit_job_enqueued(self, job, request):
        self.calls.append(("plugin enqueued", job.key, request.job_name))

    @hookimpl
    def jobkit_before_run(self, job, process):
        self.calls.append(("plugin before", job.key, process.retry_attempt))
        if self.before_raises:
            raise LookupError("a plugin refused")

    @hookimpl
    def jobkit_run_failed(self, job, process, error):
        self.calls.append(("plugin failed", job.key, repr(error)))

    @hookimpl
    def jobkit_run_ended(self, job, process, outcome):
        self.calls.append(("plugin after", job.key, outcome.status.value))


def test_plugin_hooks_run_outside_the_jobs_own(jobkit_runtime, register_plugin, phases):
    calls = []
    register_plugin(Hooks(calls))
    Lifecycle("plugged", fail_in="run").run_in_worker()
    assert calls == [("plugin enqueued", "plugged", "testapp.Lifecycle")]

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.ERRORED
    assert calls[1:] == [
        ("plugin before", "plugged", 0),
        ("plugin failed", "plugged", "RuntimeError('run failed')"),
        ("plugin after", "plugged", "ERRORED"),
    ]
    assert [phase for phase, _ in phases("plugged")] == [
        "enqueued",
        "before",
        "run",
        "failure RuntimeError: run failed",
        "after",
    ]


def test_a_raising_plugin_before_run_skips_the_job(jobkit_runtime, register_plugin, phases):
    calls = []
    register_plugin(Hooks(calls, before_raises=True))
    Lifecycle("refused").run_in_worker()

    (result,) = run_jobs(jobkit_runtime)

    assert (result.status, result.error_type) == (Status.ERRORED, "LookupError")
    assert "a plugin refused" in result.error
    assert [phase for phase, _ in phases("refused")] == [
        "enqueued",
        "failure LookupError: a plugin refused",
        "after",
    ]
    assert calls[-1] == ("plugin after", "refused", "ERRORED")
