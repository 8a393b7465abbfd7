"""A producer's connections through faults of the database: after a restart its next enqueues
work, and a server with no free connection slot is reported as unavailable (retry later), not as
an error in what was enqueued. The faults come from a proxy between the producer and the
database, or from a role of the test's own: the machine's PostgreSQL is never restarted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from proxy import Proxy

from conftest import free_a_slot
from jobkit.errors import StoreUnavailable
from testapp.jobs import Record, ledger

pytestmark = pytest.mark.acceptance

POOLED = 8
"""Connections the producer holds in its pool before the restart (a busy web app holds many)."""


@pytest.fixture
def proxy(jobkit_settings) -> Iterator[Proxy]:
    with Proxy(jobkit_settings.database_url) as proxy:
        yield proxy


def ended(settings) -> set[str]:
    return {key for key, phase, _, _ in ledger(settings) if phase == "end"}


def fill_the_pool(runtime, size: int) -> None:
    """Have ``size`` threads hold a connection from the runtime's store at once, so the pool
    keeps that many."""
    all_in = threading.Barrier(size)

    def hold() -> None:
        with runtime.store.transaction():
            all_in.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_after_a_restart_every_enqueue_works_once_the_database_is_back(
    proxy, jobkit_runtime_factory, jobkit_settings, start_worker, ledger_ready, wait_until
):
    producer = jobkit_runtime_factory(database_url=proxy.url(jobkit_settings.database_url))
    start_worker()  # straight to the database: only the producer's connections break
    fill_the_pool(producer, POOLED)
    Record("before").run_in_worker()
    wait_until(lambda: "before" in ended(jobkit_settings), message="the job before the restart")

    assert proxy.cut() >= POOLED  # the restart: every session ends ...
    with proxy.refusing():  # ... and the server is down for a moment
        wait_until(lambda: proxy.connections() == 0, message="the proxy's connections to close")

    failures = []
    started = time.monotonic()
    for number in range(15):
        try:
            Record(f"after-{number}").run_in_worker()
        except StoreUnavailable as error:
            failures.append(f"after-{number}: {error}")
    took = time.monotonic() - started

    assert failures == [], f"{len(failures)} of 15 enqueues failed after the restart"
    assert took < 5, f"the 15 enqueues after the restart took {took:.1f} s"
    wait_until(
        lambda: {f"after-{n}" for n in range(15)} <= ended(jobkit_settings),
        message="the 15 jobs enqueued after the restart to run",
    )


def test_a_full_server_is_unavailable_and_the_enqueue_works_once_a_slot_frees(
    full_role, jobkit_runtime_factory, jobkit_settings, start_worker, ledger_ready, wait_until
):
    jobkit_runtime_factory()  # the first runtime empties the tables, as the test's own role
    producer = jobkit_runtime_factory(database_url=full_role)
    start_worker()

    with pytest.raises(StoreUnavailable, match="too many connections"):
        Record("while-full").run_in_worker()

    free_a_slot(jobkit_settings, full_role)
    assert Record("once-free").run_in_worker() is not None
    wait_until(lambda: "once-free" in ended(jobkit_settings), message="the job enqueued once free")
    assert "while-full" not in ended(jobkit_settings)
    assert producer.store.stats().total.pending == 0
