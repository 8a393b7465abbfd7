"""Enqueue-lock plugins, for the tests of which plugin answers a firstresult hook. Each lock is
a ``nullcontext`` whose value names the plugin object that made it."""

import contextlib

from jobkit.hookspecs import hookimpl


class Lock:
    def __init__(self, name):
        self.name = name

    @hookimpl
    def jobkit_enqueue_lock(self, job_name, concurrency_key):
        return contextlib.nullcontext(self.name)


class UrgentLock(Lock):
    @hookimpl(tryfirst=True)
    def jobkit_enqueue_lock(self, job_name, concurrency_key):
        return contextlib.nullcontext(self.name)


class ObservingLock:
    """A wrapper: it sees the answer, and gives none of its own."""

    @hookimpl(wrapper=True)
    def jobkit_enqueue_lock(self, job_name, concurrency_key):
        return (yield)


alpha = Lock("alpha")
beta = Lock("beta")
urgent = UrgentLock("urgent")
observer = ObservingLock()
