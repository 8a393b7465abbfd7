"""The built-in Postgres store plugin: answers ``jobkit_store`` for postgresql:// URLs."""

from __future__ import annotations

import psycopg

from jobkit.errors import StoreError
from jobkit.hookspecs import hookimpl
from jobkit.redaction import redact_credentials
from jobkit.settings import Settings

from .store import PostgresListener, PostgresStore

SCHEMES = ("postgresql://", "postgres://")


@hookimpl(trylast=True)
def jobkit_store(settings: Settings) -> PostgresStore | None:
    url = settings.database_url
    if url is None or not url.startswith(SCHEMES):
        return None
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


__all__ = ["PostgresListener", "PostgresStore", "jobkit_store"]
