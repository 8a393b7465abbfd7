"""OpenTelemetry traces and metrics for jobkit, following the messaging semantic conventions.

Active when ``opentelemetry-api`` is installed (the ``otel`` extra installs it with the SDK);
without it this plugin implements nothing but its settings section, so no OpenTelemetry module
is imported and no hook wraps the hot path. Block it with ``disable_plugins =
["jobkit.builtin.otel"]``. To hand jobkit your own tracer and meter providers instead of the
global ones, block it and list an ``OpenTelemetry(tracer_provider=..., meter_provider=...)``
instance in the ``plugins`` setting (``"myapp.telemetry:jobkit_telemetry"``).
"""

from __future__ import annotations

from typing import Any

import attrs

from jobkit.hookspecs import hookimpl

SECTION = "otel"
SDK_CHOICES = ("none", "environment")


@attrs.frozen
class OtelSettings:
    """The ``otel`` settings section: ``[tool.jobkit.otel]`` in pyproject.toml, ``[otel]`` in
    jobkit.toml, or ``JOBKIT_OTEL_<FIELD>`` variables."""

    sdk: str = attrs.field(default="none", validator=attrs.validators.in_(SDK_CHOICES))
    """``"none"``: use whatever tracer and meter providers the app set up (in the modules of
    the ``imports`` setting, say, which pool children import too). ``"environment"``: jobkit
    sets up the SDK in every process it starts (worker and pool children) from the standard
    ``OTEL_*`` variables (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
    ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ...)."""
    parent_process_spans: bool = False
    """Make each ``process`` span a child of its job's ``send`` span instead of linking to
    it (the convention's default, which keeps a job's trace apart from its producer's)."""


@hookimpl
def jobkit_settings_defaults() -> dict[str, type]:
    return {SECTION: OtelSettings}


def _load() -> Any:
    """The plugin class, or None when OpenTelemetry is not installed."""
    try:
        from .plugin import OpenTelemetry
    except ModuleNotFoundError as error:
        if error.name and error.name.partition(".")[0] == "opentelemetry":
            return None
        raise
    return OpenTelemetry


OpenTelemetry = _load()

if OpenTelemetry is not None:
    _builtin = OpenTelemetry()
    jobkit_configure_runtime = _builtin.jobkit_configure_runtime
    jobkit_enqueue = _builtin.jobkit_enqueue
    jobkit_job_committed = _builtin.jobkit_job_committed
    jobkit_run_job = _builtin.jobkit_run_job
    jobkit_job_finished = _builtin.jobkit_job_finished
    jobkit_job_retried = _builtin.jobkit_job_retried
    jobkit_job_cancelled = _builtin.jobkit_job_cancelled
    jobkit_job_deleted = _builtin.jobkit_job_deleted
    jobkit_job_rescheduled = _builtin.jobkit_job_rescheduled
    jobkit_queue_paused = _builtin.jobkit_queue_paused
    jobkit_queue_resumed = _builtin.jobkit_queue_resumed
    jobkit_add_worker_services = _builtin.jobkit_add_worker_services
    jobkit_worker_stats_reported = _builtin.jobkit_worker_stats_reported
