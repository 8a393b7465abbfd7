"""The Postgres store's errors with the server's own words in them (the classification itself is
tested without a database, in tests/unit/test_postgres_errors.py)."""

import psycopg

from jobkit.builtin.postgres.store import store_error
from jobkit.errors import StoreDataError


def test_a_long_detail_is_cut_so_a_failing_row_is_not_quoted_whole(jobkit_database_url):
    with psycopg.connect(jobkit_database_url) as connection:
        connection.execute("CREATE TEMPORARY TABLE t (v text CHECK (v <> v))")
        try:
            connection.execute("INSERT INTO t VALUES (%s)", ["secret" * 100])
        except psycopg.Error as error:
            found = store_error(error)
    assert type(found) is StoreDataError
    assert str(found).startswith(
        "the database refused the values it was sent (SQLSTATE 23514 CheckViolation: new row "
        'for relation "t" violates check constraint "t_v_check"; Failing row contains (secret'
    )
    assert "secret" * 40 not in str(found)
    assert "secr...)" in str(found)  # 200 characters of the detail, then "..."
