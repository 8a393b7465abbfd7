"""jobkit-sqlalchemy: ``job.run_in_worker(connection=session)`` enqueues inside a SQLAlchemy 2
session's (or ``Connection``'s) transaction, so the job is committed with the session's rows or
gone with them on a rollback; ``await job.arun_in_worker(connection=async_session)`` does the
same for an ``AsyncSession`` (or ``AsyncConnection``). jobkit loads it through the ``jobkit``
entry-point group.

It answers ``jobkit_driver_connection`` with the psycopg 3 connection under the session, after
making SQLAlchemy begin its transaction there, so the session's ``commit()`` or ``rollback()``
decides the job; for an async session, with a coroutine that awaits that beginning.
"""

from __future__ import annotations

import sys
from typing import Any

from jobkit import JobkitError, hookimpl

__all__ = ["UnsupportedConnection", "jobkit_driver_connection"]


class UnsupportedConnection(JobkitError, TypeError):
    """A SQLAlchemy session or connection that cannot carry a jobkit enqueue: another driver
    than psycopg 3, or no database bound."""


@hookimpl
def jobkit_driver_connection(connection: Any) -> Any:
    # An object of SQLAlchemy's exists only once SQLAlchemy was imported: every other enqueue
    # (and every worker, which never enqueues through a session) skips importing it.
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if "sqlalchemy.ext.asyncio" in sys.modules and _is_async(connection):
        return _async_psycopg_connection(connection)
    if isinstance(connection, scoped_session):
        connection = connection()
    if isinstance(connection, Session):
        return _psycopg_connection(_session_connection(connection))
    if isinstance(connection, Connection):
        _check_dialect(connection.dialect, connection.engine.url, "Connection")
        if not connection.in_transaction():
            connection.begin()  # as its next execute() would: so its commit() commits the job
        return _psycopg_connection(connection)
    return None


def _is_async(connection: Any) -> bool:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

    return isinstance(connection, AsyncSession | AsyncConnection | async_scoped_session)


async def _async_psycopg_connection(connection: Any) -> Any:
    """The psycopg ``AsyncConnection`` under an async session or connection, its transaction
    begun as a query would begin it (awaited: only an async session's own methods can)."""
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

    if isinstance(connection, async_scoped_session):
        connection = connection()
    if isinstance(connection, AsyncSession):
        _bound(connection.sync_session, "AsyncSession", asynchronous=True)
        connection = await connection.connection()  # begins the session's transaction
    else:
        _check_dialect(connection.dialect, connection.engine.url, "AsyncConnection", True)
        if not connection.in_transaction():
            await connection.begin()  # as its next execute() would: so its commit() commits
    raw = await connection.get_raw_connection()
    return raw.driver_connection


def _session_connection(session: Any) -> Any:
    _bound(session, "Session", asynchronous=False)
    return session.connection()  # begins the session's transaction, as a query would


def _bound(session: Any, what: str, *, asynchronous: bool) -> None:
    """Check that ``session`` has an engine of the right driver bound."""
    from sqlalchemy.exc import UnboundExecutionError

    try:
        bind = session.get_bind()
    except UnboundExecutionError as error:
        raise UnsupportedConnection(
            f"jobkit-sqlalchemy: connection= got a {what} with no database bound: make it with "
            f"{what}(engine) or a sessionmaker bound to one; for a session with one engine per "
            "model (binds=), pass the connection of the right engine, e.g. "
            "connection=session.connection(bind_arguments={'mapper': MyModel})"
        ) from error
    _check_dialect(bind.dialect, bind.engine.url, what, asynchronous)


def _check_dialect(dialect: Any, url: Any, what: str, asynchronous: bool = False) -> None:
    if (
        dialect.name != "postgresql"
        or dialect.driver != "psycopg"
        or (dialect.is_async != asynchronous)
    ):
        driver = f"{dialect.name}+{dialect.driver}" + (" (async)" if dialect.is_async else "")
        engine = "create_async_engine" if asynchronous else "create_engine"
        raise UnsupportedConnection(
            f"jobkit-sqlalchemy: connection= got a {what} on {driver} "
            f"({url.render_as_string(hide_password=True)}); jobkit enqueues over psycopg 3: make "
            f"the engine with {engine}() and a postgresql+psycopg:// URL (SQLAlchemy 2.0 reads "
            f"a bare postgresql:// URL as psycopg2)"
        )


def _psycopg_connection(connection: Any) -> Any:
    return connection.connection.driver_connection
