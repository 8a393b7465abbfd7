"""A plugin that implements a hook no spec declares (a typo of ``jobkit_job_finished``)."""

from jobkit.hookspecs import hookimpl


@hookimpl
def jobkit_job_finsihed(result):
    pass
