"""jobkit: background jobs kept in PostgreSQL."""

from jobkit.errors import (
    DeferJob,
    JobCancelled,
    JobInterrupted,
    JobkitError,
    JobTimeout,
    ParameterError,
    PluginError,
    SettingsError,
    StoreDataError,
    StoreError,
    StoreUnavailable,
    UnknownJobError,
)
from jobkit.hookspecs import hookimpl
from jobkit.job import Job
from jobkit.middleware import JobMiddleware
from jobkit.records import (
    JobProcess,
    JobRequest,
    JobResult,
    JobState,
    Outcome,
    QueueDepth,
    Stage,
    Status,
)
from jobkit.redaction import redact_credentials
from jobkit.registry import register_job
from jobkit.runtime import enqueue_many, get_result, job_state, queue_depths
from jobkit.schedule import Schedule, ScheduleError
from jobkit.settings import Settings

__all__ = [
    "DeferJob",
    "Job",
    "JobCancelled",
    "JobInterrupted",
    "JobMiddleware",
    "JobProcess",
    "JobRequest",
    "JobResult",
    "JobState",
    "JobTimeout",
    "JobkitError",
    "Outcome",
    "ParameterError",
    "PluginError",
    "QueueDepth",
    "Schedule",
    "ScheduleError",
    "Settings",
    "SettingsError",
    "Stage",
    "Status",
    "StoreDataError",
    "StoreError",
    "StoreUnavailable",
    "UnknownJobError",
    "enqueue_many",
    "get_result",
    "hookimpl",
    "job_state",
    "queue_depths",
    "redact_credentials",
    "register_job",
]
