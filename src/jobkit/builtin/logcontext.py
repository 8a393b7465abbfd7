"""The built-in log context: every log record made while a job runs carries the job's id, name and
retry attempt, so one job's story can be found across its retries with a single grep.

A ``jobkit_run_job`` wrapper puts the attempt in a context variable for the length of the run,
and a log record factory copies it onto each record as it is made:

============================ =================================================================
attribute                    value (an empty string outside a job)
============================ =================================================================
``jobkit_job``               the job's registered name
``jobkit_job_id``            ``job_id``: the first attempt's id, the same on every retry and
                             deferral, so it names the job as a whole
``jobkit_attempt``           the attempt's number, counted from 1: ``retry_attempt + 1``, as
                             the worker's "attempt 2 of 4" lines count; one more on each retry,
                             the same after a deferral that does not use a retry (an integer,
                             or ``""`` outside a job)
``jobkit_attempt_id``        the attempt's own ``id`` (its result's id), different on every run
``jobkit_context``           `` [job=<name> id=<job_id> attempt=<n>]``, which the default log
                             format of ``jobkit worker`` and its pool children shows after the
                             logger name
============================ =================================================================

Why a record factory and not a filter on a logger or a handler: a filter on the root logger
never sees records of child loggers (a logger's filters apply only to records logged on that
logger itself, not to those propagated to it), and a filter on the root logger's handlers misses
every handler added later (pytest's ``caplog``, an app's ``dictConfig``) and, behind a
``QueueHandler``, runs in the listener's thread, where the job's context is not set. The factory
stamps each record once, when and where it is made, for any logger and any handler.

The factory is installed in a process the first time it runs a job (pool children, or
``run_jobs`` in tests), so a process that never runs one (a producer, the worker's main process)
is left alone. A handler whose own format uses these attributes should carry a
``JobContextFilter``: it gives every record the handler formats the attributes, in any process,
inside a job or not. Block the plugin with ``disable_plugins = ["jobkit.builtin.logcontext"]``
and nothing is added at all.

Threads: context variables are not inherited by ``threading.Thread``, so lines logged from a
thread a job starts carry no context unless the job runs the thread's target in a copy of its
context: ``threading.Thread(target=contextvars.copy_context().run, args=(work,))``.
(``asyncio`` tasks do inherit it.)
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

import attrs

from jobkit.hookspecs import hookimpl
from jobkit.job import Job
from jobkit.records import JobProcess, Outcome

FIELDS = ("jobkit_job", "jobkit_job_id", "jobkit_attempt", "jobkit_attempt_id", "jobkit_context")
"""The attributes this plugin sets on every log record."""


@attrs.frozen
class JobLogContext:
    """The attempt a process is running, as it appears on log records."""

    job: str
    job_id: str
    attempt: int
    """Counted from 1: the record's ``retry_attempt + 1``."""
    attempt_id: str

    @classmethod
    def of(cls, process: JobProcess) -> JobLogContext:
        return cls(
            job=process.job_name,
            job_id=str(process.job_id),
            attempt=process.retry_attempt + 1,
            attempt_id=str(process.id),
        )

    @property
    def text(self) -> str:
        """The compact form the default log format shows after the logger name."""
        return f" [job={self.job} id={self.job_id} attempt={self.attempt}]"


_current: contextvars.ContextVar[JobProcess | None] = contextvars.ContextVar(
    "jobkit_log_context", default=None
)
"""The attempt running in this context. Its ``JobLogContext`` is made when a record first asks
for it: most attempts log nothing, and making it (two UUIDs as text) would cost each of them."""
_last: tuple[JobProcess, JobLogContext] | None = None
"""The last attempt whose context was made, with it: the lines of one attempt share it."""


def current_context() -> JobLogContext | None:
    """The attempt running in this context, or None outside a job."""
    global _last
    process = _current.get()
    if process is None:
        return None
    last = _last
    if last is not None and last[0] is process:
        return last[1]
    context = JobLogContext.of(process)
    _last = (process, context)
    return context


def add_job_context(record: logging.LogRecord) -> None:
    """Set ``FIELDS`` on ``record`` from the attempt running now (empty strings outside a job),
    unless the record already has them (it was stamped where it was made)."""
    if hasattr(record, "jobkit_job_id"):
        return
    context = current_context()
    if context is None:
        record.__dict__.update(dict.fromkeys(FIELDS, ""))
        return
    record.__dict__.update(
        jobkit_job=context.job,
        jobkit_job_id=context.job_id,
        jobkit_attempt=context.attempt,
        jobkit_attempt_id=context.attempt_id,
        jobkit_context=context.text,
    )


class JobContextFilter(logging.Filter):
    """A handler filter that adds the job's context to each record it sees and drops none, so a
    handler whose own format uses ``FIELDS`` works in any process, inside a job or not (the
    record factory is only installed once a process runs a job). Add it to handlers, not
    loggers: a logger's filter misses the records of its child loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        add_job_context(record)
        return True


# The record factory ------------------------------------------------------------------------------

_install_lock = threading.Lock()
_installed: tuple[Callable[..., logging.LogRecord], Callable[..., logging.LogRecord]] | None = None
"""(our factory, the one it wraps) once installed in this process."""


def install_record_factory() -> None:
    """Wrap the process's log record factory so every new record gets the job's context.
    Idempotent: called on every run, it installs once."""
    global _installed
    if _installed is not None:
        return
    with _install_lock:
        if _installed is not None:
            return
        wrapped = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = wrapped(*args, **kwargs)
            add_job_context(record)
            return record

        logging.setLogRecordFactory(make_record)
        _installed = (make_record, wrapped)


def uninstall_record_factory() -> None:
    """Put back the factory ``install_record_factory`` wrapped, if nothing has wrapped ours
    since (then it stays, and keeps working). For tests."""
    global _installed
    with _install_lock:
        if _installed is None:
            return
        ours, wrapped = _installed
        if logging.getLogRecordFactory() is ours:
            logging.setLogRecordFactory(wrapped)
            _installed = None


# Hooks -------------------------------------------------------------------------------------------


@hookimpl(wrapper=True, tryfirst=True)
def jobkit_run_job(job: Job, process: JobProcess) -> Generator[None, Outcome, Outcome]:
    """Run the attempt with its context set; outermost (``tryfirst``), so the lines other
    wrappers log carry it too."""
    install_record_factory()
    token = _current.set(process)
    try:
        return (yield)
    finally:
        _current.reset(token)
