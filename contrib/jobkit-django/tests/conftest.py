"""Fixtures: a database of the session's own on the test server (jobkit's pytest plugin gives
the server: ``JOBKIT_TEST_DATABASE_URL``, or an embedded one), the test project migrated into it
by ``manage.py migrate``, Django set up in this process on it, and helpers to run
``manage.py`` and ``jobkit`` as subprocesses."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

PROJECT = Path(__file__).resolve().parent / "project"
CONNECTION_KEYS = ("dbname", "host", "port", "user", "password")
Completed = subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def project_environ(jobkit_database_url: str) -> Iterator[dict[str, str]]:
    """The environment of the test project's processes: a new database on the test server,
    dropped at the end; no ``JOBKIT_*`` variable (the settings come from settings.JOBKIT)."""
    server = conninfo.conninfo_to_dict(jobkit_database_url)
    name = f"jobkit_django_{secrets.token_hex(4)}"
    with psycopg.connect(jobkit_database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("JOBKIT_")}
    environ.update(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        PYTHONPATH=str(PROJECT),
        TESTPROJECT_DATABASE_NAME=name,
        TESTPROJECT_DATABASE_HOST=str(server.get("host", "")),
        TESTPROJECT_DATABASE_PORT=str(server.get("port", "")),
        TESTPROJECT_DATABASE_USER=str(server.get("user", "")),
        TESTPROJECT_DATABASE_PASSWORD=str(server.get("password", "")),
        TESTPROJECT_DATABASE_OPTIONS=json.dumps(
            {key: value for key, value in server.items() if key not in CONNECTION_KEYS}
        ),
    )
    try:
        yield environ
    finally:
        with psycopg.connect(jobkit_database_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def manage(environ: dict[str, str], *args: str, timeout: float = 120) -> Completed:
    """``python manage.py ARGS`` in the test project, its output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def jobkit_command(
    environ: dict[str, str], *args: str, cwd: Path = PROJECT, timeout: float = 120
) -> Completed:
    """The plain ``jobkit`` command, run from the project's directory (or ``cwd``)."""
    script = Path(sys.executable).with_name("jobkit")
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def migrated(project_environ: dict[str, str]) -> str:
    """The project's database migrated by one ``manage.py migrate``; its output."""
    done = manage(project_environ, "migrate", "--no-input")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def django_project(project_environ: dict[str, str], migrated: str) -> Iterator[None]:
    """Django set up in this process on the project's database, as the web process has it. The
    process's jobkit runtime is closed at the end, before the database is dropped: its pool
    would otherwise try to reconnect, and say so, as the session ends."""
    os.environ.update({key: value for key, value in project_environ.items() if key != "PYTHONPATH"})
    for key in [key for key in os.environ if key.startswith("JOBKIT_")]:
        del os.environ[key]
    import django

    from jobkit.runtime import set_runtime

    django.setup()
    yield
    runtime = set_runtime(None)
    if runtime is not None:
        runtime.close()


@pytest.fixture
def jobs(django_project: None) -> Iterator[None]:
    """Empty jobkit tables and orders for the test."""
    from shop.models import Order

    from jobkit.runtime import get_runtime

    get_runtime().store.purge()
    Order.objects.all().delete()
    yield
