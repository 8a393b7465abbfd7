"""The exceptions that users and plugin authors catch."""

from __future__ import annotations


class JobkitError(Exception):
    """Base class of every error jobkit raises on purpose."""


class SettingsError(JobkitError):
    """A setting has a bad value; the message names the setting, its source and what was
    expected."""


class PluginError(JobkitError):
    """A plugin could not be loaded, or no plugin answered a hook that needs an answer."""


class ParameterError(JobkitError):
    """A job parameter cannot be stored as JSON (raised at enqueue) or read back (in the worker)."""


class UnknownJobError(JobkitError):
    """A job name that no registered class answers to."""


class StoreError(JobkitError):
    """The store could not do what was asked: no database, a missing migration, a bad URL."""


class DeferJob(Exception):
    """Raise inside ``run()`` to run this job again later without counting it as a failure.

    The attempt is recorded DEFERRED and a new request is enqueued ``delay`` seconds from now
    (an int, float or ``timedelta``). With ``increment_retries=True`` the deferral uses up one of
    the job's retries; when none are left the attempt is recorded ERRORED instead.
    """

    def __init__(self, *, delay: float = 0, increment_retries: bool = False):
        super().__init__(f"deferred for {delay} seconds")
        self.delay = delay
        self.increment_retries = increment_retries


class StoreUnavailable(StoreError):
    """The database did not answer (down, restarting, connection cut). Retrying later may work."""
