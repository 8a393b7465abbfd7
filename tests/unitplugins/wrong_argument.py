"""A plugin whose implementation of a real hook asks for an argument the hook does not have."""

from jobkit.hookspecs import hookimpl


@hookimpl
def jobkit_job_finished(reslt):
    pass
