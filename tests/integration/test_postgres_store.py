"""The store contract, run against the built-in Postgres store."""

import concurrent.futures
import secrets
import threading
import uuid

import attrs
import psycopg
import pytest
from psycopg import sql

from jobkit.runtime import Runtime
from jobkit.testing.store_contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, jobkit_runtime):
        return jobkit_runtime.store


def test_concurrent_migrations_of_a_new_schema_all_succeed(jobkit_settings):
    """Processes that migrate a new schema at once (workers starting together on a new embedded
    database) wait for each other: one applies the migrations, the others find them applied."""
    schema = f"jobkit_fresh_{secrets.token_hex(4)}"
    runtimes = [
        Runtime.from_settings(attrs.evolve(jobkit_settings, schema=schema)) for _ in range(4)
    ]
    for runtime in runtimes:
        runtime.store.database_now()  # connected before the race starts
    start = threading.Barrier(len(runtimes))

    def migrate(runtime):
        start.wait()
        return runtime.store.migrate()

    try:
        with concurrent.futures.ThreadPoolExecutor(len(runtimes)) as pool:
            applied = list(pool.map(migrate, runtimes))
        assert sorted(map(bool, applied)) == [False, False, False, True]
    finally:
        for runtime in runtimes:
            runtime.close()
        with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def test_a_rerun_gets_a_time_ordered_id_as_new_jobs_do(jobkit_runtime):
    """Reruns are made in SQL: their ids have the layout of jobkit.records.new_attempt_id, so the
    results' primary key grows at its right edge."""
    from jobkit.records import Status, WorkerInfo, new_attempt_id
    from jobkit.testing.store_contract import completion, make_request

    store = jobkit_runtime.store
    worker = WorkerInfo(id=uuid.uuid4(), hostname="ids", pid=1, queues=["default"])
    store.register_worker(worker)
    before = new_attempt_id()
    store.enqueue([make_request(retries=1)], connection=None)
    (process,) = store.claim(worker_id=worker.id, queues=["default"], limit=1)
    report = store.finish(
        worker_id=worker.id, completions=[completion(process, Status.ERRORED, rerun_in=0.0)]
    )
    rerun_id = report.written[process.id]
    assert rerun_id is not None and rerun_id.version == 7
    assert abs((rerun_id.int >> 80) - (before.int >> 80)) < 5000  # the same clock, in ms
