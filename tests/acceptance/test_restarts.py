"""PostgreSQL restarts and outages under real ``jobkit worker`` processes: a restart loses no job
and the workers LISTEN again; outages longer than the heartbeat timeout (7 s) and than
psycopg_pool's reconnect backoff (20 s) make no live worker look dead.

These tests take their server down, so they run on a server of their own (``own_server``: the
``embedded`` extra's PostgreSQL in a temporary directory, on a free port of 127.0.0.1), never on
``JOBKIT_TEST_DATABASE_URL`` or any server they did not start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from faults import (
    backends_of,
    check_invariants,
    postmaster_start,
    retry_through_outage,
    wait_for,
)
from test_faults import SLOW_POLL, enqueue, finished, runs, start_latency, start_ready

from jobkit.builtin.embedded import EmbeddedServer
from jobkit.testing.plugin import migrated_schema, own_server
from testapp.fault_jobs import Sleeper
from testapp.jobs import Record

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[str, EmbeddedServer]]:
    with own_server() as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def jobkit_database_url(started: tuple[str, EmbeddedServer]) -> str:
    """This module's tests (and their workers) use the server they may restart."""
    return started[0]


@pytest.fixture(scope="module")
def own_database(started: tuple[str, EmbeddedServer]) -> EmbeddedServer:
    return started[1]


@pytest.fixture(scope="module")
def jobkit_schema(jobkit_database_url: str) -> Iterator[str]:
    with migrated_schema(jobkit_database_url) as schema:
        yield schema


def test_a_postgres_restart_loses_no_job_and_workers_listen_again(
    own_database, workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    pair = [start_ready(workers, db, "--max-processes", "2", env=SLOW_POLL) for _ in range(2)]
    jobs = enqueue(jobkit_runtime, [Sleeper(f"j{n}", seconds=0.5) for n in range(50)])
    wait_for(lambda: db.count("results") >= 8, message="jobs under way")

    restarted = postmaster_start(db.url)
    own_database.restart()
    assert postmaster_start(db.url) > restarted

    wait_for(lambda: finished(db, jobs), 60, message="every job finished")
    assert db.count("results", "status = 'LOST'") == 0
    assert all(worker.poll() is None for worker in pair)
    # Both workers LISTEN again: a job enqueued now starts at once, with a 30 s poll.
    for worker in pair:
        wait_for(
            lambda worker=worker: any(
                name.endswith(":listener") for name in backends_of(db.url, worker.pid).values()
            ),
            10,
            message=f"worker {worker.pid} listening again",
        )
    late = retry_through_outage(lambda: Record("late").run_in_worker())
    assert late is not None
    jobs[late.job_id] = "late"
    wait_for(lambda: runs(db, "late"), 10, message="the late job's start")
    assert start_latency(db, "late", late) < 2
    for worker in pair:
        assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs)


def test_an_outage_longer_than_the_heartbeat_timeout_makes_no_live_worker_look_dead(
    own_database, workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    pair, jobs = [], {}
    for n in range(2):
        # One job each: one child, claiming no more than it runs.
        worker = start_ready(workers, db, "--max-processes", "1", "--max-pending-per-process", "1")
        job = Sleeper(f"across-{n}", seconds=14).run_in_worker(retries=1)
        assert job is not None
        [(child, _, _)] = wait_for(lambda n=n: runs(db, f"across-{n}"), message="job start")
        assert child in worker.pool_children()
        pair.append(worker)
        jobs[job.job_id] = f"across-{n}"

    with own_database.stopped():
        time.sleep(7)  # the fault: the database is down longer than the 5 s heartbeat timeout

    wait_for(lambda: finished(db, jobs), 40, message="both jobs finished")
    assert db.count("results", "status = 'LOST'") == 0
    assert all(worker.poll() is None for worker in pair)
    for worker in pair:
        assert worker.stop(10) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs)


def test_an_outage_of_20_s_makes_no_live_worker_look_dead(
    own_database, workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    pair, jobs = [], {}
    for n in range(2):
        worker = start_ready(workers, db, "--max-processes", "1", "--max-pending-per-process", "1")
        job = Sleeper(f"across-{n}", seconds=32).run_in_worker(retries=1)
        wait_for(lambda n=n: runs(db, f"across-{n}"), message="job start")
        pair.append(worker)
        jobs[job.job_id] = f"across-{n}"
    with own_database.stopped():
        time.sleep(20)  # the fault: an outage that outlasts psycopg_pool's reconnect backoff
    wait_for(lambda: finished(db, jobs), 60, message="both jobs finished")
    assert db.count("results", "status = 'LOST'") == 0  # failed once: 1-2 LOST, jobs run twice
