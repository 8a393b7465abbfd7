"""Jobs, middleware and plugins for the integration tests (tests/integration). They live in a
testapp module, not in the test files, so that a worker process can import them by name too."""

from __future__ import annotations

import datetime
import json
from typing import Any, ClassVar

from jobkit import Job, JobMiddleware, register_job
from jobkit.hookspecs import hookimpl
from jobkit.registry import JobRegistry
from testapp.jobs import record


@register_job
class Tuned(Job):
    """Every ``default_*`` overridden, so a test can tell defaults from the base class's."""

    def __init__(self, tag: str = ""):
        self.tag = tag

    def default_queue(self) -> str:
        return "tuned"

    def default_priority(self) -> int:
        return 5

    def default_retries(self) -> int:
        return 2

    def default_concurrency_key(self) -> str:
        return f"tuned-{self.tag}" if self.tag else ""

    def run(self) -> None:
        pass


@register_job
class Keyed(Job):
    """Takes its concurrency key from its parameter."""

    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def run(self) -> None:
        pass


@register_job
class AtMostTwo(Job):
    """Allows at most two of its kind pending or running, whatever their keys."""

    def should_enqueue(self, concurrency_key: str) -> bool:
        return len(self.get_requested_jobs()) + len(self.get_processing_jobs()) < 2

    def run(self) -> None:
        pass


@register_job
class OnePerUser(Job):
    """The plain.jobs FAQ's custom concurrency limit, as it is written there: one job per user
    pending or processing, counted with ``.count()``."""

    def __init__(self, user_id: int):
        self.user_id = user_id

    def default_concurrency_key(self) -> str:
        return f"user-{self.user_id}"

    def should_enqueue(self, concurrency_key: str) -> bool:
        # Only allow 1 job per user at a time
        processing = self.get_processing_jobs(concurrency_key).count()
        pending = self.get_requested_jobs(concurrency_key).count()
        return processing == 0 and pending == 0

    def run(self) -> None:
        pass


@register_job
class CountsByKey(Job):
    """Refuses itself, noting what each getter answered inside should_enqueue, in ``seen``."""

    seen: ClassVar[list[tuple[str, str | None, list[str]]]] = []

    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def should_enqueue(self, concurrency_key: str) -> bool:
        for getter, key in (
            (self.get_processing_jobs, None),
            (self.get_requested_jobs, None),
            (self.get_requested_jobs, concurrency_key),
            (self.get_processing_jobs, concurrency_key),
        ):
            keys = [attempt.concurrency_key for attempt in getter(key)]
            CountsByKey.seen.append((getter.__name__, key, keys))
        return False

    def run(self) -> None:
        pass


@register_job
class Echo(Job):
    """One unannotated parameter: it holds whatever JSON (or jobkit's tagged types) can."""

    def __init__(self, value):  # unannotated on purpose
        self.value = value

    def run(self) -> None:
        pass


@register_job
class SlowRetryFail(Job):
    """Always fails; retry number ``attempt`` waits ``retry_seconds * attempt`` seconds."""

    def __init__(self, retry_seconds: float = 60):
        self.retry_seconds = retry_seconds

    def calculate_retry_delay(self, attempt: int) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.retry_seconds * attempt)

    def run(self) -> None:
        raise ValueError("fails every time")


@register_job
class RecordHeaders(Job):
    """Writes the headers of the attempt it runs as to the ledger (phase = headers as JSON),
    then fails for its first ``fail_times`` attempts."""

    def __init__(self, key: str, fail_times: int = 0):
        self.key = key
        self.fail_times = fail_times

    def run(self) -> None:
        assert self.job_process is not None
        record(self, self.key, json.dumps(self.job_process.headers, sort_keys=True))
        if self.job_process.retry_attempt < self.fail_times:
            raise ValueError(f"attempt {self.job_process.retry_attempt} fails")


# Middleware (the ``middleware`` setting) ---------------------------------------------------------


class _LedgerMiddleware(JobMiddleware):
    """Writes ``<label>:before`` and ``<label>:after`` ledger rows around the rest of the chain,
    under the job's ``key`` parameter."""

    label = ""

    def process_job(self, job: Job) -> Any:
        key = getattr(job, "key", "?")
        record(job, key, f"{self.label}:before")
        try:
            return self.run_job(job)
        finally:
            record(job, key, f"{self.label}:after")


class OuterMiddleware(_LedgerMiddleware):
    label = "outer"


class InnerMiddleware(_LedgerMiddleware):
    label = "inner"


class SkipMiddleware(JobMiddleware):
    """Skips every job whose ``key`` starts with ``skip``, writing a ``skipped`` ledger row."""

    def process_job(self, job: Job) -> Any:
        key = getattr(job, "key", "")
        if key.startswith("skip"):
            record(job, key, "skipped")
            return None
        return self.run_job(job)


# Plugins that add middleware (``jobkit_add_middleware``) ----------------------------------------


class PluginMiddleware(_LedgerMiddleware):
    label = "plugin"


class MiddlewarePlugin:
    """Adds ``answer`` to every job's middleware."""

    def __init__(self, answer: Any):
        self.answer = answer

    @hookimpl
    def jobkit_add_middleware(self) -> Any:
        return self.answer


middleware_plugin = MiddlewarePlugin([PluginMiddleware])
"""Register with the setting ``plugins=["testapp.integration_jobs:middleware_plugin"]``."""
bad_middleware_plugin = MiddlewarePlugin(["testapp.integration_jobs.PluginMiddleware"])
"""Answers with a path instead of a class: a worker must refuse to start."""


# A plugin that provides a job (the ``plugins`` setting) ------------------------------------------

PLUGIN_JOB_NAME = "testapp.plugin_provided"


class PluginProvidedJob(Job):
    """Not decorated: only ``JobsPlugin.jobkit_register_jobs`` registers it."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        record(self, self.key, "plugin job")


class JobsPlugin:
    @hookimpl
    def jobkit_register_jobs(self, registry: JobRegistry) -> None:
        registry.register(PluginProvidedJob, PLUGIN_JOB_NAME)


jobs_plugin = JobsPlugin()
"""Register with the setting ``plugins=["testapp.integration_jobs:jobs_plugin"]``."""
