"""The async producer API against the real database: arun_in_worker, aenqueue_many and
aget_result, with the same defaults, locks, should_enqueue and hooks as the sync path; an
AsyncConnection's transaction; the lock fallback; and a store without async methods."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit import (
    JobRequest,
    ParameterError,
    PluginError,
    Status,
    StoreError,
    aenqueue_many,
    aget_result,
    get_result,
    hookimpl,
)
from jobkit.builtin.postgres import PostgresStore
from jobkit.testing import run_jobs
from testapp.integration_jobs import AtMostTwo, Tuned
from testapp.jobs import Fail, Lifecycle, Noop, create_ledger, ledger
from testapp.key_jobs import CountingLock, Keyed

T = TypeVar("T")


def run(runtime, coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` on a new event loop, closing the runtime's async pool before the loop
    ends (its connections belong to that loop)."""

    async def body() -> T:
        try:
            return await coroutine
        finally:
            await runtime.aclose()

    return asyncio.run(body())


def pending(settings) -> list[tuple[uuid.UUID, str]]:
    """Committed requests (id, concurrency key) in insert order, from a connection of our own."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        query = sql.SQL("SELECT id, concurrency_key FROM {}.requests ORDER BY seq").format(
            sql.Identifier(settings.schema)
        )
        return connection.execute(query).fetchall()


# arun_in_worker, aenqueue_many, aget_result ------------------------------------------------------


def test_arun_in_worker_stores_the_request_the_sync_path_would(jobkit_runtime):
    line = sys._getframe().f_lineno + 3

    async def enqueue():
        return await Tuned("a").arun_in_worker(), await Noop(7).arun_in_worker(priority=4)

    tuned, noop = run(jobkit_runtime, enqueue())
    assert isinstance(tuned, JobRequest) and isinstance(noop, JobRequest)
    assert (tuned.queue, tuned.priority, tuned.retries, tuned.concurrency_key) == (
        "tuned",
        5,
        2,
        "tuned-a",
    )
    assert (noop.queue, noop.priority, noop.concurrency_key) == ("default", 4, "")
    assert json.loads(noop.parameters) == {"args": [7], "kwargs": {}}
    assert noop.created_at is not None and noop.start_at == noop.created_at
    assert noop.source == tuned.source == f"{__file__}:{line}"
    assert pending(jobkit_runtime.settings) == [(tuned.id, "tuned-a"), (noop.id, "")]


def test_aenqueue_many_keeps_order_and_declines_a_second_job_with_a_held_key(jobkit_runtime):
    jobs = [Noop(1), Keyed("k"), Noop(2), Keyed("k"), Noop(3)]
    stored = run(jobkit_runtime, aenqueue_many(jobs, priority=2))
    assert [request is None for request in stored] == [False, False, False, True, False]
    assert all(request.priority == 2 for request in stored if request is not None)
    assert [row[0] for row in pending(jobkit_runtime.settings)] == [
        request.id for request in stored if request is not None
    ]


def test_aget_result_reads_what_get_result_reads(jobkit_runtime):
    request = run(jobkit_runtime, Fail().arun_in_worker(retries=1))
    assert request is not None
    assert run(jobkit_runtime, aget_result(request.id)) is None  # pending
    run_jobs(jobkit_runtime)  # both attempts fail
    result = run(jobkit_runtime, aget_result(str(request.id)))
    assert result is not None and result.status is Status.ERRORED
    assert result.job_id == request.job_id and result.retry_attempt == 1
    assert result == get_result(request.id)
    assert run(jobkit_runtime, aget_result(uuid.uuid4())) is None


def test_bad_input_is_refused_before_anything_is_stored(jobkit_runtime):
    with pytest.raises(ParameterError, match="priority must be between"):
        run(jobkit_runtime, Noop().arun_in_worker(priority=2**40))
    with pytest.raises(TypeError, match=r"aget_result\(\) takes an attempt id"):
        run(jobkit_runtime, aget_result("not a uuid"))
    with pytest.raises(TypeError, match=r"plain\.worker's unique_key is concurrency_key"):
        Noop().arun_in_worker(unique_key="k")  # type: ignore[call-arg]
    assert pending(jobkit_runtime.settings) == []


# The caller's AsyncConnection --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "tx-key"], ids=["no key", "concurrency key"])
def test_an_async_connection_s_commit_stores_the_job(jobkit_runtime, key):
    settings = jobkit_runtime.settings

    async def enqueue():
        async with await psycopg.AsyncConnection.connect(settings.database_url) as connection:
            request = await Noop().arun_in_worker(connection=connection, concurrency_key=key)
            assert pending(settings) == []  # not committed yet
            assert run_jobs(jobkit_runtime) == []
            await connection.commit()
            return request

    request = run(jobkit_runtime, enqueue())
    assert pending(settings) == [(request.id, key)]
    (result,) = run_jobs(jobkit_runtime)
    assert result.id == request.id and result.status is Status.SUCCESSFUL


@pytest.mark.parametrize("key", ["", "tx-key"], ids=["no key", "concurrency key"])
def test_an_async_connection_s_rollback_leaves_no_job(jobkit_runtime, key):
    settings = jobkit_runtime.settings

    async def enqueue():
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as connection:
            with contextlib.suppress(psycopg.Rollback):
                async with connection.transaction():
                    assert await Noop().arun_in_worker(connection=connection, concurrency_key=key)
                    raise psycopg.Rollback
        # The rolled-back request does not hold its key.
        return await Noop().arun_in_worker(concurrency_key=key)

    request = run(jobkit_runtime, enqueue())
    assert pending(settings) == [(request.id, key)]


@pytest.mark.parametrize("key", ["", "tx-key"], ids=["no key", "concurrency key"])
def test_a_connection_of_the_other_kind_is_refused(jobkit_runtime, key):
    url = jobkit_runtime.settings.database_url

    async def async_api_with_a_sync_connection():
        with psycopg.connect(url) as connection:
            await Noop().arun_in_worker(connection=connection, concurrency_key=key)

    with pytest.raises(
        TypeError, match="must be a psycopg AsyncConnection here, got a psycopg Connection"
    ):
        run(jobkit_runtime, async_api_with_a_sync_connection())

    async def sync_api_with_an_async_connection():
        async with await psycopg.AsyncConnection.connect(url) as connection:
            Noop().run_in_worker(connection=connection, concurrency_key=key)

    with pytest.raises(
        TypeError, match="must be a psycopg Connection here, got a psycopg AsyncConnection"
    ):
        run(jobkit_runtime, sync_api_with_an_async_connection())
    assert pending(jobkit_runtime.settings) == []


class AsyncSession:
    """Stands for an async ORM session: its connection is reached (and its transaction begun)
    only by awaiting."""

    def __init__(self, connection):
        self.connection = connection
        self.begun = False

    async def driver_connection(self):
        self.begun = True
        return self.connection


class AsyncSessionAdapter:
    @hookimpl
    def jobkit_driver_connection(self, connection):
        return connection.driver_connection() if isinstance(connection, AsyncSession) else None


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the refused coroutine is closed, not left
def test_a_driver_connection_plugin_may_answer_an_awaitable_on_the_async_path(
    jobkit_runtime, register_plugin
):
    register_plugin(AsyncSessionAdapter())
    url = jobkit_runtime.settings.database_url

    async def enqueue_in_the_session():
        async with await psycopg.AsyncConnection.connect(url) as connection:
            session = AsyncSession(connection)
            request = await Noop(1).arun_in_worker(connection=session)
            assert session.begun and pending(jobkit_runtime.settings) == []
            await connection.commit()
            return request

    request = run(jobkit_runtime, enqueue_in_the_session())
    assert pending(jobkit_runtime.settings) == [(request.id, "")]

    async def sync_api_with_the_async_session():
        async with await psycopg.AsyncConnection.connect(url) as connection:
            Noop(2).run_in_worker(connection=AsyncSession(connection))

    with pytest.raises(ParameterError, match="AsyncSession, which is async: enqueue with await"):
        run(jobkit_runtime, sync_api_with_the_async_session())
    assert len(pending(jobkit_runtime.settings)) == 1


# Concurrency keys and should_enqueue under an async race -----------------------------------------


def test_many_concurrent_arun_in_worker_with_one_key_store_exactly_one(jobkit_runtime):
    async def race():
        return await asyncio.gather(*(Keyed("raced").arun_in_worker() for _ in range(20)))

    stored = run(jobkit_runtime, race())
    assert sum(request is not None for request in stored) == 1
    assert [key for _, key in pending(jobkit_runtime.settings)] == ["raced"]


def test_should_enqueue_counts_inside_the_enqueue_s_own_transaction(jobkit_runtime):
    # AtMostTwo counts pending jobs with get_requested_jobs(): from its thread, on the
    # caller's connection, so it sees the uncommitted inserts before it in the transaction.
    settings = jobkit_runtime.settings

    async def enqueue():
        async with await psycopg.AsyncConnection.connect(settings.database_url) as connection:
            stored = [await AtMostTwo().arun_in_worker(connection=connection) for _ in range(3)]
            await connection.commit()
        return stored

    stored = run(jobkit_runtime, enqueue())
    assert [request is not None for request in stored] == [True, True, False]
    assert len(pending(settings)) == 2


def test_a_sync_lock_that_answers_for_an_async_connection_wins_and_is_held_in_a_thread(
    jobkit_runtime, register_plugin
):
    # A replacement of the sync lock (Redis's, say) is the lock of async producers too, even
    # with the built-in's async advisory lock installed: sync and async producers of a key
    # must take the same lock.
    lock = register_plugin(CountingLock())

    async def race():
        return await asyncio.gather(*(Keyed("k").arun_in_worker() for _ in range(10)))

    stored = run(jobkit_runtime, race())
    assert sum(request is not None for request in stored) == 1
    assert lock.taken == [("keys.Keyed", "k")] * 10
    assert Keyed("k").run_in_worker() is None
    assert lock.taken == [("keys.Keyed", "k")] * 11


def test_with_no_lock_plugin_a_keyed_async_enqueue_is_a_named_error(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.locks"])
    with pytest.raises(PluginError, match=r"no plugin provides an enqueue lock for keys\.Keyed"):
        run(runtime, Keyed("k").arun_in_worker())
    assert pending(runtime.settings) == []


# Hooks -------------------------------------------------------------------------------------------


class Observer:
    """Wraps jobkit_enqueue both ways, declines one job by plugin, and records the events."""

    def __init__(self):
        self.order: list[str] = []
        self.enqueued: list[uuid.UUID] = []
        self.committed: list[list[uuid.UUID]] = []

    @hookimpl(wrapper=True)
    def jobkit_enqueue(self, jobs, requests, connection):
        self.order.append("new-style before")
        for request in requests:
            request.headers["stamp"] = "async"
        stored = yield
        self.order.append(f"new-style after {len(stored)}")
        return stored

    @hookimpl
    def jobkit_should_enqueue(self, job, request):
        return False if json.loads(request.parameters)["args"] == [13] else None

    @hookimpl
    def jobkit_job_enqueued(self, job, request):
        self.enqueued.append((job.number, request.id))

    @hookimpl
    def jobkit_job_committed(self, requests):
        self.committed.append([request.id for request in requests])


class OldStyle:
    @hookimpl(hookwrapper=True)
    def jobkit_enqueue(self, jobs, requests, connection):
        outcome = yield
        stored = outcome.get_result()
        outcome.force_result([*stored, None] if len(jobs) == 99 else stored)
        OldStyle.seen.append(len(stored))

    seen: list[int] = []


def test_the_async_path_calls_the_same_hooks(jobkit_runtime, register_plugin):
    observer = register_plugin(Observer())
    register_plugin(OldStyle())
    OldStyle.seen.clear()

    stored = run(jobkit_runtime, aenqueue_many([Noop(1), Noop(13), Noop(2)]))

    assert [request is None for request in stored] == [False, True, False]
    assert observer.order == ["new-style before", "new-style after 3"]
    assert OldStyle.seen == [3]
    inserted = [request.id for request in stored if request is not None]
    assert observer.enqueued == list(zip([1, 2], inserted, strict=True))
    assert observer.committed == [inserted]  # on jobkit's own connection: committed at once
    assert all(request.headers == {"stamp": "async"} for request in stored if request)


def test_wrappers_run_in_pluggy_s_order_on_both_paths(jobkit_runtime, register_plugin):
    order: list[str] = []

    def wrapper(name, **marks):
        class Wrapper:
            @hookimpl(wrapper=True, **marks)
            def jobkit_enqueue(self, jobs, requests, connection):
                order.append(f"{name} before")
                stored = yield
                order.append(f"{name} after")
                return stored

        return Wrapper()

    class OldStyleWrapper:
        @hookimpl(hookwrapper=True)
        def jobkit_enqueue(self, jobs, requests, connection):
            order.append("old before")
            yield
            order.append("old after")

    register_plugin(wrapper("last", trylast=True))
    register_plugin(OldStyleWrapper())
    register_plugin(wrapper("first", tryfirst=True))
    register_plugin(wrapper("plain"))

    Noop().run_in_worker()
    sync_order = list(order)
    order.clear()
    run(jobkit_runtime, Noop().arun_in_worker())
    assert order == sync_order
    assert sync_order[0] == "first before" and sync_order[-1] == "first after"
    assert len(sync_order) == 8


def test_an_error_reaches_the_wrapper_and_the_caller(jobkit_runtime, register_plugin):
    seen: list[BaseException] = []

    class Catcher:
        @hookimpl(wrapper=True)
        def jobkit_enqueue(self, jobs, requests, connection):
            try:
                return (yield)
            except ParameterError as error:
                seen.append(error)
                raise

    register_plugin(Catcher())

    async def with_a_sync_connection():
        with psycopg.connect(jobkit_runtime.settings.database_url) as connection:
            await Noop().arun_in_worker(connection=connection)

    with pytest.raises(TypeError):
        run(jobkit_runtime, with_a_sync_connection())
    assert len(seen) == 1 and "AsyncConnection" in str(seen[0])


def test_on_enqueued_runs_once_stored_and_its_error_is_raised_after_every_job(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    jobs = [Lifecycle("first", fail_in="enqueued"), Lifecycle("fine")]
    with pytest.raises(RuntimeError, match="enqueued failed"):
        run(jobkit_runtime, aenqueue_many(jobs))
    phases = [(key, phase) for key, phase, _, _ in ledger(jobkit_runtime.settings)]
    assert phases == [("first", "enqueued"), ("fine", "enqueued")]
    assert len(pending(jobkit_runtime.settings)) == 2  # the requests stay stored


# A store without the async methods ---------------------------------------------------------------


class SyncOnlyStore(PostgresStore):
    """A store that implements only the sync Store protocol (as a third party's may)."""

    aenqueue = None  # type: ignore[assignment]
    aget_result = None  # type: ignore[assignment]


class SyncOnlyStorePlugin:
    @hookimpl(tryfirst=True)
    def jobkit_store(self, settings):
        return SyncOnlyStore(settings.database_url, settings.schema)


def test_a_store_without_async_methods_is_a_clear_error(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory()
    runtime.pm.register(SyncOnlyStorePlugin())
    runtime.close()  # the store is made again, by the plugin
    with pytest.raises(StoreError, match="aenqueue, aget_result are missing") as raised:
        run(runtime, Noop().arun_in_worker())
    assert "await asyncio.to_thread(job.run_in_worker)" in str(raised.value)
    assert Noop().run_in_worker() is not None  # the sync API still works with it


def test_jobkit_aclose_closes_the_connections_of_the_running_loop(
    jobkit_runtime, jobkit_settings, monkeypatch
):
    """An app awaits ``jobkit.aclose()`` as it shuts down: the async pool's connections end with
    the loop that opened them instead of being left to the garbage collector."""
    name = f"aclose-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)  # libpq names the pool's connections after it

    def sessions() -> int:
        with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            return connection.execute(query, [name]).fetchone()[0]

    async def enqueue_then_close() -> tuple[int, int, int]:
        before = sessions()
        await Noop(1).arun_in_worker()
        opened = sessions()
        await jobkit.aclose()
        return before, opened, sessions()

    for _ in range(2):  # a new loop opens a pool of its own
        before, opened, closed = asyncio.run(enqueue_then_close())
        assert opened > before and closed == before, (before, opened, closed)
    assert len(pending(jobkit_settings)) == 2


def test_jobkit_aclose_builds_no_runtime_in_a_process_that_has_none():
    script = (
        "import asyncio, jobkit, jobkit.runtime as r; asyncio.run(jobkit.aclose()); "
        "print(r._current is None)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")}
    env["JOBKIT_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/nothing"  # never connected
    ran = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert (ran.returncode, ran.stdout.strip()) == (0, "True"), ran.stderr
