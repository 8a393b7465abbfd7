"""A schema name is checked against the longest identifier jobkit derives from it (the wake-up
channel, ``<schema>_requests``): the longest allowed name works end to end, and one character
more is refused when the settings load, rather than passing and failing every enqueue."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import attrs
import psycopg
import pytest
from psycopg import sql

from testapp.jobs import Record, create_ledger, ledger

pytestmark = pytest.mark.acceptance


@pytest.fixture
def long_names(jobkit_settings) -> Iterator[tuple[str, str]]:
    """The longest allowed schema name and one a character longer; both dropped afterwards."""
    stem = f"jobkit_long_{secrets.token_hex(4)}_"
    longest = stem.ljust(54, "s")
    too_long = longest + "s"
    yield longest, too_long
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        for name in (longest, too_long):
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


def test_a_schema_name_too_long_for_the_channel_is_refused_and_the_longest_works(
    long_names, run_cli, start_worker, jobkit_runtime_factory, jobkit_settings, db, wait_until
):
    longest, too_long = long_names

    refused = run_cli("migrate", env={"JOBKIT_SCHEMA": too_long})
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "Traceback" not in refused.stderr
    assert "setting schema (from JOBKIT_SCHEMA) must be" in refused.stderr
    assert "at most 54 characters: with _requests added it must fit PostgreSQL's 63" in (
        refused.stderr
    )
    assert not db.value("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [too_long])

    migrated = run_cli("migrate", env={"JOBKIT_SCHEMA": longest})
    assert migrated.returncode == 0, (migrated.stdout, migrated.stderr)
    settings = attrs.evolve(jobkit_settings, schema=longest)
    create_ledger(settings)
    jobkit_runtime_factory()
    jobkit_runtime_factory(schema=longest)
    start_worker(env={"JOBKIT_SCHEMA": longest, "JOBKIT_WORKER_POLL_INTERVAL": "30"})
    assert Record("in-the-longest-schema").run_in_worker() is not None
    wait_until(
        lambda: ("in-the-longest-schema", "end") in {row[:2] for row in ledger(settings)},
        message="the job in the schema of the longest name (woken by its channel)",
    )
