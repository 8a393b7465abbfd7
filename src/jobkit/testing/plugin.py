"""jobkit's pytest plugin (entry point ``pytest11``): a real PostgreSQL for tests, a clean schema
per test session, and a runtime per test.

The database is ``JOBKIT_TEST_DATABASE_URL`` when set, else an embedded PostgreSQL started for the
session (the ``embedded`` extra). Tests never skip for want of a database: they fail, saying how
to get one. Imports of jobkit happen inside the fixtures, so loading the plugin costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jobkit.builtin.embedded import EmbeddedServer
    from jobkit.runtime import Runtime
    from jobkit.settings import Settings

NO_DATABASE = (
    "jobkit's database tests need PostgreSQL: set JOBKIT_TEST_DATABASE_URL="
    "postgresql://user@host:5432/dbname, or install the embedded server with "
    "pip install 'jobkit[embedded]'"
)


@pytest.fixture(scope="session")
def jobkit_database_url() -> Iterator[str]:
    """The URL of the PostgreSQL server the tests use."""
    url = os.environ.get("JOBKIT_TEST_DATABASE_URL")
    if url:
        _check_reachable(url)
        yield url
        return
    with own_server() as (url, _):
        yield url


@contextlib.contextmanager
def own_server() -> Iterator[tuple[str, EmbeddedServer]]:
    """A PostgreSQL server of the tests' own for the block (the ``embedded`` extra's binaries, in
    a temporary directory, listening on a free port of 127.0.0.1): its URL and the server. A test
    that restarts or stops a server uses one of these, never a server it did not start."""
    from jobkit.builtin.embedded import packaged_binaries, throwaway_server
    from jobkit.errors import StoreError

    binaries = packaged_binaries()
    if binaries is None:
        pytest.fail(NO_DATABASE, pytrace=False)
    try:
        with throwaway_server(binaries, tcp_port=_free_port()) as (url, server):
            yield url, server
    except StoreError as error:
        pytest.fail(f"the tests' embedded PostgreSQL: {error}", pytrace=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_reachable(url: str) -> None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as error:
        pytest.fail(
            f"JOBKIT_TEST_DATABASE_URL={url} is not reachable ({error}). Start that server, or "
            f"unset JOBKIT_TEST_DATABASE_URL to use the embedded one.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def jobkit_schema(jobkit_database_url: str) -> Iterator[str]:
    """A schema of its own for this test session, migrated; dropped at the end."""
    with migrated_schema(jobkit_database_url) as schema:
        yield schema


@contextlib.contextmanager
def migrated_schema(url: str) -> Iterator[str]:
    """A new schema on the server, migrated, for the block; dropped afterwards."""
    from jobkit.runtime import Runtime
    from jobkit.settings import Settings

    schema = f"jobkit_test_{secrets.token_hex(4)}"
    runtime = Runtime.from_settings(
        Settings(database_url=url, schema=schema), load_entrypoints=False
    )
    runtime.store.migrate()
    runtime.close()
    yield schema
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def jobkit_settings(jobkit_database_url: str, jobkit_schema: str) -> Settings:
    """Settings for the test database and schema, with timings small enough for tests."""
    from jobkit.settings import Settings

    return Settings(
        database_url=jobkit_database_url,
        schema=jobkit_schema,
        heartbeat_interval=1,
        heartbeat_timeout=5,
        worker_poll_interval=0.5,
        worker_stats_every=0,
    )


@pytest.fixture
def jobkit_runtime_factory(jobkit_settings: Settings) -> Iterator[Callable[..., Runtime]]:
    """Make runtimes from the test settings with some changed (``factory(middleware=[...])``).
    The last one made becomes the process's current runtime; all start from empty tables."""
    import attrs

    from jobkit.runtime import Runtime, set_runtime

    made: list[Runtime] = []
    previous = set_runtime(None)

    def factory(**changes: Any) -> Runtime:
        runtime = Runtime.from_settings(attrs.evolve(jobkit_settings, **changes))
        if not made:
            _empty(runtime)
        made.append(runtime)
        set_runtime(runtime)
        return runtime

    yield factory
    set_runtime(previous)
    for runtime in made:
        runtime.close()


@pytest.fixture
def jobkit_runtime(jobkit_runtime_factory: Callable[..., Runtime]) -> Runtime:
    """A runtime on the test database with empty tables, and the process's current runtime, so
    ``run_in_worker()`` in the test enqueues there."""
    return jobkit_runtime_factory()


@pytest.fixture
def register_plugin(jobkit_runtime: Runtime) -> Iterator[Callable[..., object]]:
    """Register a plugin object on ``jobkit_runtime`` for the test; it is removed afterwards."""
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> object:
        jobkit_runtime.pm.register(plugin, name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        jobkit_runtime.pm.unregister(plugin)


def _empty(runtime: Runtime) -> None:
    store = runtime.store
    store.purge()
    for worker in store.workers():
        store.unregister_worker(worker_id=worker.id)
    for pause in store.paused_queues():
        store.resume_queue(queue=pause.queue)
