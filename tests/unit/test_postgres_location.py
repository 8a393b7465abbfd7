"""Where the Postgres store says jobs go (the worker's start line, and the error of a server
that does not answer): the server and the database libpq would connect to, never a password."""

import pytest

from jobkit.builtin.postgres.store import PostgresStore, server_and_database


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db.internal:6432/orders", ("db.internal:6432", "orders")),
        ("postgres://app@db.internal/orders", ("db.internal:5432", "orders")),
        ("postgresql://app@a:5433,b/orders", ("a:5433, b:5432", "orders")),
        ("postgresql://app@a,b:5433/orders", ("a:5432, b:5433", "orders")),
        (
            "postgresql://postgres@/postgres?host=/srv/app/.jobkit/run&passfile=/srv/pgpass",
            ("socket /srv/app/.jobkit/run/.s.PGSQL.5432", "postgres"),
        ),
        (
            "host=db.internal port=6432 dbname=orders password=s3cret",
            ("db.internal:6432", "orders"),
        ),
    ],
)
def test_the_server_and_database_of_a_url(monkeypatch, url, expected):
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)

    assert server_and_database(url) == expected


def test_what_a_url_leaves_out_comes_from_the_environment_as_for_libpq(monkeypatch):
    monkeypatch.setenv("PGHOST", "db.internal")
    monkeypatch.setenv("PGPORT", "6432")
    monkeypatch.setenv("PGDATABASE", "orders")

    assert server_and_database("postgresql://") == ("db.internal:6432", "orders")


def test_the_location_names_server_database_and_schema_without_the_password():
    store = PostgresStore("postgresql://app:s3cret@db.internal:6432/orders", "jobs")

    assert store.location() == "PostgreSQL database 'orders' at db.internal:6432, schema jobs"
