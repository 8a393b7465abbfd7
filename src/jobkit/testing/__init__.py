"""Testing helpers for apps and plugin authors: the pytest plugin's fixtures (``jobkit_runtime``,
``jobkit_settings``, ``register_plugin``), ``run_jobs`` to run queued jobs inline,
``settings_environ`` to hand the test settings to a subprocess, ``wait_for`` to poll a
condition with a deadline, and
``jobkit.testing.store_contract`` for Store plugins."""

from __future__ import annotations

from jobkit.testing.environ import settings_environ
from jobkit.testing.inline import run_jobs
from jobkit.testing.waiting import wait_for

__all__ = ["run_jobs", "settings_environ", "wait_for"]
