"""Liveness must not be faked: real workers (1 s heartbeat, 5 s timeout) against a real PostgreSQL,
with a ledger counting runs. A lock that holds heartbeats up must not get a live worker declared
dead, and a worker whose main process freezes while its children run on must not let them start
jobs a peer may be given.

Each test ends with ``check_invariants``: one final result per job, nothing left claimed, and no
job run more often than the faults that hit it allow (a LOST result is such a fault)."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.parse
import uuid

import psycopg
import pytest
from faults import attempts, check_invariants, teach_fast_runs, wait_for
from proxy import Proxy
from psycopg import sql
from test_faults import enqueue, finished, start_ready

from conftest import WORKER_IMPORTS, free_a_slot
from jobkit.builtin.postgres.store import PostgresStore
from jobkit.errors import StoreError
from jobkit.records import FlowLimit, JobRequest, LimitScope, WorkerInfo
from testapp.jobs import Record, ledger

pytestmark = pytest.mark.acceptance

LOCK_HELD = 12.0
"""Seconds the lock is held: well past the 5 s heartbeat timeout."""


def lost_per_job(db, jobs) -> dict:
    """Each job's LOST results: the faults a rescue records."""
    return {
        job_id: sum(attempt.status == "LOST" for attempt in rows)
        for job_id, rows in attempts(db, jobs).items()
    }


def explain_stall(db, jobs, peer) -> str:
    """What a test whose peer did not take over needs to say: each job's attempts, the sessions
    left in a transaction (a frozen worker's hold locks), and the peer's log."""
    idle = db.query(
        "SELECT pid, application_name, state, left(query, 80) FROM pg_stat_activity "
        "WHERE state LIKE 'idle in transaction%' AND datname = current_database()"
    )
    return (
        f"not within 60 s: the peer ran every job\nattempts: {attempts(db, jobs)}\n"
        f"sessions in a transaction: {idle}\npeer's log:\n{peer.output()}"
    )


def test_a_worker_whose_children_start_slowly_is_not_taken_for_dead(workers, jobkit_runtime, db):
    """A worker's row is stamped when it registers, while its pool children still import the
    app: it beats meanwhile, so a peer does not take a start longer than the heartbeat timeout
    (5 s here) for death. (It beat only once its children were ready: a peer removed its row,
    and one CI run failed on it elsewhere.)"""
    peer = start_ready(workers, db, "--max-processes", "1")
    slow = workers.start(
        "--max-processes",
        "1",
        env={"JOBKIT_IMPORTS": f"{WORKER_IMPORTS},testapp.slow_import", "SLOW_CHILD_IMPORT": "7"},
    )
    slow.wait_for_log(" started: queues ", timeout=40)
    # A beat after it started: the one that, before the fix, found its row removed.
    started = db.value("SELECT now()")
    beat = "SELECT last_heartbeat_at > %s FROM {schema}.workers WHERE pid = %s"
    wait_for(
        lambda: db.value(beat, [started, slow.pid]) or "declared dead" in slow.output(),
        10,
        message="a heartbeat of the slow worker after it started",
    )

    assert "declared dead" not in slow.output(), slow.output()
    assert "sent no heartbeat" not in peer.output(), peer.output()
    for worker in (peer, slow):
        assert worker.stop(15) == 0, worker.output()


