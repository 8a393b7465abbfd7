"""jobkit's settings from Django's: ``settings.JOBKIT`` for jobkit's own, the database from a
``DATABASES`` alias. Read by jobkit in every process through the settings source below."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any

from jobkit import SettingsError

SOURCE = "settings.JOBKIT"
NOT_LIBPQ_OPTIONS = frozenset(
    {"pool", "server_side_binding", "isolation_level", "assume_role", "cursor_factory", "context"}
)
"""``DATABASES[...]["OPTIONS"]`` keys that Django's backend consumes itself."""


def django_in_use(environ: Mapping[str, str]) -> bool:
    """Whether this process runs a Django project that has ``jobkit_django`` in its
    ``INSTALLED_APPS`` (its settings named by ``DJANGO_SETTINGS_MODULE``, or configured)."""
    if not environ.get("DJANGO_SETTINGS_MODULE") and "django.conf" not in sys.modules:
        return False
    from django.conf import settings

    if not environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
        return False
    try:
        installed = settings.INSTALLED_APPS
    except ImportError as error:
        raise SettingsError(
            f"DJANGO_SETTINGS_MODULE is {environ.get('DJANGO_SETTINGS_MODULE')!r}, which cannot "
            f"be imported ({error}): run jobkit from the directory of manage.py, or put the "
            f"project's directory on PYTHONPATH (or unset DJANGO_SETTINGS_MODULE)"
        ) from error
    return any(app == "jobkit_django" or app.startswith("jobkit_django.") for app in installed)


def settings_source(environ: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """jobkit's ``jobkit.settings_sources`` entry point: ``settings.JOBKIT``, the database URL
    of its alias, and the ``jobs``/``tasks`` modules of the installed apps in ``imports``."""
    if not django_in_use(environ):
        return None
    ensure_django_setup()
    values = dict(jobkit_settings())
    if "JOBKIT_DATABASE_URL" in environ:
        raise SettingsError(
            "JOBKIT_DATABASE_URL is set, but with jobkit_django jobkit uses Django's database "
            "(so that jobs join Django's transactions): unset it, and name another DATABASES "
            "alias in settings.JOBKIT['database'] if jobs belong in another database"
        )
    if "database_url" in values:
        raise SettingsError(
            "settings.JOBKIT sets database_url, but with jobkit_django jobkit uses a database of "
            "DATABASES (so that jobs join Django's transactions): name its alias in "
            "settings.JOBKIT['database'] (default: 'default') instead"
        )
    alias = database_alias()
    values.pop("database", None)
    values["database_url"] = database_url(alias)
    values["imports"] = [*values.get("imports", []), *discovered_modules()]
    return SOURCE, values


def jobkit_settings() -> Mapping[str, Any]:
    from django.conf import settings

    values = getattr(settings, "JOBKIT", {})
    if not isinstance(values, Mapping):
        raise SettingsError(f"settings.JOBKIT must be a dict of jobkit settings, got {values!r}")
    return values


def database_alias() -> str:
    """The ``DATABASES`` alias jobkit uses, checked to be a PostgreSQL one over psycopg 3."""
    from django.conf import settings

    alias = jobkit_settings().get("database", "default")
    if alias not in settings.DATABASES:
        raise SettingsError(
            f"settings.JOBKIT['database'] is {alias!r}, which is not an alias of DATABASES "
            f"(aliases: {', '.join(settings.DATABASES) or 'none'})"
        )
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql":
        engine = settings.DATABASES[alias].get("ENGINE", "")
        raise SettingsError(
            f"DATABASES[{alias!r}] uses ENGINE {engine!r}, but jobkit keeps its jobs in "
            f"PostgreSQL: use 'django.db.backends.postgresql', or name a PostgreSQL alias in "
            f"settings.JOBKIT['database']"
        )
    from django.db.backends.postgresql import psycopg_any

    if not psycopg_any.is_psycopg3:
        raise SettingsError(
            f"Django connects to DATABASES[{alias!r}] with psycopg2, but jobkit enqueues on "
            f"Django's connection with psycopg 3: pip install 'psycopg[binary]>=3.2' (Django "
            f"uses psycopg 3 when it is installed)"
        )
    return alias


def database_url(alias: str, settings_dict: Mapping[str, Any] | None = None) -> str:
    """A ``postgresql://`` URL for a ``DATABASES`` entry (``settings_dict``: the one a
    connection uses now, e.g. a test database's)."""
    from django.db import connections

    entry = settings_dict if settings_dict is not None else connections[alias].settings_dict
    quote = urllib.parse.quote
    user = quote(str(entry.get("USER") or ""), safe="")
    password = quote(str(entry.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = str(entry.get("HOST") or "")
    port = str(entry.get("PORT") or "")
    query = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in (entry.get("OPTIONS") or {}).items()
        if key not in NOT_LIBPQ_OPTIONS and isinstance(value, str | int)
    }
    netloc = "" if host.startswith("/") else quote(host, safe="")
    if host.startswith("/"):
        query["host"] = host
    if port:
        netloc += f":{port}"
    name = quote(str(entry.get("NAME") or ""), safe="")
    encoded = urllib.parse.urlencode(query)
    return f"postgresql://{credentials}{netloc}/{name}" + (f"?{encoded}" if encoded else "")


def ensure_django_setup() -> None:
    """Set Django up in a process that has not (``jobkit`` run with
    ``DJANGO_SETTINGS_MODULE``, a worker's pool child); leave one that is setting up alone."""
    from django.apps import apps

    if not apps.ready and not apps.loading:
        import django

        django.setup()


BACKEND = "jobkit_django.tasks.JobkitBackend"


def discovered_names() -> tuple[str, ...]:
    """The modules of each installed app that hold jobs: ``jobs``, and ``tasks`` when a
    ``TASKS`` backend is jobkit's (another queue's ``tasks.py`` is not ours to import)."""
    from django.conf import settings

    backends = getattr(settings, "TASKS", {}).values()
    return ("jobs", "tasks") if any(b.get("BACKEND") == BACKEND for b in backends) else ("jobs",)


def discovered_modules() -> list[str]:
    """The modules workers import: the ``discovered_names`` of every installed app (but this
    one, whose ``tasks`` is the backend)."""
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    if not apps.ready:
        return []
    names = discovered_names()
    return [
        f"{app.name}.{name}"
        for app in apps.get_app_configs()
        for name in names
        if app.name != "jobkit_django" and module_has_submodule(app.module, name)
    ]
