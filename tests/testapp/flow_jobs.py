"""A test job that declares its own flow limit (the ``limits`` class attribute)."""

from __future__ import annotations

import time

from jobkit import Job, register_job
from testapp.jobs import record


@register_job(name="testapp.OneAtATime")
class OneAtATime(Job):
    """Writes start and end rows to the ledger, sleeping in between; one runs at a time."""

    limits = {"max_running": 1}

    def __init__(self, key: str, seconds: float = 0.0):
        self.key = key
        self.seconds = seconds

    def run(self) -> None:
        record(self, self.key, "start")
        time.sleep(self.seconds)
        record(self, self.key, "end")
