"""The lifecycle hooks through a real ``jobkit worker --burst``: ``on_enqueued`` runs in the
enqueueing process; ``before_run``, ``on_failure`` and ``after_run`` run in the pool child that
runs the job, around it, on every attempt."""

from __future__ import annotations

import os

import pytest

import jobkit
from jobkit import Status, get_result
from testapp.jobs import Lifecycle, ledger

pytestmark = pytest.mark.acceptance


def test_a_worker_calls_the_hooks_in_the_child_that_runs_the_job(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready
):
    failing = Lifecycle("fails", fail_in="run", retries=1).run_in_worker()
    refused = Lifecycle("refused", fail_in="before").run_in_worker()
    fine = Lifecycle("fine", returns="done").run_in_worker()

    worker = start_worker("--burst", "--max-processes", "2")
    assert worker.wait_for_exit() == 0, worker.output()

    rows = ledger(jobkit_settings)
    by_key: dict[str, list[tuple[str, int, int]]] = {}
    for key, phase, pid, attempt in rows:
        by_key.setdefault(key, []).append((phase, pid, attempt))
    for key, entries in by_key.items():
        assert entries[0][:2] == ("enqueued", os.getpid()), key
        children = {pid for _, pid, attempt in entries[1:]}
        assert os.getpid() not in children and worker.pid not in children, key
    run_failed = ["before", "run", "failure RuntimeError: run failed", "after"]
    assert [(phase, attempt) for phase, _, attempt in by_key["fails"][1:]] == [
        (phase, attempt) for attempt in (0, 1) for phase in run_failed
    ]
    assert [phase for phase, _, _ in by_key["refused"][1:]] == [
        "before",
        "failure RuntimeError: before failed",
        "after",
    ]
    assert [phase for phase, _, _ in by_key["fine"][1:]] == ["before", "run", "after"]

    assert get_result(fine.id).output == "done"
    assert get_result(refused.id).status is Status.ERRORED
    attempts = jobkit.job(failing.job_id).attempts
    assert [(a.state, a.error_type) for a in attempts] == [("errored", "RuntimeError")] * 2
