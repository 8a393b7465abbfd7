"""The job of the chaos soak: it writes one ledger row per run, then works for a little while."""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql

from jobkit import Job, register_job
from jobkit.runtime import get_runtime

LEDGER = "chaos_ledger"
_connection: psycopg.Connection | None = None


@register_job(name="chaos.Chaos")
class Chaos(Job):
    def __init__(self, number: int, seconds: float):
        self.number = number
        self.seconds = seconds

    def run(self) -> None:
        global _connection
        settings = get_runtime().settings
        if _connection is None or _connection.closed:
            _connection = psycopg.connect(settings.database_url, autocommit=True)
        attempt = self.job_process.retry_attempt if self.job_process else -1
        _connection.execute(
            sql.SQL("INSERT INTO {}.{} (job, pid, attempt) VALUES (%s, %s, %s)").format(
                sql.Identifier(settings.schema), sql.Identifier(LEDGER)
            ),
            (self.number, os.getpid(), attempt),
        )
        time.sleep(self.seconds)
