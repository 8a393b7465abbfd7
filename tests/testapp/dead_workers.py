"""Seeding the state a dead worker leaves: a registered worker (its beat set back in time), the
attempts it claimed and started. Used by the rescue tests of the store and of plugins."""

import datetime
import uuid

import psycopg
from psycopg import sql

from jobkit.records import WorkerInfo
from jobkit.testing import wait_for


def claim_and_start(store, worker_id: uuid.UUID, limit: int = 10) -> list:
    """Claim for ``worker_id`` and tell the store the attempts started, as its worker would."""
    claimed = store.claim(worker_id=worker_id, queues=["default"], limit=limit)
    now = datetime.datetime.now(datetime.UTC)
    store.finish_and_claim(
        worker_id=worker_id,
        completions=[],
        queues=[],
        limit=0,
        started=[(process.id, now) for process in claimed],
    )
    return claimed


SERVER_UP_LONG_ENOUGH = 6.0
"""Seconds the server must have been up for a worker to look dead: the database's start counts
as every worker's heartbeat (see ``dead_workers``), and the tests' heartbeat timeout is 5 s."""


def register(store, beat_seconds_ago: float = 0) -> uuid.UUID:
    """A registered worker; with ``beat_seconds_ago``, its last beat that long ago (see
    ``age``)."""
    worker = store.register_worker(
        WorkerInfo(id=uuid.uuid4(), hostname="test", pid=1, queues=["default"])
    )
    if beat_seconds_ago:
        age(store, "workers", "last_heartbeat_at", worker.id, beat_seconds_ago)
    return worker.id


def age(store, table: str, column: str, key: uuid.UUID, seconds: float) -> None:
    """Set ``column`` of ``key``'s rows ``seconds`` back from now. A worker's beat is set back
    only once the server has been up long enough for that to make it look dead (an embedded
    server the test session just started has not): waiting after it would age it further."""
    key_column = "id" if table == "workers" else "worker_id"
    query = sql.SQL("UPDATE {}.{} SET {} = now() - make_interval(secs => %s) WHERE {} = %s").format(
        sql.Identifier(store.schema),
        sql.Identifier(table),
        sql.Identifier(column),
        sql.Identifier(key_column),
    )
    with psycopg.connect(store.url, autocommit=True) as connection:
        if table == "workers":
            up = "SELECT now() - pg_postmaster_start_time() > make_interval(secs => %s)"
            wait_for(
                lambda: connection.execute(up, (SERVER_UP_LONG_ENOUGH,)).fetchone()[0],
                timeout=SERVER_UP_LONG_ENOUGH + 10,
                message="the server to have been up longer than the heartbeat timeout",
            )
        connection.execute(query, (seconds, key))
