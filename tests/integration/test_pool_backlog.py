"""The worker pool's backlog, with real pool children: what the worker claims ahead waits in
the main process, each child holds at most ``PIPE_DEPTH`` attempts, idle children share what
there is, and a backlog no child takes from goes stale. The children start no attempt here (the
pool's lease is never renewed), so what each holds stays put for the test to read."""

import contextlib
import datetime
import time
import uuid
from collections.abc import Iterator

import attrs
import pytest

from jobkit.pool import BACKLOG_STALE, PIPE_DEPTH, WorkerPool
from jobkit.records import JobProcess
from jobkit.registry import registry
from jobkit.testing import wait_for
from testapp.async_jobs import Nap


@contextlib.contextmanager
def started_pool(runtime, settings) -> Iterator[WorkerPool]:
    """Two pool children on ``settings``, ready; killed afterwards."""
    pool = WorkerPool(
        settings, size=2, max_pending=1000, max_jobs_per_child=None, is_async=runtime.is_async
    )
    pool.spawn()
    try:
        pool.wait_until_ready()
        yield pool
    finally:
        pool.kill_all()


@pytest.fixture
def pool(jobkit_runtime):
    with started_pool(jobkit_runtime, jobkit_runtime.settings) as pool:
        pool.average_run = 0.0001  # as if fast jobs had just run: claims go deep
        yield pool


@pytest.fixture
def async_pool(jobkit_runtime):
    """Two children that run up to 4 async jobs at once, with no run time learned yet."""
    settings = attrs.evolve(jobkit_runtime.settings, worker_async_concurrency=4)
    with started_pool(jobkit_runtime, settings) as pool:
        yield pool


def claimed(count: int, job_name: str = "testapp.Noop") -> list[JobProcess]:
    now = datetime.datetime.now(datetime.UTC)
    return [
        JobProcess(job_name=job_name, parameters="{}", worker_id=uuid.uuid4(), claimed_at=now)
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


def test_async_jobs_fill_each_child_to_its_concurrency_and_no_sync_job_waits_behind_them(
    async_pool,
):
    assert async_pool.free_slots() == 2  # one per child, until it knows what it claims
    nap = registry.name_of(Nap)
    naps = claimed(10, nap)
    assert async_pool.dispatch(naps) == []
    assert [len(child.assigned) for child in async_pool.children] == [4, 4]
    assert list(async_pool.backlog) == naps[8:]
    assert async_pool.free_slots() == 0  # the backlog is all the room there is

    sync = claimed(1)
    assert async_pool.dispatch(sync) == []
    assert [len(child.assigned) for child in async_pool.children] == [4, 4]
    assert list(async_pool.backlog) == naps[8:] + sync
