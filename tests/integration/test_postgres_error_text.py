"""The Postgres store's errors with the server's own words in them (the classification itself is
tested without a database, in tests/unit/test_postgres_errors.py)."""

import psycopg

from jobkit.builtin.postgres.store import store_error
from jobkit.errors import StoreDataError


def test_a_long_detail_is_cut_so_a_failing_row_is_not_quoted_whole(jobkit_database_url):
    columns = [f"c{number}" for number in range(10)]
    with psycopg.connect(jobkit_database_url) as connection:
        definitions = ", ".join(f"{column} text" for column in columns)
        connection.execute(f"CREATE TEMPORARY TABLE t ({definitions}, CHECK (c0 <> c0))")
        try:
            connection.execute(
                f"INSERT INTO t VALUES ({', '.join(['%s'] * len(columns))})",
                [f"{column}-secret-" + "s" * 50 for column in columns],
            )
        except psycopg.Error as error:
            found = store_error(error)
            detail = error.diag.message_detail
    assert "c9-secret" in detail  # the server quotes the whole row ...
    assert type(found) is StoreDataError
    assert str(found).startswith(
        "the database refused the values it was sent (SQLSTATE 23514 CheckViolation: new row "
        'for relation "t" violates check constraint "t_c0_check"; Failing row contains (c0-secret'
    )
    assert "c9-secret" not in str(found)  # ... the error, its first 200 characters
    assert f"{detail[:200]}...)" in str(found)
