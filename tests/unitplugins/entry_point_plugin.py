"""A plugin that the unit tests install through a fake ``jobkit`` entry point."""

from jobkit.hookspecs import hookimpl


@hookimpl
def jobkit_job_finished(result):
    pass
