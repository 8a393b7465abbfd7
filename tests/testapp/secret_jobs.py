"""A job whose log line and error hold the database URL, password included, as a job that cannot
use the database might write them: jobkit must mask the password wherever they go."""

from __future__ import annotations

import logging

from jobkit import Job, register_job
from jobkit.runtime import get_runtime

logger = logging.getLogger("testapp.secret_jobs")


@register_job(name="testapp.QuoteDatabaseUrl")
class QuoteDatabaseUrl(Job):
    """Logs the worker's database URL, then fails with it in the error."""

    def run(self) -> None:
        url = get_runtime().settings.database_url
        logger.warning("connecting to %s", url)
        raise RuntimeError(f"could not use {url}")
