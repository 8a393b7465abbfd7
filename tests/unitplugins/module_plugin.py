"""A plugin that is a module, named in the ``plugins`` setting by its dotted path."""

from jobkit.hookspecs import hookimpl


@hookimpl
def jobkit_job_enqueued(request):
    pass
