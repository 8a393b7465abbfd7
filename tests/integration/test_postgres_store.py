"""The store contract, run against the built-in Postgres store."""

import concurrent.futures
import contextlib
import secrets
import threading
import uuid

import attrs
import psycopg
import pytest
from psycopg import sql

from jobkit.errors import ParameterError
from jobkit.records import Status
from jobkit.runtime import Runtime
from jobkit.testing import wait_for
from jobkit.testing.store_contract import StoreContract, completion, make_request


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


def test_the_attempts_of_one_claim_share_their_worker_id_and_claim_time(jobkit_runtime):
    """One object each, so the worker's pipes pickle them once for a batch of attempts (a third
    of what pickling an attempt cost), and the children get them back equal."""
    from jobkit.records import WorkerInfo

    store = jobkit_runtime.store
    worker = WorkerInfo(id=uuid.uuid4(), hostname="shared", pid=1, queues=["default"])
    store.register_worker(worker)
    store.enqueue([make_request() for _ in range(3)], connection=None)

    first, *others = store.claim(worker_id=worker.id, queues=["default"], limit=3)

    assert len(others) == 2
    assert first.worker_id == worker.id
    assert all(other.worker_id is first.worker_id for other in others)
    assert all(other.claimed_at is first.claimed_at for other in others)


class Abandoned(Exception):
    """Rolls back the claim's transaction."""


def _waits_on_a_lock(settings) -> bool:
    """Whether a delete_job statement of the test's schema waits for a lock (the schema, as
    tests running in parallel share the server)."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '-- jobkit: delete_job%%' AND strpos(query, %s) > 0",
            [settings.schema],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("claim_commits", [True, False])
def test_a_delete_racing_a_claim_deletes_nothing_of_a_job_that_runs(
    jobkit_runtime, jobkit_settings, claim_commits
):
    """A delete that finds a job waiting while a worker's claim takes it (the claim's
    transaction holds the request) waits for the claim: committed, the job runs and the delete
    keeps all of it ("moved", then "running"); rolled back, the delete takes the request."""
    store = jobkit_runtime.store
    worker = StoreContract().register(store)
    (first,) = store.enqueue([make_request(queue="race")], connection=None)
    (process,) = store.claim(worker_id=worker.id, queues=["race"], limit=1)
    store.finish(
        worker_id=worker.id,
        completions=[completion(process, Status.ERRORED, error="boom", rerun_in=0.0)],
    )
    [_, rerun] = store.job_attempts(first.id)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with contextlib.suppress(Abandoned), store.transaction() as claiming:
            _, claimed = store.finish_and_claim(
                worker_id=worker.id, completions=[], queues=["race"], limit=1, connection=claiming
            )
            assert [p.id for p in claimed] == [rerun.id]
            deleting = pool.submit(store.delete_job, job_id=first.id)
            wait_for(lambda: deleting.done() or _waits_on_a_lock(jobkit_settings))
            assert not deleting.done(), deleting.result()
            if not claim_commits:
                raise Abandoned
        if claim_commits:
            assert deleting.result(timeout=10) == ("moved", 0)
            assert store.delete_job(job_id=first.id) == ("running", 0)
            assert [a.state.value for a in store.job_attempts(first.id)] == ["errored", "running"]
        else:
            assert deleting.result(timeout=10) == ("deleted", 2)
            assert store.job_attempts(first.id) == []


def test_throughput_has_every_bucket_and_a_failure_rate(jobkit_runtime):
    from jobkit.operations import Operations

    store = jobkit_runtime.store
    worker = StoreContract().register(store)
    store.enqueue([make_request() for _ in range(4)], connection=None)
    processes = store.claim(worker_id=worker.id, queues=["default"], limit=4)
    store.finish(
        worker_id=worker.id,
        completions=[
            completion(processes[0]),
            completion(processes[1]),
            completion(processes[2], Status.ERRORED, error="boom"),
            completion(processes[3], Status.CANCELLED),
        ],
    )
    operations = Operations(jobkit_runtime)
    hour = operations.throughput()
    assert len(hour.buckets) == 60 and hour.bucket_seconds == 60
    starts = [bucket.start for bucket in hour.buckets]
    assert starts == sorted(starts) and len(set(starts)) == 60
    assert (hour.total, hour.failed) == (4, 1)
    assert hour.failure_rate == 1 / 3  # cancelled is neither a success nor a failure
    assert hour.buckets[-1].total + hour.buckets[-2].total == 4  # a minute may have turned
    day = operations.throughput(buckets=24, bucket_seconds=3600)
    assert len(day.buckets) == 24 and day.total == 4
    assert [b.failure_rate for b in day.buckets[:-2]] == [None] * 22
    with pytest.raises(ParameterError):
        operations.throughput(buckets=0)


def test_transactions_ending_members_of_two_workflows_in_opposite_orders_recover(jobkit_runtime):
    """The member trigger locks each workflow's row at the commit, in the order the members
    ended: two commits at once, in opposite orders, can each hold one and wait for the other.
    PostgreSQL ends one (a deadlock, a StoreError a worker retries after its backoff), and once
    it is written again both callbacks are released."""
    store = jobkit_runtime.store
    contract = StoreContract()
    first, second = contract.enqueue_link(store, 2), contract.enqueue_link(store, 2)
    one, other = contract.register(store, ("wf",)), contract.register(store, ("wf",))
    processes = {p.id: p for p in store.claim(worker_id=one.id, queues=["wf"], limit=10)}
    store.release(worker_id=one.id, process_ids=[first.members[1].id, second.members[1].id])
    processes |= {p.id: p for p in store.claim(worker_id=other.id, queues=["wf"], limit=10)}

    holding = threading.Barrier(2)

    lock = sql.SQL("SELECT 1 FROM {}.workflows WHERE id = %s FOR UPDATE").format(
        sql.Identifier(store.schema)
    )

    def ends(worker, links, *, together: bool = True) -> None:
        with store.transaction() as connection:
            for link, member in links:
                process = processes[link.members[member].id]
                store.finish(
                    worker_id=worker.id, completions=[completion(process)], connection=connection
                )
            if together:
                # The interleaving of two commits, made certain: each takes its first
                # workflow's lock (as its commit's trigger will) before either commits.
                connection.execute(lock, [links[0][0].id])
                holding.wait(10)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = [
            pool.submit(ends, one, [(first, 0), (second, 0)]),
            pool.submit(ends, other, [(second, 1), (first, 1)]),
        ]
        errors = [future.exception(timeout=30) for future in done]
    failed = [error for error in errors if error is not None]
    assert len(failed) == 1 and "DeadlockDetected" in str(failed[0]), errors
    victim = (other, [(second, 1), (first, 1)]) if errors[1] else (one, [(first, 0), (second, 0)])
    ends(*victim, together=False)  # the worker writes its batch again

    callbacks = store.claim(worker_id=one.id, queues=["wf"], limit=10)
    assert sorted(p.id for p in callbacks) == sorted([first.callback.id, second.callback.id])
