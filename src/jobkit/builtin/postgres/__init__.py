"""The built-in Postgres store plugin: answers ``jobkit_store`` for postgresql:// URLs."""

from __future__ import annotations

from jobkit.hookspecs import hookimpl
from jobkit.settings import Settings

from .store import PostgresListener, PostgresStore

SCHEMES = ("postgresql://", "postgres://")


@hookimpl(trylast=True)
def jobkit_store(settings: Settings) -> PostgresStore | None:
    url = settings.database_url
    if url is None or not url.startswith(SCHEMES):
        return None
    return PostgresStore(url, settings.schema)


__all__ = ["PostgresListener", "PostgresStore", "jobkit_store"]
