"""Helpers for the acceptance tests: the real ``jobkit`` command and ``jobkit worker`` processes,
run as subprocesses against the test session's database and schema.

The test process enqueues and reads results through the ``jobkit_runtime`` fixture (which also
empties the tables first); the subprocesses get the same settings through ``JOBKIT_*``
environment variables. Tests wait for conditions in the database, never for a length of time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from faults import WorkerLauncher
from psycopg import sql

from jobkit.settings import Settings
from jobkit.testing import wait_for
from testapp.jobs import create_ledger

TESTS_DIR = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 60.0
"""Seconds a ``jobkit`` command may take before the test fails (a hang is a bug)."""

WORKER_IMPORTS = "testapp.jobs,testapp.fault_jobs,testapp.hardening_jobs"
"""The test job modules the ``workers`` fixture's workers import."""

STRAY_TIMEOUT = 10.0
"""Seconds a worker's pool children may take to go after the worker itself exited."""

T = TypeVar("T")


def jobkit_command() -> list[str]:
    """The venv's ``jobkit`` console script, or ``python -m jobkit`` when there is none."""
    script = Path(sys.executable).with_name("jobkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobkit"]


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(condition, timeout)``: ``jobkit.testing.wait_for``, as a fixture."""
    return wait_for


@pytest.fixture
def subprocess_env(jobkit_settings: Settings) -> dict[str, str]:
    """The environment for ``jobkit`` subprocesses: the test settings as ``JOBKIT_*``
    variables, the test jobs importable, and no third-party plugins. Any ``JOBKIT_*`` variable
    of the test run itself is left out, so only these settings apply."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBKIT_")}
    assert jobkit_settings.database_url is not None
    env.update(
        JOBKIT_DATABASE_URL=jobkit_settings.database_url,
        JOBKIT_SCHEMA=jobkit_settings.schema,
        JOBKIT_IMPORTS="testapp.jobs",
        JOBKIT_HEARTBEAT_INTERVAL="1",
        JOBKIT_HEARTBEAT_TIMEOUT="5",
        JOBKIT_WORKER_POLL_INTERVAL="0.5",
        JOBKIT_WORKER_STATS_EVERY="0",
        JOBKIT_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


@pytest.fixture
def run_cli(
    subprocess_env: dict[str, str],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli(*args, env={...}, input=..., cwd=...)`` runs ``jobkit *args`` to the end and
    returns the CompletedProcess (text ``stdout`` and ``stderr``). ``env`` entries are added
    to the subprocess environment; a value of None removes a variable."""

    def run(
        *args: str,
        env: dict[str, str | None] | None = None,
        input: str | None = None,
        cwd: Path | str | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*jobkit_command(), *args],
            env=_with_changes(subprocess_env, env),
            input=input if input is not None else "",
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


class WorkerProcess(subprocess.Popen[bytes]):
    """A ``jobkit worker`` subprocess whose output (stdout and stderr) goes to a file."""

    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def group_members(self) -> list[int]:
        """Processes still alive in the worker's process group (its pool children and
        multiprocessing helpers), the worker itself included while it runs."""
        return live_group_members(self.pid)

    def wait_for_exit(self, timeout: float = CLI_TIMEOUT) -> int:
        """The exit code, once the worker and every process of its group (pool children,
        multiprocessing helpers) are gone; the test fails (showing the worker's output) if
        the worker does not exit in time or leaves a process behind."""
        try:
            code = self.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"jobkit worker did not exit within {timeout} s; output:\n{self.output()}",
                pytrace=False,
            )
        deadline = time.monotonic() + STRAY_TIMEOUT
        while stray := self.group_members():
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"jobkit worker exited ({code}) but left processes {stray} running; "
                    f"output:\n{self.output()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        return code


@pytest.fixture
def workers(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerLauncher]:
    """Starts ``jobkit worker`` processes that import every test job module (``WORKER_IMPORTS``);
    at the end kills each one's process group, and fails the test if one logged a traceback it
    did not allow (``workers.start(..., allowed_tracebacks=[...])``)."""
    launcher = WorkerLauncher(dict(subprocess_env, JOBKIT_IMPORTS=WORKER_IMPORTS), tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture
def start_worker(
    subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(*args, env={...}, cwd=...)`` starts ``jobkit worker *args`` in a process
    group of its own and returns the Popen. At teardown the whole group is killed (so no pool child
    outlives the test), and the test fails if a worker printed a traceback."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None
    ) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        with log_path.open("wb") as log:
            process = WorkerProcess(
                [*jobkit_command(), "worker", *args],
                env=_with_changes(subprocess_env, env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
            )
        process.log_path = log_path
        started.append(process)
        return process

    yield start

    problems = []
    for process in started:
        # The group id is the worker's pid; it stays reserved while any member lives, so this
        # reaches stray children even after the worker itself has exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=CLI_TIMEOUT)
        output = process.output()
        if "Traceback" in output:
            problems.append(f"jobkit worker {' '.join(process.args[1:])} (pid {process.pid}):")
            problems.append(output)
    if problems:
        pytest.fail("a worker printed a traceback:\n" + "\n".join(problems), pytrace=False)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid``."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no procfs: ask the kernel about the group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (command) state ppid pgrp ...": the command may hold spaces and parentheses.
        state, _, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _with_changes(env: dict[str, str], changes: dict[str, str | None] | None) -> dict[str, str]:
    env = dict(env)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# The database, read directly ---------------------------------------------------------------------


class Database:
    """Direct SQL on the test schema: ``{schema}`` in a query names it."""

    def __init__(self, settings: Settings):
        assert settings.database_url is not None
        self.url = settings.database_url
        self.schema = settings.schema

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        statement = sql.SQL(text).format(schema=sql.Identifier(self.schema))
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, text: str, params: Any = None) -> Any:
        rows = self.query(text, params)
        return rows[0][0] if rows else None

    def count(self, table: str, where: str = "true", params: Any = None) -> int:
        return self.value(f"SELECT count(*) FROM {{schema}}.{table} WHERE {where}", params)


@pytest.fixture
def db(jobkit_settings: Settings) -> Database:
    return Database(jobkit_settings)


@pytest.fixture
def ledger_ready(jobkit_settings: Settings) -> None:
    """An empty ledger table for ``testapp.jobs.Record`` runs."""
    create_ledger(jobkit_settings)


# Roles of the test's own --------------------------------------------------------------------------


@pytest.fixture
def make_role(jobkit_settings) -> Iterator[Callable[..., str]]:
    """``make_role(password=None, connection_limit=-1)`` creates a login role of the test's own,
    with every right on the test schema, and returns the test database's URL for it, its password
    in the URL (a random one by default: the embedded test server asks for one). The roles are
    dropped after the test."""
    url = jobkit_settings.database_url
    schema = sql.Identifier(jobkit_settings.schema)
    made: list[str] = []

    def make(password: str | None = None, connection_limit: int = -1) -> str:
        name = f"jobkit_role_{secrets.token_hex(4)}"
        password = password or secrets.token_hex(8)
        role = sql.Identifier(name)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {} PASSWORD {}").format(
                    role, sql.Literal(connection_limit), sql.Literal(password)
                )
            )
            made.append(name)
            for statement in (
                "GRANT USAGE ON SCHEMA {schema} TO {role}",
                "GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}",
                "GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            ):
                connection.execute(sql.SQL(statement).format(role=role, schema=schema))
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{name}:{password}@{host}").geturl()

    yield make
    with psycopg.connect(url, autocommit=True) as connection:
        for name in made:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [name],
            )
            connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def full_role(make_role) -> str:
    """The URL of a role of the test's own that may hold no connection at all (CONNECTION LIMIT
    0), so the server answers it "too many connections" (SQLSTATE 53300), as a full server
    answers anyone. ``free_a_slot`` lifts the limit."""
    return make_role(connection_limit=0)


def with_query(url: str, **parameters: str) -> str:
    """``url`` with ``parameters`` added to its query (which may have some already)."""
    parts = urllib.parse.urlsplit(url)
    added = urllib.parse.urlencode(parameters, quote_via=urllib.parse.quote)
    return parts._replace(query=f"{parts.query}&{added}" if parts.query else added).geturl()


def free_a_slot(settings, role_url: str) -> None:
    role = urllib.parse.urlsplit(role_url).username
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(sql.Identifier(role))
        )
