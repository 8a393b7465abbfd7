"""Plugins, middleware and jobs for the unit tests, importable as ``unitplugins.<module>``."""
