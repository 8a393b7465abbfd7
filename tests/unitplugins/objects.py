"""Plugins that are objects in a module, named in the ``plugins`` setting as
``module:attribute``."""

from jobkit.hookspecs import hookimpl


class AddsNothing:
    """A plugin class whose instance implements one event hook."""

    @hookimpl
    def jobkit_worker_started(self, worker):
        pass


adds_nothing = AddsNothing()
