"""The OpenTelemetry plugin: ``send``/``process`` spans, messaging metrics and queue gauges.

Spans and attributes follow the OpenTelemetry messaging conventions: the ``send {queue}``
PRODUCER span's context is stored in each request's headers (W3C ``traceparent``, plus
``tracestate`` and ``baggage`` when the configured propagators write them), kept across
retries, deferrals and rescues; each attempt's ``process {queue}`` CONSUMER span links to it
(or, with ``otel.parent_process_spans``, is its child). ``messaging.message.id`` is the job's
id, the same on both sides and on every attempt.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, SpanKind, StatusCode

from jobkit.errors import JobkitError, StoreError
from jobkit.hookspecs import hookimpl
from jobkit.job import Job
from jobkit.records import JobProcess, JobRequest, JobResult, Outcome, Stats, Status, WorkerInfo
from jobkit.redaction import redact_credentials

from . import SECTION, OtelSettings

if TYPE_CHECKING:
    from jobkit.runtime import Runtime

logger = logging.getLogger("jobkit.otel")

LOOK_AGAIN = 1.0
"""Seconds a plugin that found no recording provider waits before it looks again (see
``_ProviderWatch``)."""

SYSTEM = "jobkit"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The messaging conventions' bucket boundaries for durations in seconds."""
try:
    VERSION = importlib.metadata.version("jobkit")
except importlib.metadata.PackageNotFoundError:
    VERSION = "0"
"""jobkit's version, for the instrumentation scope (read once: the lookup takes milliseconds)."""
GAUGE_CACHE_SECONDS = 1.0
"""One stats query answers all the gauges of one collection."""


