"""Shared test setup: jobkit's own tests run without third-party plugins from the environment,
and find the test jobs in ``tests/testapp``."""

import os

os.environ.setdefault("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
