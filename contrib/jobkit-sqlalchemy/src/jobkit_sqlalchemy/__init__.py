"""jobkit-sqlalchemy: ``job.run_in_worker(connection=session)`` enqueues inside a SQLAlchemy 2
session's (or ``Connection``'s) transaction, so the job is committed with the session's rows or
gone with them on a rollback. jobkit loads it through the ``jobkit`` entry-point group.

It answers ``jobkit_driver_connection`` with the psycopg 3 connection under the session, after
making SQLAlchemy begin its transaction there, so the session's ``commit()`` or ``rollback()``
decides the job.
"""

from __future__ import annotations

import sys
from typing import Any

from jobkit import JobkitError, hookimpl

__all__ = ["UnsupportedConnection", "jobkit_driver_connection"]


class UnsupportedConnection(JobkitError, TypeError):
    """A SQLAlchemy session or connection that cannot carry a jobkit enqueue: another driver
    than psycopg 3, an async session, or no database bound."""


@hookimpl
def jobkit_driver_connection(connection: Any) -> Any:
    # An object of SQLAlchemy's exists only once SQLAlchemy was imported: every other enqueue
    # (and every worker, which never enqueues through a session) skips importing it.
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if "sqlalchemy.ext.asyncio" in sys.modules and _is_async(connection):
        raise UnsupportedConnection(
            f"jobkit-sqlalchemy: connection= got an {type(connection).__name__}; jobkit enqueues "
            f"synchronously, and async sessions wait for jobkit's async jobs: enqueue with a sync "
            f"Session or Connection of a postgresql+psycopg:// engine"
        )
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


def _session_connection(session: Any) -> Any:
    from sqlalchemy.exc import UnboundExecutionError

    try:
        bind = session.get_bind()
    except UnboundExecutionError as error:
        raise UnsupportedConnection(
            "jobkit-sqlalchemy: connection= got a Session with no database bound: make it with "
            "Session(engine) or sessionmaker(bind=engine); for a session with one engine per "
            "model (binds=), pass the connection of the right engine, e.g. "
            "connection=session.connection(bind_arguments={'mapper': MyModel})"
        ) from error
    _check_dialect(bind.dialect, bind.engine.url, "Session")
    return session.connection()  # begins the session's transaction, as a query would


def _check_dialect(dialect: Any, url: Any, what: str) -> None:
    if dialect.name != "postgresql" or dialect.driver != "psycopg" or dialect.is_async:
        driver = f"{dialect.name}+{dialect.driver}" + (" (async)" if dialect.is_async else "")
        raise UnsupportedConnection(
            f"jobkit-sqlalchemy: connection= got a {what} on {driver} "
            f"({url.render_as_string(hide_password=True)}); jobkit enqueues over psycopg 3: make "
            f"the engine with a postgresql+psycopg:// URL (SQLAlchemy 2.0 reads a bare "
            f"postgresql:// URL as psycopg2)"
        )


def _psycopg_connection(connection: Any) -> Any:
    return connection.connection.driver_connection
