"""Job outputs through a real ``jobkit worker --burst``: the values its pool children's jobs
return cross the pipe to the main process and the round trip to the database, and come back
through ``get_result``, ``jobkit.job`` and ``jobkit show``."""

from __future__ import annotations

import json

import pytest

import jobkit
from jobkit import Status, get_result
from testapp.jobs import Returns

pytestmark = pytest.mark.acceptance


def test_a_burst_worker_stores_what_its_jobs_return(start_worker, jobkit_runtime, db, run_cli):
    returned = {
        "dict": {"sent": 3, "to": ["ada@example.com"], "ok": True},
        "list": [1, "two", 3.5, None],
        "number": 42,
        "string": "done",
        "none": None,
    }
    requests = {name: Returns("value", value).run_in_worker() for name, value in returned.items()}
    requests["when"] = Returns("when").run_in_worker()
    refused = Returns("set").run_in_worker(retries=2)
    too_big = Returns("big", size=70_000).run_in_worker(retries=2)  # over the 64 KiB default

    worker = start_worker("--burst", "--max-processes", "2")
    assert worker.wait_for_exit() == 0, worker.output()

    for name, value in returned.items():
        result = get_result(requests[name].id)
        assert result is not None and result.status is Status.SUCCESSFUL, (name, result)
        assert result.output == value, name
    when = get_result(requests["when"].id)
    assert when is not None and when.output == {"at": Returns("when").run()["at"]}
    assert (
        db.value(
            "SELECT count(*) FROM {schema}.results WHERE output IS NULL AND status = 'SUCCESSFUL'"
        )
        == 1
    )  # the one that returned None

    for request, expected in (
        (refused, "a value of type set at output['tags'], which jobkit cannot store"),
        (too_big, "whose JSON is 70,002 bytes, more than the output_max_length setting"),
    ):
        result = get_result(request.id)
        assert result is not None
        assert (result.status, result.error_type) == (Status.ERRORED, "jobkit.errors.OutputError")
        assert expected in result.error
        assert result.retry_request_id is None  # not retried, though it had retries
    assert db.count("requests") == db.count("processes") == 0

    (attempt,) = jobkit.job(requests["dict"].job_id).attempts
    assert attempt.output == returned["dict"]

    shown = run_cli("show", str(requests["dict"].job_id))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.endswith(
        '  output   {\n      "ok": true,\n      "sent": 3,\n      "to": [\n'
        '        "ada@example.com"\n      ]\n    }\n'
    )
    assert "  output " not in run_cli("show", str(requests["none"].job_id)).stdout
    as_json = json.loads(run_cli("show", "--json", str(requests["when"].job_id)).stdout)
    assert as_json["attempts"][0]["output"] == {
        "at": {"__jobkit__": "datetime", "value": "2026-01-02T03:04:05+00:00"}
    }


def test_jobkit_run_prints_the_output_and_fails_on_one_it_cannot_store(run_cli):
    shown = run_cli("run", "testapp.jobs.Returns", "--args", '["value", {"b": [1], "a": "x"}]')
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (
        'testapp.jobs.Returns SUCCESSFUL\n{\n  "b": [\n    1\n  ],\n  "a": "x"\n}\n'
    )
    refused = run_cli("run", "testapp.jobs.Returns", "--args", '["object"]')
    assert refused.returncode == 1
    assert "Returns.run() returned a value of type object" in refused.stderr
    assert "testapp.jobs.Returns ERRORED (jobkit.errors.OutputError)" in refused.stderr
