"""The worker pool's backlog, with real pool children: what the worker claims ahead waits in
the main process, each child holds at most ``PIPE_DEPTH`` attempts, idle children share what
there is, and a backlog no child takes from goes stale. The children start no attempt here (the
pool's lease is never renewed), so what each holds stays put for the test to read."""

import datetime
import time
import uuid

import pytest

from jobkit.pool import BACKLOG_STALE, PIPE_DEPTH, WorkerPool
from jobkit.records import JobProcess
from jobkit.testing import wait_for


@pytest.fixture
def pool(jobkit_runtime):
    pool = WorkerPool(jobkit_runtime.settings, size=2, max_pending=1000, max_jobs_per_child=None)
    pool.spawn()
    try:
        pool.wait_until_ready()
        pool.average_run = 0.0001  # as if fast jobs had just run: claims go deep
        yield pool
    finally:
        pool.kill_all()


def claimed(count: int) -> list[JobProcess]:
    now = datetime.datetime.now(datetime.UTC)
    return [
        JobProcess(job_name="testapp.Noop", parameters="{}", worker_id=uuid.uuid4(), claimed_at=now)
        for _ in range(count)
    ]


def test_idle_children_share_a_few_claimed_jobs(pool):
    assert pool.dispatch(claimed(6)) == []
    assert [len(child.assigned) for child in pool.children] == [3, 3]
    assert not pool.backlog


def test_what_the_children_cannot_hold_waits_in_the_backlog_and_goes_stale(pool):
    jobs = claimed(2 * PIPE_DEPTH + 8)
    dispatched_at = time.monotonic()
    assert pool.dispatch(jobs) == []
    assert [len(child.assigned) for child in pool.children] == [PIPE_DEPTH, PIPE_DEPTH]
    assert list(pool.backlog) == jobs[-8:]
    assert pool.in_flight == len(jobs)
    assert pool.take_backlog(stale_only=True) == []  # children may still take from it
    assert wait_for(lambda: pool.take_backlog(stale_only=True)) == jobs[-8:]
    assert time.monotonic() - dispatched_at >= BACKLOG_STALE
    assert not pool.backlog
