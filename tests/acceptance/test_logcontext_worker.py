"""The log context as an operator reads it: ``jobkit worker --burst`` output, where the lines a
job logs in a pool child show the job's name, id and attempt, the same id on every retry."""

import re

import pytest

from testapp.log_jobs import LogLine

pytestmark = pytest.mark.acceptance

LOG_JOBS = {"JOBKIT_IMPORTS": "testapp.log_jobs"}


def test_worker_output_shows_the_job_context_on_each_attempts_lines(start_worker, jobkit_runtime):
    request = LogLine("told", fail_times=2).run_in_worker(retries=2)
    assert request is not None

    worker = start_worker("--burst", "--max-processes", "1", env=LOG_JOBS)
    assert worker.wait_for_exit() == 0, worker.output()

    lines = [line for line in worker.output().splitlines() if line.endswith("told says hello")]
    assert len(lines) == 3, worker.output()
    for attempt, line in enumerate(lines, start=1):
        assert re.search(
            rf" INFO testapp\.log_jobs \[job=testapp\.LogLine id={request.job_id} "
            rf"attempt={attempt}\]: told says hello$",
            line,
        ), line
    # The worker's own lines about the failures name the job and count attempts the same way.
    for attempt in (1, 2):
        assert re.search(
            rf"testapp\.LogLine {request.job_id} \(attempt {attempt} of 3\) ERRORED",
            worker.output(),
        ), worker.output()
    # Lines logged outside a job keep the plain format.
    assert re.search(r" INFO jobkit\.worker: ", worker.output()), worker.output()
    assert "[job=" not in "".join(
        line for line in worker.output().splitlines() if " jobkit.worker: " in line
    )


def test_with_the_plugin_blocked_the_worker_logs_plain_lines(start_worker, jobkit_runtime):
    request = LogLine("plain").run_in_worker()
    assert request is not None

    worker = start_worker(
        "--burst", env={**LOG_JOBS, "JOBKIT_DISABLE_PLUGINS": "jobkit.builtin.logcontext"}
    )
    assert worker.wait_for_exit() == 0, worker.output()

    output = worker.output()
    assert re.search(r" INFO testapp\.log_jobs: plain says hello$", output, re.M), output
    assert "[job=" not in output and "Logging error" not in output
    result = jobkit_runtime.get_result(request.id)
    assert result is not None and result.status.value == "SUCCESSFUL"
