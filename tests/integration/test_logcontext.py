"""The log context plugin on the real database: jobs enqueued, claimed, run, retried and finished
with run_jobs, and the lines they log carry the job's id, name and attempt."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from jobkit import Status
from jobkit.builtin import logcontext
from jobkit.testing import run_jobs
from testapp.async_jobs import Meet
from testapp.log_jobs import LogLine


@pytest.fixture(autouse=True)
def no_record_factory(caplog) -> Iterator[None]:
    """Each test starts and ends with the process's own record factory, and captures INFO."""
    caplog.set_level(logging.INFO)
    logcontext.uninstall_record_factory()
    yield
    logcontext.uninstall_record_factory()


def job_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "testapp.log_jobs"]


def test_every_attempt_logs_with_the_same_job_id_and_its_attempt(jobkit_runtime, caplog):
    request = LogLine("retried", fail_times=2).run_in_worker(retries=2)
    assert request is not None

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [Status.ERRORED, Status.ERRORED, Status.SUCCESSFUL]
    lines = job_lines(caplog)
    assert [line.getMessage() for line in lines] == ["retried says hello"] * 3
    assert {line.jobkit_job for line in lines} == {"testapp.LogLine"}
    assert {line.jobkit_job_id for line in lines} == {str(request.job_id)}
    assert [r.retry_attempt for r in results] == [0, 1, 2]
    assert [line.jobkit_attempt for line in lines] == [1, 2, 3]  # counted from 1
    assert [line.jobkit_attempt_id for line in lines] == [str(r.id) for r in results]
    assert [line.jobkit_context for line in lines] == [
        f" [job=testapp.LogLine id={request.job_id} attempt={n}]" for n in (1, 2, 3)
    ]


def test_two_jobs_are_told_apart_and_lines_between_them_have_no_context(jobkit_runtime, caplog):
    first = LogLine("one").run_in_worker()
    second = LogLine("two").run_in_worker()
    assert first is not None and second is not None

    run_jobs(jobkit_runtime)
    logging.getLogger("testapp.after").info("after the jobs")

    by_message = {line.getMessage(): line for line in caplog.records}
    assert by_message["one says hello"].jobkit_job_id == str(first.job_id)
    assert by_message["two says hello"].jobkit_job_id == str(second.job_id)
    assert by_message["after the jobs"].jobkit_job_id == ""
    assert by_message["after the jobs"].jobkit_context == ""


def test_blocked_the_jobs_run_and_their_lines_carry_nothing(jobkit_runtime_factory, caplog):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.logcontext"])
    LogLine("plain", fail_times=1).run_in_worker(retries=1)

    results = run_jobs(runtime)

    assert [r.status for r in results] == [Status.ERRORED, Status.SUCCESSFUL]
    lines = job_lines(caplog)
    assert len(lines) == 2
    for line in lines:
        assert not any(hasattr(line, name) for name in logcontext.FIELDS)


def test_run_jobs_awaits_an_async_job_inline_with_its_log_context(jobkit_runtime, caplog):
    request = Meet("alone", party=1).run_in_worker()
    assert request is not None

    (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.SUCCESSFUL
    lines = [r for r in caplog.records if r.name == "testapp.async_jobs"]
    assert [line.getMessage() for line in lines] == ["alone arrives", "alone leaves"]
    assert {line.jobkit_job_id for line in lines} == {str(request.job_id)}
