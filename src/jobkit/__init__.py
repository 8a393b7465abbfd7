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
from jobkit.operations import (
    ActionReport,
    JobNotFound,
    WorkerStatus,
    cancel,
    job,
    jobs,
    pause_queue,
    resume_queue,
    retry,
    retry_failed,
    workers,
)
from jobkit.records import (
    Attempt,
    AttemptState,
    JobFilter,
    JobInfo,
    JobProcess,
    JobRequest,
    JobResult,
    Outcome,
    Page,
    QueuePause,
    Status,
)
from jobkit.redaction import redact_credentials
from jobkit.registry import register_job
from jobkit.runtime import enqueue_many, get_result
from jobkit.schedule import Schedule, ScheduleError
from jobkit.settings import Settings

__all__ = [
    "ActionReport",
    "Attempt",
    "AttemptState",
    "DeferJob",
    "Job",
    "JobCancelled",
    "JobFilter",
    "JobInfo",
    "JobInterrupted",
    "JobMiddleware",
    "JobNotFound",
    "JobProcess",
    "JobRequest",
    "JobResult",
    "JobTimeout",
    "JobkitError",
    "Outcome",
    "Page",
    "ParameterError",
    "PluginError",
    "QueuePause",
    "Schedule",
    "ScheduleError",
    "Settings",
    "SettingsError",
    "Status",
    "StoreDataError",
    "StoreError",
    "StoreUnavailable",
    "UnknownJobError",
    "WorkerStatus",
    "cancel",
    "enqueue_many",
    "get_result",
    "hookimpl",
    "job",
    "jobs",
    "pause_queue",
    "redact_credentials",
    "register_job",
    "resume_queue",
    "retry",
    "retry_failed",
    "workers",
]
