"""How the Postgres store reports psycopg errors (by what retrying can do about them), and the
text it writes that PostgreSQL could not hold as it is."""

import psycopg
import psycopg_pool
import pytest
from psycopg import errors

from jobkit.builtin.postgres.store import (
    PostgresStore,
    SchemaMissing,
    _storable_headers,
    _storable_text,
    store_error,
)
from jobkit.errors import StoreDataError, StoreError, StoreUnavailable
from jobkit.settings import MAX_SCHEMA_LENGTH


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.InterfaceError("the connection is lost"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec"),
        errors.ConnectionFailure("connection failure"),
        errors.ConnectionException("08000"),
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.CrashShutdown("terminating connection because of crash of another process"),
        errors.CannotConnectNow("the database system is starting up"),
        errors.IdleSessionTimeout("terminating connection due to idle-session timeout"),
        errors.IdleInTransactionSessionTimeout("terminating connection due to idle timeout"),
        errors.TooManyConnections("sorry, too many clients already"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_connection_failures_are_unavailable(error):
    found = store_error(error)
    assert type(found) is StoreUnavailable
    assert str(found).startswith("the database is unreachable: ")
    assert str(error).split(":")[0] in str(found)


@pytest.mark.parametrize(
    "said",
    [
        'FATAL:  password authentication failed for user "app"',
        'FATAL:  role "nosuchrole" does not exist',
        'FATAL:  database "nosuchdb" does not exist',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "app", database "app"',
        'FATAL:  role "app" is not permitted to log in',
        "fe_sendauth: no password supplied",
    ],
)
def test_a_refused_login_is_a_setting_to_fix_not_an_outage(said):
    error = psycopg.OperationalError(
        f'connection failed: connection to server at "127.0.0.1", port 5432 failed: {said}'
    )
    found = store_error(error)
    assert type(found) is StoreError
    assert str(found).startswith("the database refused the connection: ")


@pytest.mark.parametrize(
    "error",
    [
        errors.ProgramLimitExceeded("index row requires 11472 bytes, maximum size is 8191"),
        errors.DatetimeFieldOverflow("timestamp out of range"),
        errors.UntranslatableCharacter("unsupported Unicode escape sequence"),
        errors.InvalidTextRepresentation("invalid input syntax for type json"),
        errors.CheckViolation('new row violates check constraint "requests_timeout_check"'),
        errors.UniqueViolation('duplicate key value violates unique constraint "requests_pkey"'),
        psycopg.DataError("timestamp too large (after year 10K)"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_values_the_database_refuses_are_data_errors(error):
    found = store_error(error)
    assert type(found) is StoreDataError
    assert str(error) in str(found)


@pytest.mark.parametrize(
    "error",
    [
        errors.DiskFull("could not extend file: No space left on device"),
        errors.OutOfMemory("out of memory"),
        errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        errors.InsufficientPrivilege("permission denied for table requests"),
        errors.QueryCanceled("canceling statement due to statement timeout"),
        errors.LockNotAvailable("canceling statement due to lock timeout"),
        errors.DeadlockDetected("deadlock detected"),
        errors.SerializationFailure("could not serialize access"),
        errors.IoError("could not read block"),
        errors.DatabaseDropped("the database was dropped"),
        psycopg.ProgrammingError("the query has 2 placeholders but 1 parameters were passed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_other_refusals_are_store_errors_that_name_the_cause(error):
    found = store_error(error)
    assert type(found) is StoreError
    assert str(error) in str(found)
    if error.sqlstate:
        assert f"SQLSTATE {error.sqlstate} {type(error).__name__}" in str(found)


@pytest.mark.parametrize("error", [errors.UndefinedTable("x"), errors.InvalidSchemaName("x")])
def test_missing_tables_say_to_migrate(error):
    found = store_error(error)
    assert type(found) is SchemaMissing
    assert "run `jobkit migrate`" in str(found)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("é and 😀", "é and 😀"),
        ("bad byte \x00 here", "bad byte \\x00 here"),
        ("/srv/caf\udce9.py", "/srv/caf\\udce9.py"),
        ("\x00\udce9", "\\x00\\udce9"),
    ],
)
def test_storable_text_escapes_nul_and_surrogates(text, stored):
    assert _storable_text(text) == stored
    _storable_text(text).encode("utf-8")


def test_storable_headers_escape_keys_and_values():
    assert _storable_headers({}) == "{}"
    assert _storable_headers({"k\udce9": "v\x00"}) == '{"k\\\\udce9": "v\\\\x00"}'


def test_the_longest_schema_name_leaves_room_for_the_channel_name():
    store = PostgresStore("postgresql://nobody@127.0.0.1:9/none", "s" * MAX_SCHEMA_LENGTH)
    assert len(store.channel.encode()) == 63
