"""The built-in enqueue lock: a PostgreSQL transaction-scoped advisory lock per job name and
concurrency key, released when the enqueue's transaction ends.

The one statement lives here rather than in the Postgres store's queries.sql because the two
plugins are independent: blocking one must not take the other with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from jobkit.hookspecs import hookimpl

if TYPE_CHECKING:
    import psycopg

ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock(%s)"


def lock_id(job_name: str, concurrency_key: str) -> int:
    """A stable signed 64-bit id for the pair (the same in every process and release)."""
    digest = hashlib.blake2b(f"{job_name}\x00{concurrency_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def advisory_lock(connection: psycopg.Connection[Any], job_name: str, key: str) -> Iterator[None]:
    """Hold the advisory lock for ``(job_name, key)`` until the transaction ends."""
    connection.execute(ADVISORY_XACT_LOCK, (lock_id(job_name, key),))
    yield


@contextlib.asynccontextmanager
async def async_advisory_lock(
    connection: psycopg.AsyncConnection[Any], job_name: str, key: str
) -> AsyncIterator[None]:
    """``advisory_lock`` on an async connection."""
    await connection.execute(ADVISORY_XACT_LOCK, (lock_id(job_name, key),))
    yield


@hookimpl(trylast=True)
def jobkit_enqueue_lock(
    job_name: str, concurrency_key: str, connection: Any
) -> contextlib.AbstractContextManager[None] | None:
    if not _is_psycopg(connection, "Connection"):
        return None
    return advisory_lock(connection, job_name, concurrency_key)


@hookimpl(trylast=True)
def jobkit_async_enqueue_lock(
    job_name: str, concurrency_key: str, connection: Any
) -> contextlib.AbstractAsyncContextManager[None] | None:
    if not _is_psycopg(connection, "AsyncConnection"):
        return None
    return async_advisory_lock(connection, job_name, concurrency_key)


def _is_psycopg(connection: Any, kind: str) -> bool:
    """Whether ``connection`` is a psycopg ``kind``; psycopg is not imported for it (a process
    that has not imported psycopg holds no psycopg connection)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(connection, getattr(psycopg, kind))
