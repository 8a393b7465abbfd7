"""jobkit's own migrations, run from Django's ``migrate`` on the database being migrated."""

from __future__ import annotations

import attrs
from django.db import connections

from jobkit.runtime import Runtime
from jobkit.settings import load_settings
from jobkit_django.conf import database_alias, database_url


def migrate_schema(using: str, *, verbosity: int = 1) -> list[str]:
    """Apply jobkit's missing migrations when ``using`` is jobkit's alias; return their names.
    The URL is taken from the connection being migrated, so a test database is migrated, not
    the one its name came from."""
    if using != database_alias():
        return []
    url = database_url(using, connections[using].settings_dict)
    runtime = Runtime.from_settings(attrs.evolve(load_settings(), database_url=url))
    try:
        applied = runtime.store.migrate()
    finally:
        runtime.close()
    if applied and verbosity:
        print(f"  jobkit: applied {', '.join(applied)} to schema {runtime.settings.schema}")
    return applied


def run_migrations(apps: object, schema_editor: object) -> None:
    """The ``RunPython`` of migration 0001."""
    migrate_schema(schema_editor.connection.alias)  # type: ignore[attr-defined]
