"""Jobs and plugins used by jobkit's tests (importable as ``testapp`` in tests and workers)."""
