"""Plugins that add middleware through ``jobkit_add_middleware``, named in the ``plugins``
setting as ``unitplugins.middleware_plugins:<name>``."""

from jobkit.hookspecs import hookimpl
from unitplugins.middleware import Audit, Metrics, Timing


class AddsMiddleware:
    """A plugin whose ``jobkit_add_middleware`` answers ``answer``."""

    def __init__(self, answer):
        self.answer = answer

    @hookimpl
    def jobkit_add_middleware(self, settings):
        return self.answer


audit_and_timing = AddsMiddleware([Audit, Timing])
metrics = AddsMiddleware((Metrics,))
nothing = AddsMiddleware(None)
one_class = AddsMiddleware(Audit)
an_instance = AddsMiddleware([Audit(lambda job: None)])
a_path = AddsMiddleware(["unitplugins.middleware.Audit"])