@pytest.mark.parametrize(
    "lock",
    [
        "LOCK TABLE {schema}.workers",
        "SELECT id FROM {schema}.workers FOR UPDATE",
        "SELECT id FROM {schema}.workers WHERE pid = %(pid)s FOR UPDATE",
    ],
    ids=["table-lock", "every-row", "one-workers-row"],
)
def test_a_lock_that_holds_heartbeats_up_gets_no_live_worker_declared_dead(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db, lock
):
    pair = [start_ready(workers, db, "--max-processes", "2") for _ in range(2)]
    jobs = enqueue(jobkit_runtime, [Record(f"j{n}", seconds=3) for n in range(24)], retries=1)
    wait_for(lambda: len(ledger(jobkit_settings)) >= 4, message="both workers running jobs")

    with psycopg.connect(db.url) as locker:  # a transaction, held open like an idle session's
        statement = sql.SQL(lock).format(schema=sql.Identifier(jobkit_settings.schema))
        locker.execute(statement, {"pid": pair[0].pid})
        time.sleep(LOCK_HELD)  # the fault itself: how long the lock is held

    wait_for(lambda: finished(db, jobs), 60, message="every job")
    for worker in pair:
        assert worker.stop(15) == 0, worker.output()
    assert sum(lost_per_job(db, jobs).values()) == 0
    for worker in pair:
        assert "declared dead" not in worker.output(), worker.output()
    check_invariants(db, jobkit_settings, jobs)


