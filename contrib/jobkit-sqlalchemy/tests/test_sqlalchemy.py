"""jobkit-sqlalchemy, tested as an outside author would: through jobkit.testing's fixtures and
its public API, against real PostgreSQL, and a real ``jobkit worker --burst``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy
from jobkit_sqlalchemy import UnsupportedConnection
from sa_jobs import Keyed, Order, SendReceipt
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from jobkit import (
    ParameterError,
    Stage,
    Status,
    UnknownJobError,
    aenqueue_many,
    enqueue_many,
    get_result,
    hookimpl,
    job_state,
)
from jobkit.testing import settings_environ

HERE = Path(__file__).resolve().parent


def stored(request) -> bool:
    """Whether ``request`` is in the database for every other connection (committed)."""
    try:
        return job_state(request.id).stage is Stage.REQUESTED
    except UnknownJobError:
        return False


def pending(runtime) -> int:
    return runtime.store.stats().total.pending


def test_the_plugin_is_loaded_from_its_entry_point(jobkit_runtime_factory, monkeypatch):
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    runtime = jobkit_runtime_factory()
    assert runtime.pm.has_plugin("sqlalchemy")


def test_a_job_commits_with_the_session_and_its_rows(runtime, engine):
    with Session(engine) as session:
        session.add(Order(id=1, total=42))
        session.flush()
        request = SendReceipt(1).run_in_worker(connection=session)
        assert not stored(request)
        session.commit()
    assert stored(request)
    with Session(engine) as session:
        assert session.get(Order, 1).total == 42


def test_a_rollback_takes_the_job_with_the_rows(runtime, engine):
    with Session(engine) as session:
        session.add(Order(id=2, total=7))
        request = SendReceipt(2).run_in_worker(connection=session)
        [bulk] = enqueue_many([SendReceipt(2)], connection=session)
        session.rollback()
    assert not stored(request) and not stored(bulk)
    with Session(engine) as session:
        assert session.get(Order, 2) is None

    with Session(engine) as session:
        request = SendReceipt(3).run_in_worker(connection=session)
    # Closed uncommitted: SQLAlchemy rolls back when the connection goes back to its pool.
    assert not stored(request)
    assert pending(runtime) == 0


def test_the_first_statement_of_a_session_may_be_the_enqueue(runtime, engine):
    session_factory = sessionmaker(engine)
    with session_factory.begin() as session:
        request = SendReceipt(4).run_in_worker(connection=session)
    assert stored(request)


def test_a_savepoint_decides_for_the_jobs_inside_it(runtime, engine):
    with Session(engine) as session:
        kept = SendReceipt(5).run_in_worker(connection=session)
        with session.begin_nested() as savepoint:
            dropped = SendReceipt(6).run_in_worker(connection=session)
            savepoint.rollback()
        with session.begin_nested():
            nested = SendReceipt(7).run_in_worker(connection=session)
        assert not stored(kept) and not stored(nested)
        session.commit()
    assert stored(kept) and stored(nested)
    assert not stored(dropped)
    assert pending(runtime) == 2


def test_keyed_jobs_are_decided_in_the_session_transaction(runtime, engine):
    with Session(engine) as session:
        first = Keyed("k").run_in_worker(connection=session)
        assert first is not None
        assert Keyed("k").run_in_worker(connection=session) is None  # it sees its own insert
        session.rollback()
    assert not stored(first)

    with Session(engine) as session:
        first = Keyed("k").run_in_worker(connection=session)
        session.commit()
    assert stored(first)
    with Session(engine) as session:
        assert Keyed("k").run_in_worker(connection=session) is None


def test_a_connection_commits_or_rolls_back_its_jobs(runtime, engine):
    with engine.connect() as connection:
        committed = SendReceipt(8).run_in_worker(connection=connection)
        assert connection.in_transaction()
        connection.commit()
        rolled_back = SendReceipt(9).run_in_worker(connection=connection)
        connection.rollback()
    assert stored(committed) and not stored(rolled_back)

    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
        in_block = SendReceipt(10).run_in_worker(connection=connection)
    assert stored(in_block)


def test_an_autocommit_connection_commits_at_once(runtime, engine):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        request = SendReceipt(11).run_in_worker(connection=connection)
        assert stored(request)


def test_a_scoped_session_enqueues_in_its_current_session(runtime, engine):
    session = scoped_session(sessionmaker(engine))
    try:
        request = SendReceipt(12).run_in_worker(connection=session)
        assert not stored(request)
        session.commit()
        assert stored(request)
    finally:
        session.remove()


class CommitRecorder:
    def __init__(self):
        self.committed = []
        self.event = threading.Event()

    @hookimpl
    def jobkit_job_committed(self, requests):
        self.committed.extend(request.id for request in requests)
        self.event.set()


def test_committed_events_follow_the_session_commit(runtime, engine):
    """What the OpenTelemetry plugin counts as sent: the session's commit, never its rollback."""
    recorder = CommitRecorder()
    runtime.pm.register(recorder)
    try:
        with Session(engine) as session:
            dropped = SendReceipt(14).run_in_worker(connection=session)
            session.rollback()
            kept = SendReceipt(15).run_in_worker(connection=session)
            session.commit()
        assert recorder.event.wait(timeout=30)
    finally:
        runtime.pm.unregister(recorder)
    assert recorder.committed == [kept.id]
    assert dropped.id not in recorder.committed


