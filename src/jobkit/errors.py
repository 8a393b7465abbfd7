"""The exceptions that users and plugin authors catch."""

from __future__ import annotations

from typing import Any


class JobkitError(Exception):
    """Base class of every error jobkit raises on purpose."""


class SettingsError(JobkitError):
    """A setting has a bad value; the message names the setting, its source and what was
    expected."""


class PluginError(JobkitError):
    """A plugin could not be loaded, or no plugin answered a hook that needs an answer."""


class ParameterError(JobkitError, ValueError):
    """A job's parameters or options cannot be stored (raised at enqueue: not JSON, text
    PostgreSQL cannot hold, a concurrency key too long, a delay out of range) or read back (in
    the worker). A ``ValueError``, so code that caught the enqueue's ``ValueError`` still does."""


class ParameterTypeError(ParameterError, TypeError):
    """A ``ParameterError`` for a value of the wrong type (``priority="high"``); also a
    ``TypeError``, so code that caught the ``TypeError`` jobkit raised before still does."""


class OutputError(JobkitError):
    """What a job's ``run()`` returned cannot be stored: the serializer refuses it, or its JSON
    is longer than the ``output_max_length`` setting. The attempt is recorded ERRORED with this
    error and not retried (running it again cannot change the return value's type)."""


class UnknownJobError(JobkitError):
    """A job no one can find: a name that no registered class answers to, a class registered
    under a name no worker knows (defined in the script being run), or an attempt id that no
    job has (``job_state``)."""


class StoreError(JobkitError):
    """The store could not do what was asked: no database, a missing migration, a bad URL, or
    the database refused a statement (the message names the cause, e.g. its SQLSTATE)."""


class DeferJob(Exception):
    """Raise inside ``run()`` to run this job again later without counting it as a failure.

    The attempt is recorded DEFERRED and a new request is enqueued ``delay`` seconds from now
    (an int, float or ``timedelta``). With ``increment_retries=True`` the deferral uses up one of
    the job's retries; when none are left the attempt is recorded ERRORED instead. ``output``,
    when not None, is stored with the DEFERRED result as ``run()``'s return value is with a
    SUCCESSFUL one (what this attempt got done: a pipeline's step saves its workspace so).
    """

    def __init__(self, *, delay: float = 0, increment_retries: bool = False, output: Any = None):
        super().__init__(f"deferred for {delay} seconds")
        self.delay = delay
        self.increment_retries = increment_retries
        self.output = output


class JobInterrupted(BaseException):
    """Raised inside ``run()`` when the worker ends the run: ``JobTimeout`` when it passed its
    timeout, ``JobCancelled`` when a shutdown's grace period ran out or an operator cancelled
    it. ``finally`` blocks and context managers run; the run is killed if it has not ended one
    second later. Like ``KeyboardInterrupt`` it is a ``BaseException``, so ``except Exception``
    does not swallow it. In an ``async def run`` the await gets a ``CancelledError`` carrying
    it as its message, and ``on_failure`` and the hooks are given it, as for a sync run."""


class JobTimeout(JobInterrupted):
    """The run passed its timeout; the attempt is recorded ERRORED (error type ``JobTimeout``)."""


class JobCancelled(JobInterrupted):
    """The worker is stopping and its grace period ran out (the attempt is recorded CANCELLED
    and runs again), or an operator cancelled the job (CANCELLED, not run again)."""


class StoreUnavailable(StoreError):
    """The database could not be reached: down, restarting, the connection cut, or every
    connection slot taken. Retrying later may work; nothing else raises it."""


class LeaseLost(StoreError):
    """A worker's heartbeat row is gone: another worker declared it dead and rescued its jobs.
    The worker registers again and replaces its pool children."""


class TickBusy(StoreError):
    """Another transaction is recording the same schedule tick and has not ended (a peer's
    scheduler inside its ``should_enqueue``, or a frozen worker): the scheduler goes on with its
    other entries and tries this tick again shortly, instead of waiting on that transaction."""


class StoreDataError(StoreError):
    """The database refused the values it was sent (out of range, too long, text it cannot
    hold): sending the same values again fails again, so retrying is pointless."""