def test_a_frozen_main_process_lets_no_child_start_a_job_a_peer_may_be_given(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    frozen = start_ready(workers, db, "--max-processes", "2")
    teach_fast_runs(jobkit_runtime)
    jobs = enqueue(jobkit_runtime, [Record(f"j{n}", seconds=3) for n in range(8)], retries=1)
    wait_for(lambda: db.count("processes") == 8, message="the first worker holds every job")
    wait_for(
        lambda: db.count("processes", "started_at IS NOT NULL") == 2,
        message="two jobs running, and marked started",
    )
    peer = start_ready(workers, db, "--max-processes", "2")

    os.kill(frozen.pid, signal.SIGSTOP)  # the main process alone: its children run on
    try:
        wait_for(lambda: finished(db, jobs), 60, message="the peer ran every job")
    except pytest.fail.Exception:
        pytest.fail(explain_stall(db, jobs, peer), pytrace=False)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    frozen.wait_for_log("was declared dead by another", 30)

    lost = lost_per_job(db, jobs)
    assert sum(lost.values()) == 2, lost  # the two it was running; the six it held never ran
    for worker in workers.started:
        assert worker.stop(15) == 0, worker.output()
    check_invariants(db, jobkit_settings, jobs, faults=lost)


def test_a_heartbeat_frozen_in_flight_leaves_the_worker_row_free_for_a_rescue(jobkit_settings, db):
    """A worker can freeze at any instant (SIGSTOP, a paused VM, packets dropped). Had its beat
    locked its row and then frozen before the commit, the row would stay locked, and a rescue
    leaves a locked row alone: the worker's jobs would never go to a peer. Here the beat's
    connection freezes as the UPDATE goes out, after anything sent before it."""
    with Proxy(jobkit_settings.database_url) as proxy:
        store = PostgresStore(proxy.url(jobkit_settings.database_url), jobkit_settings.schema)
        worker = store.register_worker(
            WorkerInfo(id=uuid.uuid4(), hostname="frozen", pid=1, queues=["default"])
        )
        store.heartbeat(worker_id=worker.id)
        proxy.freeze(lambda sent: sent.count(b"SET last_heartbeat_at") == 2)  # the second beat
        beat = threading.Thread(target=store.heartbeat, kwargs={"worker_id": worker.id})
        beat.start()
        try:
            wait_for(lambda: proxy.frozen() == 1, message="the beat's connection frozen")
            with psycopg.connect(db.url, autocommit=True) as rescuer:
                locked = rescuer.execute(
                    sql.SQL("SELECT id FROM {}.workers WHERE id = %s FOR UPDATE NOWAIT").format(
                        sql.Identifier(jobkit_settings.schema)
                    ),
                    [worker.id],
                ).fetchall()
            assert locked == [(worker.id,)]
        finally:
            proxy.thaw()
            beat.join(10)
            store.close()
        assert not beat.is_alive()


def test_a_claim_frozen_within_flow_limits_holds_a_peer_back_for_seconds_only(jobkit_settings, db):
    """A claim within flow limits locks the limits, then claims, in one transaction: a worker
    frozen between the two would hold every peer's claim under those limits back for as long as
    it stays frozen. The server ends a worker transaction idle for 5 s."""
    url, schema = jobkit_settings.database_url, jobkit_settings.schema
    limits = [FlowLimit(scope=LimitScope.QUEUE, name="default", max_running=10)]

    def claimer(store: PostgresStore, outcome: list) -> threading.Thread:
        worker = store.register_worker(
            WorkerInfo(id=uuid.uuid4(), hostname="limited", pid=1, queues=["default"])
        )

        def claim() -> None:
            try:
                outcome.append(
                    store.claim(worker_id=worker.id, queues=["default"], limit=1, limits=limits)
                )
            except StoreError as error:
                outcome.append(error)

        return threading.Thread(target=claim)

    with Proxy(url) as proxy:
        frozen_store, peer_store = PostgresStore(proxy.url(url), schema), PostgresStore(url, schema)
        (job,) = peer_store.enqueue([JobRequest(job_name="j", parameters="{}")], connection=None)
        frozen_claims: list = []
        peer_claims: list = []
        frozen, peer = claimer(frozen_store, frozen_claims), claimer(peer_store, peer_claims)
        # Frozen as the claim goes out, the limits' locks taken.
        proxy.freeze(lambda sent: b"SKIP LOCKED" in sent.split(b"pg_advisory_xact_lock")[-1])
        try:
            frozen.start()
            wait_for(lambda: proxy.frozen() == 1, message="the claim's connection frozen")
            started = time.monotonic()
            peer.start()
            peer.join(30)
            waited = time.monotonic() - started
        finally:
            proxy.thaw()
            frozen.join(10)
            frozen_store.close()
            peer_store.close()
        assert not peer.is_alive(), "the peer's claim still waits"
        assert [process.job_id for process in peer_claims[0]] == [job.job_id]
        assert 3 < waited < 15, waited  # it did wait for the frozen claim's locks, not for ever
        assert isinstance(frozen_claims[0], StoreError), frozen_claims


def test_a_rescuer_frozen_mid_rescue_keeps_other_rescuers_away_for_seconds_only(
    jobkit_settings, db
):
    """A rescue locks the dead worker's row, then reads its processes and writes their fate: a
    rescuer frozen in between would keep every other rescuer away from that worker (they leave
    a locked row alone) for as long as it stays frozen."""
    url, schema = jobkit_settings.database_url, jobkit_settings.schema
    with Proxy(url) as proxy:
        frozen_store, other_store = (
            PostgresStore(proxy.url(url), schema),
            PostgresStore(url, schema),
        )
        dead = other_store.register_worker(
            WorkerInfo(id=uuid.uuid4(), hostname="dead", pid=1, queues=["default"])
        )
        wait_for(lambda: dead.id in other_store.dead_workers(heartbeat_timeout=0.001))
        outcome: list = []

        def rescue(store: PostgresStore) -> list | None:
            with store.transaction() as conn:
                return store.lock_dead_worker(
                    worker_id=dead.id, heartbeat_timeout=0.001, connection=conn
                )

        def frozen_rescue() -> None:
            try:
                outcome.append(rescue(frozen_store))
            except StoreError as error:
                outcome.append(error)

        # Frozen as the processes are asked for, the worker's row locked.
        proxy.freeze(lambda sent: b"WHERE worker_id = ANY(" in sent)
        frozen = threading.Thread(target=frozen_rescue)
        try:
            frozen.start()
            wait_for(lambda: proxy.frozen() == 1, message="the rescue's connection frozen")
            started = time.monotonic()
            assert rescue(other_store) is None  # locked by the frozen rescue
            wait_for(lambda: rescue(other_store) is not None, 15, message="the row free again")
            waited = time.monotonic() - started
        finally:
            proxy.thaw()
            frozen.join(10)
            frozen_store.close()
            other_store.close()
        assert 3 < waited < 15, waited
        assert isinstance(outcome[0], StoreError), outcome


def test_a_worker_started_against_a_full_server_waits_for_a_slot_and_then_runs_jobs(
    full_role, start_worker, jobkit_runtime, jobkit_settings, ledger_ready, wait_until
):
    worker = start_worker("--max-processes", "1", env={"JOBKIT_DATABASE_URL": full_role})
    wait_until(
        lambda: worker.output().count("trying again in") >= 2,
        message="two tries against the full server",
    )
    assert "too many connections" in worker.output()
    assert worker.poll() is None, worker.output()

    free_a_slot(jobkit_settings, full_role)
    wait_until(lambda: " started: queues " in worker.output(), 40, message="the worker's start")
    job = Record("after-the-wait").run_in_worker()
    wait_until(lambda: jobkit_runtime.get_result(job.id), message="the job's result")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()


def test_a_worker_stopped_while_it_waits_for_the_database_exits_cleanly(
    full_role, start_worker, wait_until
):
    worker = start_worker(env={"JOBKIT_DATABASE_URL": full_role})
    wait_until(
        lambda: "trying again in" in worker.output(), message="a try against the full server"
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit(15) == 0, worker.output()
    assert "stopped before the database answered" in worker.output()


def test_a_silently_dead_listen_connection_is_noticed_and_replaced(
    start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db, wait_until
):
    def pick_up(key: str, timeout: float = 60) -> float:
        """Seconds from a job's enqueue to its start, both by the database's clock."""
        request = Record(key).run_in_worker()
        wait_until(lambda: db.count("ledger", "key = %s", [key]), timeout, message=f"{key} ran")
        return db.value(
            "SELECT extract(epoch FROM min(at) - %s)::float8 FROM {schema}.ledger WHERE key = %s",
            [request.created_at, key],
        )

    with Proxy(jobkit_settings.database_url) as proxy:
        # Only wake-ups start jobs promptly: the poll is 30 s.
        worker = start_worker(
            "--max-processes",
            "1",
            env={
                "JOBKIT_DATABASE_URL": proxy.url(jobkit_settings.database_url),
                "JOBKIT_WORKER_POLL_INTERVAL": "30",
            },
        )
        wait_until(lambda: " started: queues " in worker.output(), message="the worker's start")
        before = pick_up("before")

        # The LISTEN connection hangs with no reset, as when its backend freezes.
        proxy.freeze(lambda sent: b"LISTEN" in sent, later=False)
        assert proxy.frozen() == 1
        during = pick_up("during")
        wait_until(lambda: "went silent" in worker.output(), message="the worker noticing")
        after = pick_up("after")

        worker.send_signal(signal.SIGTERM)
        assert worker.wait_for_exit(20) == 0, worker.output()
    print(f"pick-up latency: before {before:.3f} s, during {during:.1f} s, after {after:.3f} s")
    assert before < 1 and after < 1, (before, during, after)
    assert during < 15, during  # found out within a probe and its timeout, not the 30 s poll


def test_a_worker_whose_login_is_refused_stops_at_once_saying_why(run_cli, jobkit_settings):
    parts = urllib.parse.urlsplit(jobkit_settings.database_url)
    host = parts.netloc.rpartition("@")[2]
    wrong = parts._replace(netloc=f"jobkit_no_such_role:any-password@{host}").geturl()
    done = run_cli("worker", env={"JOBKIT_DATABASE_URL": wrong}, timeout=30)
    assert done.returncode == 1, done.stderr
    # What the server says depends on its authentication: "trust" names the role, a server
    # that asks for a password (the embedded test server) does not say whether it exists.
    assert (
        'role "jobkit_no_such_role" does not exist' in done.stderr
        or 'password authentication failed for user "jobkit_no_such_role"' in done.stderr
    ), done.stderr
    assert "trying again" not in done.stderr