def test_a_process_that_never_imported_sqlalchemy_does_not_import_it():
    code = (
        "import sys, jobkit_sqlalchemy\n"
        "assert jobkit_sqlalchemy.jobkit_driver_connection(connection=object()) is None\n"
        "assert 'sqlalchemy' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# What is refused ---------------------------------------------------------------------------------


def test_a_psycopg2_session_is_refused_with_the_url_to_use(runtime, url):
    engine = sqlalchemy.create_engine(url.set(drivername="postgresql+psycopg2", password="secret"))
    with Session(engine) as session, pytest.raises(UnsupportedConnection) as raised:
        SendReceipt(1).run_in_worker(connection=session)
    message = str(raised.value)
    assert "Session on postgresql+psycopg2" in message
    assert "postgresql+psycopg://" in message
    assert "secret" not in message
    assert pending(runtime) == 0


def test_a_sqlite_connection_is_refused(runtime):
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as connection, pytest.raises(UnsupportedConnection) as raised:
        enqueue_many([SendReceipt(1)], connection=connection)
    assert "Connection on sqlite+pysqlite" in str(raised.value)
    assert isinstance(raised.value, TypeError)


def test_a_session_without_an_engine_is_refused(runtime):
    with Session() as session, pytest.raises(UnsupportedConnection) as raised:
        SendReceipt(1).run_in_worker(connection=session)
    assert "Session with no database bound" in str(raised.value)
    assert "Session(engine)" in str(raised.value)
    assert pending(runtime) == 0


def test_an_async_session_decides_its_jobs(runtime, engine, url, jobkit_settings):
    async_engine = create_async_engine(
        url.set(drivername="postgresql+psycopg"),
        connect_args={"options": f"-csearch_path={jobkit_settings.schema}"},
    )

    async def enqueue_in_async_transactions():
        async with AsyncSession(async_engine) as session:
            session.add(Order(id=30, total=5))
            committed = await SendReceipt(30).arun_in_worker(connection=session)
            assert not stored(committed)  # not before the session commits
            await session.commit()
        async with AsyncSession(async_engine) as session:
            session.add(Order(id=31, total=6))
            [rolled_back] = await aenqueue_many([SendReceipt(31)], connection=session)
            await session.rollback()
        async with async_engine.connect() as connection:  # an AsyncConnection, not begun yet
            on_connection = await SendReceipt(32).arun_in_worker(connection=connection)
            await connection.commit()
        await async_engine.dispose()
        await runtime.aclose()
        return committed, rolled_back, on_connection

    committed, rolled_back, on_connection = asyncio.run(enqueue_in_async_transactions())
    assert stored(committed) and stored(on_connection) and not stored(rolled_back)
    with Session(engine) as session:
        assert session.get(Order, 30).total == 5 and session.get(Order, 31) is None
    assert pending(runtime) == 2


def test_an_async_session_is_refused_by_the_sync_api(runtime, url):
    async_engine = create_async_engine(url.set(drivername="postgresql+psycopg"))
    with pytest.raises(ParameterError, match="AsyncSession, which is async: enqueue with await"):
        SendReceipt(1).run_in_worker(connection=AsyncSession(async_engine))
    with (
        Session(async_engine.sync_engine) as sync_session,
        pytest.raises(UnsupportedConnection, match=r"postgresql\+psycopg \(async\)"),
    ):
        SendReceipt(1).run_in_worker(connection=sync_session)
    assert pending(runtime) == 0


def test_an_asyncpg_session_is_refused_with_the_url_to_use(runtime, url):
    async_engine = create_async_engine(url.set(drivername="postgresql+asyncpg"))

    async def enqueue():
        async with AsyncSession(async_engine) as session:
            await SendReceipt(1).arun_in_worker(connection=session)

    with pytest.raises(UnsupportedConnection, match=r"on postgresql\+asyncpg \(async\)") as raised:
        asyncio.run(enqueue())
    assert "create_async_engine() and a postgresql+psycopg:// URL" in str(raised.value)
    assert pending(runtime) == 0


def test_other_objects_go_to_the_store_as_they_are(runtime, engine):
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        request = SendReceipt(13).run_in_worker(connection=raw)
        raw.commit()
    assert stored(request)


# A real worker -----------------------------------------------------------------------------------


def test_a_worker_runs_what_sessions_committed_and_nothing_else(runtime, engine):
    with Session(engine) as session:
        session.add(Order(id=20, total=1))
        committed = SendReceipt(20).run_in_worker(connection=session)
        session.commit()
    with Session(engine) as session:
        rolled_back = SendReceipt(21).run_in_worker(connection=session)
        session.rollback()

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")},
        **settings_environ(runtime.settings),
        "JOBKIT_IMPORTS": "sa_jobs",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "jobkit", "worker", "--burst", "--max-processes", "1"],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    assert get_result(committed.id).status is Status.SUCCESSFUL
    assert "SUCCESSFUL" in worker.stderr
    assert worker.stderr.count("sqlalchemy_tests.SendReceipt") == 1
    with pytest.raises(UnknownJobError):
        job_state(rolled_back.id)
