"""Jobs that write log lines, for the log context plugin (``jobkit.builtin.logcontext``)."""

from __future__ import annotations

import contextvars
import logging
import threading

from jobkit import Job, register_job

logger = logging.getLogger("testapp.log_jobs")


@register_job(name="testapp.LogLine")
class LogLine(Job):
    """Logs ``"<key> says hello"``, then fails for its first ``fail_times`` attempts. With
    ``in_thread``, also logs ``"<key> from a thread"`` from a thread started in a copy of the
    job's context (the recipe docs/logging.md gives)."""

    def __init__(self, key: str, fail_times: int = 0, in_thread: bool = False):
        self.key = key
        self.fail_times = fail_times
        self.in_thread = in_thread

    def run(self) -> None:
        logger.info("%s says hello", self.key)
        if self.in_thread:
            thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(logger.info, "%s from a thread", self.key),
            )
            thread.start()
            thread.join()
        attempt = self.job_process.retry_attempt if self.job_process else 0
        if attempt < self.fail_times:
            raise RuntimeError(f"{self.key} fails on attempt {attempt}")
