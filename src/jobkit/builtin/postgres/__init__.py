"""The built-in Postgres store plugin: answers ``jobkit_store`` for postgresql:// URLs.

The store, and psycopg with it, is imported when a store is first made, not when the plugin
loads: a pool child that runs jobs without enqueueing any never needs them, and importing them
was a fifth of its start (80 ms of CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobkit.errors import StoreError
from jobkit.hookspecs import hookimpl
from jobkit.redaction import redact_credentials
from jobkit.settings import Settings

if TYPE_CHECKING:
    from .store import PostgresListener, PostgresStore

SCHEMES = ("postgresql://", "postgres://")


@hookimpl(trylast=True)
def jobkit_store(settings: Settings) -> PostgresStore | None:
    url = settings.database_url
    if url is None or not url.startswith(SCHEMES):
        return None
    import psycopg

    from .store import PostgresStore

    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        # libpq's words quote the piece it could not read, which may be the password.
        problem = redact_credentials(str(error).strip(), url)
        raise StoreError(
            f"the database_url setting (e.g. JOBKIT_DATABASE_URL) is not a URL PostgreSQL can "
            f"read: {problem}; percent-encode spaces, '@', ':' and '/' in the user name and "
            f"password (%20, %40, %3A, %2F)"
        ) from None
    return PostgresStore(url, settings.schema)


def __getattr__(name: str) -> Any:
    """``PostgresStore`` and ``PostgresListener``, imported on first use (see above)."""
    if name in ("PostgresListener", "PostgresStore"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PostgresListener", "PostgresStore", "jobkit_store"]