class OpenTelemetry:
    """The plugin, with the tracer and meter providers it reports to (the global ones when
    not given)."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        parent_process_spans: bool | None = None,
    ):
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._parent_process_spans = parent_process_spans
        self._settings = OtelSettings()
        self._tracer: trace.Tracer | None = None
        self._tracing = _ProviderWatch(tracer_provider, trace.get_tracer_provider)
        self._metering = _ProviderWatch(meter_provider, metrics.get_meter_provider)
        self._instruments: _Instruments | None = None
        self._gauges: _Gauges | None = None
        self._lock = threading.Lock()

    # Set-up ---------------------------------------------------------------------------------

    @hookimpl
    def jobkit_settings_defaults(self) -> dict[str, type]:
        return {SECTION: OtelSettings}

    @hookimpl
    def jobkit_configure_runtime(self, runtime: Runtime) -> None:
        self._settings = runtime.settings.section(SECTION)
        if self._settings.sdk == "environment" and self._tracer_provider is None:
            configure_sdk_from_environment()

    @property
    def parent_process_spans(self) -> bool:
        if self._parent_process_spans is not None:
            return self._parent_process_spans
        return self._settings.parent_process_spans

    @property
    def tracer(self) -> trace.Tracer:
        # A global provider set later is still honoured: the API's tracer is a proxy until then.
        if self._tracer is None:
            self._tracer = trace.get_tracer(
                "jobkit", VERSION, tracer_provider=self._tracer_provider
            )
        return self._tracer

    @property
    def tracing(self) -> bool:
        """Whether spans go anywhere: a tracer provider was given, or one is set globally. Until
        then the API's placeholder makes spans that record nothing, which cost an attempt's
        pool child more than the rest of its bookkeeping, so none is made."""
        return self._tracing.recording()

    @property
    def metering(self) -> bool:
        """Whether measurements go anywhere: a meter provider was given, or one is set
        globally. Until then the API's instruments record nothing, so none is called."""
        return self._metering.recording()

    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: Callable[[], dict[str, Any]],
        *,
        context: Context | None = None,
        links: Sequence[Link] = (),
    ) -> contextlib.AbstractContextManager[trace.Span]:
        """The span of the block, made current, with the ``attributes()``; with nothing
        tracing, no span and no attributes made (the block runs in the context it was given,
        and ``INVALID_SPAN`` takes the calls) unless ``context`` must become current even so:
        a job run as the child of its send span still carries that trace on to the jobs it
        enqueues."""
        if not self.tracing and context is None:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        return self.tracer.start_as_current_span(
            name,
            context=context,
            kind=kind,
            links=links,
            attributes=attributes(),
            record_exception=False,
            set_status_on_exception=False,
        )

    @property
    def instruments(self) -> _Instruments:
        if self._instruments is None:
            with self._lock:
                if self._instruments is None:
                    meter = metrics.get_meter("jobkit", VERSION, self._meter_provider)
                    self._instruments = _Instruments(meter)
        return self._instruments

    # Producer ---------------------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def jobkit_enqueue(
        self, jobs: Sequence[Job], requests: Sequence[JobRequest], connection: Any
    ) -> Generator[None, list[JobRequest | None], list[JobRequest | None]]:
        queues = {request.queue for request in requests}
        queue = next(iter(queues)) if len(queues) == 1 else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
        }
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        metric_attributes = dict(attributes)
        if len(requests) == 1:
            attributes["messaging.message.id"] = str(requests[0].job_id)
            attributes["jobkit.job.name"] = requests[0].job_name
        else:
            attributes["messaging.batch.message_count"] = len(requests)
        start = time.perf_counter()
        with self._span(
            f"send {queue}" if queue else "send", SpanKind.PRODUCER, lambda: attributes
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            for request in requests:
                request.headers.update(carrier)
            try:
                stored = yield
            except BaseException as error:
                _set_error(span, type(error).__qualname__, str(error))
                metric_attributes["error.type"] = type(error).__qualname__
                raise
            finally:
                self.instruments.send_duration.record(
                    time.perf_counter() - start, metric_attributes
                )
            declined = sum(request is None for request in stored or ())
            if declined and len(requests) == 1:
                span.set_attribute("jobkit.enqueue.skipped", True)
            elif declined:
                span.set_attribute("jobkit.enqueue.skipped_count", declined)
        return stored

    # Operations -------------------------------------------------------------------------------

    @hookimpl
    def jobkit_job_retried(self, request: JobRequest, source: str) -> None:
        self._operated("retry", request.queue)

    @hookimpl
    def jobkit_job_cancelled(self, job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
        self._operated("cancel", None)

    @hookimpl
    def jobkit_job_deleted(self, job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
        self._operated("delete", None)

    @hookimpl
    def jobkit_job_rescheduled(self, job_id: uuid.UUID, attempt_id: uuid.UUID, source: str) -> None:
        self._operated("run_now", None)

    @hookimpl
    def jobkit_queue_paused(self, queue: str, source: str) -> None:
        self._operated("pause", queue)

    @hookimpl
    def jobkit_queue_resumed(self, queue: str, source: str) -> None:
        self._operated("resume", queue)

    def _operated(self, operation: str, queue: str | None) -> None:
        attributes = {"jobkit.operation": operation}
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        self.instruments.operations.add(1, attributes)

    @hookimpl
    def jobkit_job_committed(self, requests: Sequence[JobRequest]) -> None:
        counts: dict[str, int] = {}
        for request in requests:
            counts[request.queue] = counts.get(request.queue, 0) + 1
        for queue, count in counts.items():
            self.instruments.sent.add(count, _metric_attributes("send", queue))

    # Consumer -------------------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def jobkit_run_job(self, job: Job, process: JobProcess) -> Generator[None, Outcome, Outcome]:
        tracing = self.tracing
        if not tracing and not self.parent_process_spans and not self.metering:
            return (yield)  # nothing would be recorded, and no trace is carried on
        queue_attributes = _metric_attributes("process", process.queue)
        if process.start_at is not None and self.metering:
            waited = (process.claimed_at - process.start_at).total_seconds()
            self.instruments.queue_wait.record(max(waited, 0.0), queue_attributes)

        parent, links = None, []
        if tracing or self.parent_process_spans:
            creation = propagate.extract(_text_headers(process.headers))
            creation_span = trace.get_current_span(creation).get_span_context()
            if creation_span.is_valid:
                if self.parent_process_spans:
                    parent = creation
                else:
                    links = [Link(creation_span)]
        with self._span(
            f"process {process.queue}",
            SpanKind.CONSUMER,
            lambda: {
                **queue_attributes,
                "messaging.operation.type": "process",
                "messaging.message.id": str(process.job_id),
                "messaging.client.id": str(process.worker_id),
                "jobkit.job.name": process.job_name,
                "jobkit.job.attempt": process.retry_attempt + 1,
                "jobkit.request.id": str(process.id),
            },
            context=parent,
            links=links,
        ) as span:
            outcome: Outcome = yield
            span.set_attribute("jobkit.job.outcome", outcome.status.value.lower())
            if outcome.status == Status.ERRORED:
                _set_error(span, outcome.error_type or "_OTHER", _last_line(outcome.error))
        return outcome

    @hookimpl
    def jobkit_job_finished(self, result: JobResult) -> None:
        """Every attempt, counted and timed with its outcome: written by the main process, so
        attempts that ended without finishing (LOST, CANCELLED) are counted too. Each attempt a
        worker delivered to a pool child has exactly one result, so this counts deliveries."""
        if not self.metering:
            return
        attributes = {
            **_metric_attributes("process", result.queue),
            "jobkit.job.outcome": result.status.value.lower(),
        }
        if result.status in (Status.ERRORED, Status.LOST, Status.CANCELLED):
            attributes["error.type"] = result.error_type or "_OTHER"
        self.instruments.consumed.add(1, attributes)
        if result.started_at is None or result.ended_at is None:
            return
        duration = (result.ended_at - result.started_at).total_seconds()
        self.instruments.process_duration.record(max(duration, 0.0), attributes)

    # Worker -----------------------------------------------------------------------------------

    @hookimpl
    def jobkit_add_worker_services(self, runtime: Runtime, worker_id: uuid.UUID) -> list[Any]:
        with self._lock:
            if self._gauges is None:
                meter = metrics.get_meter("jobkit", VERSION, self._meter_provider)
                self._gauges = _Gauges(meter)
        return [_GaugeService(self._gauges, runtime, worker_id)]

    @hookimpl
    def jobkit_worker_stats_reported(self, worker: WorkerInfo, stats: dict[str, Any]) -> None:
        """The worker's pool size, for ``jobkit.worker.processes``."""
        if self._gauges is None:
            return
        for source in self._gauges.sources:
            if source.worker_id == worker.id:
                source.processes = stats.get("processes")


class _Instruments:
    """The counters and histograms, made once per meter."""

    def __init__(self, meter: metrics.Meter):
        self.sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Jobs enqueued, counted when the enqueue's transaction commits.",
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Attempts run, counted when their result is written, by outcome.",
        )
        self.send_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Duration of enqueue calls.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of attempts, by outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.queue_wait = meter.create_histogram(
            "jobkit.queue.wait.duration",
            unit="s",
            description="Time from a job being ready to a worker claiming it.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.operations = meter.create_counter(
            "jobkit.operations",
            unit="{operation}",
            description="Operators' actions: jobs retried or cancelled, queues paused or resumed.",
        )


class _Gauges:
    """Observable gauges of the queues and workers, read from the store of a running worker.

    Instruments live as long as their meter; a worker that stops leaves the sources, and the
    gauges report nothing while none is left.
    """

    def __init__(self, meter: metrics.Meter):
        self.sources: list[_GaugeService] = []
        self._lock = threading.Lock()
        self._cached: tuple[float, Stats | None] = (0.0, None)

        def per_queue(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            return lambda options: self._per_queue(field)

        gauges = [
            ("jobkit.queue.pending", "{job}", "Jobs ready to run.", per_queue("pending")),
            ("jobkit.queue.scheduled", "{job}", "Jobs waiting for their start time.",
             per_queue("scheduled")),
            ("jobkit.queue.running", "{job}", "Jobs claimed by a worker.", per_queue("running")),
            ("jobkit.queue.oldest_pending_age", "s",
             "Seconds the oldest ready job has waited.", per_queue("oldest_pending_age")),
            ("jobkit.queue.paused", "1", "1 while an operator has the queue paused.",
             per_queue("paused")),
            ("jobkit.workers.active", "{worker}", "Workers with a recent heartbeat.",
             lambda options: self._total("workers_active")),
            ("jobkit.workers.stale", "{worker}",
             "Workers whose heartbeat is older than heartbeat_timeout.",
             lambda options: self._total("workers_stale")),
            ("jobkit.worker.processes", "{process}",
             "This worker's pool child processes, at its last stats report.",
             lambda options: self._processes()),
        ]  # fmt: skip
        for name, unit, description, callback in gauges:
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )

    def _stats(self) -> Stats | None:
        with self._lock:
            read_at, stats = self._cached
            if time.monotonic() - read_at < GAUGE_CACHE_SECONDS:
                return stats
            source = self.sources[0] if self.sources else None
            stats = source.read_stats() if source is not None else None
            self._cached = (time.monotonic(), stats)
            return stats

    def forget(self) -> None:
        """Drop the cached figures (their source changed)."""
        with self._lock:
            self._cached = (0.0, None)

    def _per_queue(self, field: str) -> list[Observation]:
        stats = self._stats()
        if stats is None:
            return []
        return [
            Observation(getattr(counts, field) or 0, _queue_attributes(queue))
            for queue, counts in sorted(stats.queues.items())
        ]

    def _total(self, field: str) -> list[Observation]:
        stats = self._stats()
        if stats is None:
            return []
        return [Observation(getattr(stats, field), {"messaging.system": SYSTEM})]

    def _processes(self) -> list[Observation]:
        return [
            Observation(
                source.processes,
                {"messaging.system": SYSTEM, "messaging.client.id": str(source.worker_id)},
            )
            for source in list(self.sources)
            if source.processes is not None
        ]


class _GaugeService:
    """Makes a worker's store the source of the gauges while the worker runs, and holds the
    worker's own figure for ``jobkit.worker.processes``."""

    name = "otel-gauges"

    def __init__(self, gauges: _Gauges, runtime: Runtime, worker_id: uuid.UUID):
        self._gauges = gauges
        self._runtime = runtime
        self.worker_id = worker_id
        self.processes: int | None = None
        """The worker's pool children at its last stats report; None before the first."""

    def start(self) -> None:
        self._gauges.sources.append(self)
        self._gauges.forget()

    def stop(self) -> None:
        if self in self._gauges.sources:
            self._gauges.sources.remove(self)
        self._gauges.forget()

    def read_stats(self) -> Stats | None:
        try:
            return self._runtime.store.stats(
                include_results=False, heartbeat_timeout=self._runtime.settings.heartbeat_timeout
            )
        except StoreError as error:
            logger.warning("queue gauges skipped: %s", error)
            return None


# Helpers ------------------------------------------------------------------------------------


class _ProviderWatch:
    """Whether a tracer or meter provider that records is in place: the one the plugin was
    given, else the global one. The API's own placeholders (its proxy and no-op providers)
    record nothing. Asking the API costs an environment lookup while no global provider is set,
    twice an attempt, so a watch that found none looks again only after ``LOOK_AGAIN`` seconds:
    a provider an app sets once its worker runs jobs is used from then on. One that records
    stays in place (the API refuses to replace a global provider)."""

    def __init__(self, given: Any, lookup: Callable[[], Any]):
        self._given = given
        self._lookup = lookup
        self._recording = False
        self._look_at = -math.inf

    def recording(self) -> bool:
        if self._recording:
            return True
        now = time.monotonic()
        if now < self._look_at:
            return False
        provider = self._given or self._lookup()
        self._recording = type(provider).__module__.partition("._")[0] not in _API_PACKAGES
        self._look_at = now + LOOK_AGAIN
        return self._recording


_API_PACKAGES = ("opentelemetry.trace", "opentelemetry.metrics")
"""Where the API's placeholder providers are defined (``opentelemetry.metrics._internal`` for
its proxy meter provider)."""


def _text_headers(headers: Any) -> dict[str, str]:
    """The headers a propagator can read: the text ones. A row's ``headers`` can hold any JSON,
    and a propagator given a number or a list raises, which would fail the job it came with."""
    if not isinstance(headers, dict):
        return {}
    return {name: value for name, value in headers.items() if isinstance(value, str)}


def _queue_attributes(queue: str) -> dict[str, str]:
    return {"messaging.system": SYSTEM, "messaging.destination.name": queue}


def _metric_attributes(operation: str, queue: str) -> dict[str, str]:
    return {**_queue_attributes(queue), "messaging.operation.name": operation}


def _set_error(span: trace.Span, error_type: str, message: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, redact_credentials(message))


def _last_line(text: str) -> str:
    """The message of an outcome's error: the last line of a traceback ("ValueError: boom")."""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# SDK set-up from the environment ------------------------------------------------------------

_configured = False


def configure_sdk_from_environment() -> None:
    """Set the global tracer and meter providers from the ``OTEL_*`` variables, once per
    process, with the exporters named by ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER``
    (default ``otlp``; ``none`` for none), found through the SDK's entry points."""
    global _configured
    if _configured:
        return
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ModuleNotFoundError as error:
        raise JobkitError(
            "the otel.sdk setting is 'environment' but the OpenTelemetry SDK is not installed: "
            "pip install 'jobkit[otel]'"
        ) from error
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "jobkit"}
    resource = Resource.create(attributes)
    span_exporters = _exporters("OTEL_TRACES_EXPORTER", "opentelemetry_traces_exporter", "TRACES")
    metric_exporters = _exporters(
        "OTEL_METRICS_EXPORTER", "opentelemetry_metrics_exporter", "METRICS"
    )
    tracer_provider = TracerProvider(resource=resource)
    for exporter in span_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    readers = [PeriodicExportingMetricReader(exporter) for exporter in metric_exporters]
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = True


def _exporters(variable: str, group: str, signal: str) -> list[Any]:
    names = [n.strip() for n in os.environ.get(variable, "otlp").split(",") if n.strip()]
    available = {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}
    exporters = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp" and name not in available:
            # As the SDK's own configurator reads it: the protocol picks the package.
            protocol = os.environ.get(
                f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            )
            name = "otlp_proto_http" if protocol.startswith("http") else "otlp_proto_grpc"
        if name not in available:
            raise JobkitError(
                f"{variable}={os.environ.get(variable, 'otlp')!r} (otel.sdk = 'environment'): no "
                f"installed package provides the {name!r} exporter (installed: "
                f"{', '.join(sorted(available)) or 'none'}); for OTLP, pip install "
                f"opentelemetry-exporter-otlp"
            )
        exporters.append(available[name].load()())
    return exporters
