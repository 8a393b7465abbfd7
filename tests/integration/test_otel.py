"""The OpenTelemetry plugin, with the SDK's in-memory exporter and reader injected (never the
global providers): spans, links, status, metrics and gauges, on the real store."""

import asyncio
import json
import threading
import uuid

import psycopg
import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from psycopg import sql

from jobkit import DeferJob, Job, Status, hookimpl, register_job
from jobkit.builtin.otel import OpenTelemetry
from jobkit.builtin.otel.plugin import DURATION_BUCKETS
from jobkit.operations import Operations
from jobkit.plugins import notify
from jobkit.records import WorkerInfo
from jobkit.testing import run_jobs, wait_for
from testapp.dead_workers import claim_and_start, register
from testapp.jobs import Fail, Noop

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


@register_job(name="test_otel.DeferOnce")
class DeferOnce(Job):
    """Defers its first run, then succeeds."""

    runs: dict[str, int] = {}

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        DeferOnce.runs[self.key] = DeferOnce.runs.get(self.key, 0) + 1
        if DeferOnce.runs[self.key] == 1:
            raise DeferJob(delay=0)


@register_job(name="test_otel.SeesItsSpan")
class SeesItsSpan(Job):
    """Waits (awaiting) until both jobs of its kind run, then notes the current span's id."""

    arrived: set[str] = set()
    seen: dict[str, int] = {}

    def __init__(self, key: str):
        self.key = key

    async def run(self) -> None:
        SeesItsSpan.arrived.add(self.key)
        async with asyncio.timeout(10):
            while len(SeesItsSpan.arrived) < 2:
                await asyncio.sleep(0.005)
        SeesItsSpan.seen[self.key] = trace.get_current_span().get_span_context().span_id


@register_job(name="test_otel.NotesItsContext")
class NotesItsContext(Job):
    """Notes the trace context a job it enqueued now would carry (what ``propagate.inject``
    writes)."""

    carried: dict[str, str] = {}

    def run(self) -> None:
        NotesItsContext.carried = {}
        propagate.inject(NotesItsContext.carried)


class Telemetry:
    """A runtime whose OpenTelemetry plugin reports to in-memory exporters."""

    def __init__(self, runtime, sampler=None, **options):
        self.runtime = runtime
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(**({"sampler": sampler} if sampler else {}))
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.plugin = OpenTelemetry(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.reader]),
            **options,
        )
        runtime.pm.register(self.plugin, "test-otel")

    def finished(self, name=None):
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metrics(self):
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def points(self, name):
        metric = self.metrics().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def total(self, name, **attributes):
        return sum(
            point.value
            for point in self.points(name)
            if all(point.attributes.get(k) == v for k, v in attributes.items())
        )


@pytest.fixture
def telemetry(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    return Telemetry(runtime)


def traceparent_of(span):
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


# Send -----------------------------------------------------------------------------------------


def test_enqueue_is_a_producer_span_whose_context_the_request_keeps(telemetry):
    request = telemetry.runtime.enqueue(Noop(1), queue="emails")
    (span,) = telemetry.finished()
    assert span.name == "send emails"
    assert span.kind == SpanKind.PRODUCER
    assert dict(span.attributes) == {
        "messaging.system": "jobkit",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "emails",
        "messaging.message.id": str(request.job_id),
        "jobkit.job.name": "testapp.jobs.Noop",
    }
    assert span.status.status_code == StatusCode.UNSET
    stored = telemetry.runtime.store.claim(
        worker_id=register(telemetry.runtime.store), queues=["emails"], limit=1
    )
    assert stored[0].headers["traceparent"] == traceparent_of(span)


def test_bulk_enqueue_is_one_span_with_the_batch_size(telemetry):
    requests = telemetry.runtime.enqueue_many([Noop(i) for i in range(5)], queue="bulk")
    (span,) = telemetry.finished()
    assert span.name == "send bulk"
    assert span.attributes["messaging.batch.message_count"] == 5
    assert "messaging.message.id" not in span.attributes
    assert {r.headers["traceparent"] for r in requests} == {traceparent_of(span)}


def test_bulk_enqueue_across_queues_names_no_destination(telemetry):
    runtime = telemetry.runtime
    jobs = [Noop(1), Noop(2)]
    requests = [
        runtime.build_request(jobs[0], queue="a"),
        runtime.build_request(jobs[1], queue="b"),
    ]
    runtime.pm.hook.jobkit_enqueue(jobs=jobs, requests=requests, connection=None)
    (span,) = telemetry.finished()
    assert span.name == "send"
    assert "messaging.destination.name" not in span.attributes
    assert span.attributes["messaging.batch.message_count"] == 2


def test_unsampled_producers_still_store_their_context(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    telemetry = Telemetry(runtime, sampler=ALWAYS_OFF)
    request = runtime.enqueue(Noop(1))
    assert telemetry.finished() == []
    version, trace_id, span_id, flags = request.headers["traceparent"].split("-")
    assert version == "00"
    assert int(trace_id, 16) and int(span_id, 16)
    assert int(flags, 16) & 1 == 0  # not sampled, and said so


def test_an_enqueue_should_enqueue_declines_is_marked_skipped_and_not_counted(telemetry):
    first = telemetry.runtime.enqueue(Noop(1), concurrency_key="only-one")
    declined = telemetry.runtime.enqueue(Noop(2), concurrency_key="only-one")

    assert first is not None and declined is None
    stored, skipped = telemetry.finished("send default")
    assert "jobkit.enqueue.skipped" not in stored.attributes
    assert skipped.attributes["jobkit.enqueue.skipped"] is True
    assert skipped.status.status_code == StatusCode.UNSET
    assert telemetry.total("messaging.client.sent.messages") == 1


def test_a_bulk_enqueue_counts_the_jobs_it_declined(telemetry):
    telemetry.runtime.enqueue(Noop(0), concurrency_key="taken")
    jobs = [Noop(1), Noop(2), Noop(3)]
    requests = [
        telemetry.runtime.build_request(job, concurrency_key=key)
        for job, key in zip(jobs, ["taken", "free", "taken"], strict=True)
    ]

    stored = telemetry.runtime.pm.hook.jobkit_enqueue(jobs=jobs, requests=requests, connection=None)

    assert [request is not None for request in stored] == [False, True, False]
    bulk = telemetry.finished("send default")[-1]
    assert bulk.attributes["jobkit.enqueue.skipped_count"] == 2
    assert "jobkit.enqueue.skipped" not in bulk.attributes


def test_a_failed_enqueue_is_an_error_span(telemetry):
    class Refuse:
        @hookimpl
        def jobkit_should_enqueue(self, job, request):
            raise RuntimeError("rate limiter is down")

    telemetry.runtime.pm.register(Refuse())
    with pytest.raises(RuntimeError):
        telemetry.runtime.enqueue(Noop(1))
    (span,) = telemetry.finished()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "rate limiter is down"
    assert span.attributes["error.type"] == "RuntimeError"
    (point,) = telemetry.points("messaging.client.operation.duration")
    assert point.attributes["error.type"] == "RuntimeError"


def test_an_error_span_shows_no_password(telemetry):
    class Refuse:
        @hookimpl
        def jobkit_should_enqueue(self, job, request):
            raise RuntimeError("rate limiter at redis://:Sekr1t@limits:6379/0 is down")

    telemetry.runtime.pm.register(Refuse())
    with pytest.raises(RuntimeError):
        telemetry.runtime.enqueue(Noop(1))
    (span,) = telemetry.finished()
    assert span.status.description == "rate limiter at redis://:***@limits:6379/0 is down"


# Process --------------------------------------------------------------------------------------


def test_a_successful_run_is_a_consumer_span_linked_to_the_send(telemetry):
    request = telemetry.runtime.enqueue(Noop(1))
    (result,) = run_jobs(telemetry.runtime)
    send, process = telemetry.finished()
    assert process.name == "process default"
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is None
    (link,) = process.links
    assert link.context.trace_id == send.context.trace_id
    assert link.context.span_id == send.context.span_id
    assert process.attributes["messaging.message.id"] == str(request.job_id)
    assert process.attributes["messaging.client.id"] == str(result.worker_id)
    assert process.attributes["messaging.operation.name"] == "process"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == "default"
    assert process.attributes["jobkit.job.name"] == "testapp.jobs.Noop"
    assert process.attributes["jobkit.job.attempt"] == 1
    assert process.attributes["jobkit.job.outcome"] == "successful"
    assert process.status.status_code == StatusCode.UNSET
    assert "error.type" not in process.attributes


def test_a_failure_and_its_retry_share_the_message_id_and_the_link(telemetry):
    request = telemetry.runtime.enqueue(Fail("boom", times=1), retries=1)
    results = run_jobs(telemetry.runtime)
    assert [r.status for r in results] == [Status.ERRORED, Status.SUCCESSFUL]
    send = telemetry.finished("send default")[0]
    failed, retried = telemetry.finished("process default")
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ValueError: boom"
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.attributes["jobkit.job.outcome"] == "errored"
    assert retried.status.status_code == StatusCode.UNSET
    assert [failed.attributes["jobkit.job.attempt"], retried.attributes["jobkit.job.attempt"]] == [
        1,
        2,
    ]
    for span in (failed, retried):
        assert span.attributes["messaging.message.id"] == str(request.job_id)
        assert span.links[0].context.span_id == send.context.span_id


def test_a_deferral_is_not_an_error_and_its_rerun_links_to_the_send(telemetry):
    telemetry.runtime.enqueue(DeferOnce(str(uuid.uuid4())))
    results = run_jobs(telemetry.runtime)
    assert [r.status for r in results] == [Status.DEFERRED, Status.SUCCESSFUL]
    send = telemetry.finished("send default")[0]
    deferred, rerun = telemetry.finished("process default")
    assert deferred.attributes["jobkit.job.outcome"] == "deferred"
    assert deferred.status.status_code == StatusCode.UNSET
    assert rerun.links[0].context.span_id == send.context.span_id


def test_a_rescued_job_reruns_linked_to_its_original_send(telemetry):
    store = telemetry.runtime.store
    telemetry.runtime.enqueue(Noop(7), retries=1)
    send = telemetry.finished("send default")[0]
    claim_and_start(store, register(store, beat_seconds_ago=3600), limit=1)
    (lost,) = telemetry.runtime.rescue_dead_workers()
    assert lost.status == Status.LOST
    (rerun,) = run_jobs(telemetry.runtime)
    assert rerun.status == Status.SUCCESSFUL
    (process,) = telemetry.finished("process default")
    assert process.links[0].context.span_id == send.context.span_id
    assert process.attributes["jobkit.job.attempt"] == 2


def test_the_send_span_can_be_the_parent_instead(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    telemetry = Telemetry(runtime, parent_process_spans=True)
    runtime.enqueue(Noop(1))
    run_jobs(runtime)
    send, process = telemetry.finished()
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id
    assert process.links == ()


def test_a_request_without_trace_context_runs_in_a_new_trace(telemetry):
    telemetry.runtime.store.enqueue([telemetry.runtime.build_request(Noop(1))], connection=None)
    (result,) = run_jobs(telemetry.runtime)
    (process,) = telemetry.finished()
    assert result.status == Status.SUCCESSFUL
    assert process.links == ()
    assert process.parent is None


@pytest.mark.parametrize("headers", [{"traceparent": 5}, ["traceparent"]])
def test_headers_a_row_holds_that_are_not_text_start_a_new_trace(telemetry, headers):
    telemetry.runtime.store.enqueue([telemetry.runtime.build_request(Noop(1))], connection=None)
    # Written behind the store's back, as a hand-made row would be.
    settings = telemetry.runtime.settings
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("UPDATE {}.requests SET headers = %s").format(sql.Identifier(settings.schema)),
            [json.dumps(headers)],
        )

    (result,) = run_jobs(telemetry.runtime)

    (process,) = telemetry.finished()
    assert result.status == Status.SUCCESSFUL, result.error
    assert process.links == ()


# Metrics --------------------------------------------------------------------------------------


def test_sent_messages_are_counted_once_committed(telemetry):
    telemetry.runtime.enqueue_many([Noop(i) for i in range(3)], queue="q1")
    assert (
        telemetry.total("messaging.client.sent.messages", **{"messaging.destination.name": "q1"})
        == 3
    )
    (point,) = telemetry.points("messaging.client.sent.messages")
    assert dict(point.attributes) == {
        "messaging.system": "jobkit",
        "messaging.operation.name": "send",
        "messaging.destination.name": "q1",
    }


def test_a_rolled_back_transactional_enqueue_counts_nothing(telemetry, jobkit_settings):
    """The store decides watched transactions in the order they were watched, so once a later
    commit is counted, every earlier transaction has been decided: no sleep needed to show that
    the rolled-back one and the still-open one were not counted."""
    url = jobkit_settings.database_url

    def sent(queue):
        return telemetry.total(
            "messaging.client.sent.messages", **{"messaging.destination.name": queue}
        )

    with psycopg.connect(url) as rolled_back:
        telemetry.runtime.enqueue(Noop(1), queue="rolled-back", connection=rolled_back)
        rolled_back.rollback()
    with psycopg.connect(url) as still_open:
        telemetry.runtime.enqueue(Noop(2), queue="kept", connection=still_open)
        with psycopg.connect(url) as probe:
            telemetry.runtime.enqueue(Noop(3), queue="probe", connection=probe)
            probe.commit()
        wait_for(lambda: sent("probe") == 1, timeout=10)
        assert (sent("rolled-back"), sent("kept")) == (0, 0)
        still_open.commit()
    wait_for(lambda: sent("kept") == 1, timeout=10)
    assert telemetry.total("messaging.client.sent.messages") == 2
    assert len(telemetry.finished("send rolled-back")) == 1  # the span says it was attempted


def test_histograms_are_in_seconds_with_the_conventions_buckets(telemetry):
    assert DURATION_BUCKETS == BUCKETS
    telemetry.runtime.enqueue(Noop(1))
    telemetry.runtime.enqueue(Fail())
    run_jobs(telemetry.runtime)
    metrics = telemetry.metrics()
    for name in (
        "messaging.client.operation.duration",
        "messaging.process.duration",
        "jobkit.queue.wait.duration",
    ):
        assert metrics[name].unit == "s", name
        for point in metrics[name].data.data_points:
            assert tuple(point.explicit_bounds) == BUCKETS, name
    assert metrics["messaging.client.sent.messages"].unit == "{message}"
    assert metrics["messaging.client.consumed.messages"].unit == "{message}"


def test_process_durations_and_consumed_counts_carry_the_outcome(telemetry):
    telemetry.runtime.enqueue(Noop(1))
    telemetry.runtime.enqueue(Fail("no", times=1), retries=1)
    run_jobs(telemetry.runtime)
    durations = {
        (p.attributes["jobkit.job.outcome"], p.attributes.get("error.type")): p.count
        for p in telemetry.points("messaging.process.duration")
    }
    consumed = {
        (p.attributes["jobkit.job.outcome"], p.attributes.get("error.type")): p.value
        for p in telemetry.points("messaging.client.consumed.messages")
    }
    assert durations == consumed == {("successful", None): 2, ("errored", "ValueError"): 1}
    for name in ("messaging.process.duration", "messaging.client.consumed.messages"):
        for point in telemetry.points(name):
            assert point.attributes["messaging.operation.name"] == "process"
            assert point.attributes["messaging.system"] == "jobkit"
            assert point.attributes["messaging.destination.name"] == "default"


def test_lost_attempts_are_recorded_with_their_outcome(telemetry):
    store = telemetry.runtime.store
    telemetry.runtime.enqueue(Noop(1))
    claim_and_start(store, register(store, beat_seconds_ago=3600), limit=1)
    telemetry.runtime.rescue_dead_workers()
    for name in ("messaging.process.duration", "messaging.client.consumed.messages"):
        (point,) = telemetry.points(name)
        assert point.attributes["jobkit.job.outcome"] == "lost"
        assert point.attributes["error.type"] == "WorkerLost"


# Gauges ---------------------------------------------------------------------------------------


def test_gauges_report_queues_and_workers_while_a_worker_runs(telemetry):
    runtime = telemetry.runtime
    runtime.enqueue_many([Noop(i) for i in range(3)], queue="mail")
    runtime.enqueue(Noop(9), queue="mail", delay=3600)
    runtime.enqueue(Noop(1), queue="other")
    register(telemetry.runtime.store)
    (service,) = telemetry.plugin.jobkit_add_worker_services(
        runtime=runtime, worker_id=uuid.uuid4()
    )
    assert telemetry.points("jobkit.queue.pending") == []
    service.start()
    try:
        by_queue = {
            name: {
                p.attributes["messaging.destination.name"]: p.value for p in telemetry.points(name)
            }
            for name in ("jobkit.queue.pending", "jobkit.queue.scheduled", "jobkit.queue.running")
        }
        assert by_queue["jobkit.queue.pending"] == {"mail": 3, "other": 1}
        assert by_queue["jobkit.queue.scheduled"]["mail"] == 1
        assert set(by_queue["jobkit.queue.running"].values()) == {0}
        ages = {
            p.attributes["messaging.destination.name"]: p.value
            for p in telemetry.points("jobkit.queue.oldest_pending_age")
        }
        assert 0 <= ages["mail"] < 60
        paused = {
            p.attributes["messaging.destination.name"]: p.value
            for p in telemetry.points("jobkit.queue.paused")
        }
        assert paused == {"mail": 0, "other": 0}
        assert [p.value for p in telemetry.points("jobkit.workers.active")] == [1]
        assert [p.value for p in telemetry.points("jobkit.workers.stale")] == [0]
        assert telemetry.metrics()["jobkit.queue.oldest_pending_age"].unit == "s"
    finally:
        service.stop()
    assert telemetry.points("jobkit.queue.pending") == []


def test_the_worker_processes_gauge_reports_each_running_workers_pool(telemetry):
    runtime = telemetry.runtime
    worker = WorkerInfo(id=uuid.uuid4(), hostname="h", pid=1, queues=["default"])
    (service,) = telemetry.plugin.jobkit_add_worker_services(runtime=runtime, worker_id=worker.id)
    service.start()
    try:
        assert telemetry.points("jobkit.worker.processes") == []  # no stats report yet
        notify(runtime.pm.hook.jobkit_worker_stats_reported, worker=worker, stats={"processes": 4})
        (point,) = telemetry.points("jobkit.worker.processes")
        assert point.value == 4
        assert dict(point.attributes) == {
            "messaging.system": "jobkit",
            "messaging.client.id": str(worker.id),
        }
        assert telemetry.metrics()["jobkit.worker.processes"].unit == "{process}"
    finally:
        service.stop()
    assert telemetry.points("jobkit.worker.processes") == []


# No tracer provider set up ---------------------------------------------------------------------

CALLERS_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def in_the_callers_trace():
    """The caller's trace as a service without the SDK knows it: extracted from an incoming
    traceparent, current for the test."""
    token = context.attach(propagate.extract({"traceparent": CALLERS_TRACEPARENT}))
    yield
    context.detach(token)


def run_as_a_worker_would(runtime):
    """``run_jobs`` outside the test's trace, as a worker's process knows none; their statuses."""
    token = context.attach(context.Context())
    try:
        return [result.status for result in run_jobs(runtime)]
    finally:
        context.detach(token)


def test_with_no_tracer_provider_an_enqueue_keeps_the_callers_trace(
    jobkit_runtime_factory, in_the_callers_trace
):
    runtime = jobkit_runtime_factory()  # the built-in plugin, on the API's placeholders
    assert runtime.enqueue(Noop(1)).headers["traceparent"] == CALLERS_TRACEPARENT
    (one, two) = runtime.enqueue_many([Noop(2), Noop(3)])
    assert one.headers["traceparent"] == two.headers["traceparent"] == CALLERS_TRACEPARENT


def test_with_no_tracer_provider_an_enqueue_outside_a_trace_carries_none(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory()
    assert "traceparent" not in runtime.enqueue(Noop(1)).headers
    assert [r.status for r in run_jobs(runtime)] == [Status.SUCCESSFUL]


def test_with_no_tracer_provider_a_job_runs_outside_its_senders_trace(
    jobkit_runtime_factory, in_the_callers_trace
):
    runtime = jobkit_runtime_factory()
    runtime.enqueue(NotesItsContext())
    assert run_as_a_worker_would(runtime) == [Status.SUCCESSFUL]
    assert NotesItsContext.carried == {}  # linked spans, the default: a new trace per run


def test_with_no_tracer_provider_a_job_run_as_the_sends_child_carries_its_trace_on(
    jobkit_runtime_factory, in_the_callers_trace
):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    runtime.pm.register(OpenTelemetry(parent_process_spans=True), "test-otel")
    runtime.enqueue(NotesItsContext())
    assert run_as_a_worker_would(runtime) == [Status.SUCCESSFUL]
    assert NotesItsContext.carried["traceparent"] == CALLERS_TRACEPARENT


def test_the_api_placeholders_record_nothing_and_a_provider_set_later_is_used(monkeypatch):
    """No provider set: the plugin skips its spans and measurements (the API's placeholders
    would record nothing). It looks for a provider again after ``LOOK_AGAIN`` seconds, and once
    one records it keeps it."""
    from opentelemetry import metrics

    from jobkit.builtin.otel import plugin

    monkeypatch.setattr(plugin, "LOOK_AGAIN", 0.2)
    assert not plugin._ProviderWatch(None, trace.get_tracer_provider).recording()
    assert not plugin._ProviderWatch(None, metrics.get_meter_provider).recording()
    assert not plugin._ProviderWatch(metrics.NoOpMeterProvider(), lambda: None).recording()
    assert plugin._ProviderWatch(MeterProvider(), metrics.get_meter_provider).recording()

    current: list[trace.TracerProvider] = [trace.NoOpTracerProvider()]
    watch = plugin._ProviderWatch(None, lambda: current[0])
    assert not watch.recording()
    current[0] = TracerProvider()
    assert not watch.recording()  # it looked less than LOOK_AGAIN ago
    wait_for(watch.recording, timeout=2)
    current[0] = trace.NoOpTracerProvider()
    assert watch.recording()


# Blocked --------------------------------------------------------------------------------------


def test_blocked_the_plugin_adds_nothing_and_breaks_nothing(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    request = runtime.enqueue(Noop(1))
    assert "traceparent" not in request.headers
    assert [r.status for r in run_jobs(runtime)] == [Status.SUCCESSFUL]
    assert runtime.pm.get_plugin("jobkit.builtin.otel") is None
    assert not runtime.pm.hook.jobkit_job_committed.get_hookimpls()


def test_concurrent_enqueues_each_get_their_own_span(telemetry):
    def enqueue():
        for i in range(20):
            telemetry.runtime.enqueue(Noop(i))

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = telemetry.finished("send default")
    assert len(spans) == 80
    assert len({span.context.span_id for span in spans}) == 80
    assert all(span.parent is None for span in spans)


def test_concurrent_async_jobs_each_run_in_their_own_span(telemetry):
    runtime = telemetry.runtime
    requests = {key: runtime.enqueue(SeesItsSpan(key)) for key in ("a", "b")}
    processes = claim_and_start(runtime.store, register(runtime.store))

    async def both() -> list:
        return await asyncio.gather(*(runtime.arun_attempt(process) for process in processes))

    outcomes = asyncio.run(both())

    assert [outcome.status for outcome in outcomes] == [Status.SUCCESSFUL] * 2
    spans = {
        span.attributes["messaging.message.id"]: span
        for span in telemetry.finished("process default")
    }
    for key, request in requests.items():
        assert SeesItsSpan.seen[key] == spans[str(request.job_id)].context.span_id
    assert SeesItsSpan.seen["a"] != SeesItsSpan.seen["b"]


def test_operators_actions_are_counted(telemetry):
    runtime = telemetry.runtime
    operations = Operations(runtime)
    failed = runtime.enqueue(Fail("once", times=1), queue="mail")
    run_jobs(runtime, queues=["mail"])
    assert operations.retry(failed.job_id, source="test").done
    waiting = runtime.enqueue(Noop(1), queue="mail", delay=3600)
    assert operations.cancel(waiting.job_id, source="test").done
    later = runtime.enqueue(Noop(2), queue="mail", delay=3600)
    assert operations.run_now(later.job_id, source="test").done
    assert not operations.run_now(later.job_id, source="test").done  # pending: not counted
    assert operations.delete(later.job_id, source="test").done
    assert operations.pause_queue("mail", source="test").done
    assert not operations.pause_queue("mail", source="test").done  # nothing new: not counted
    assert operations.resume_queue("mail", source="test").done

    counted = {
        (p.attributes["jobkit.operation"], p.attributes.get("messaging.destination.name")): p.value
        for p in telemetry.points("jobkit.operations")
    }
    assert counted == {
        ("retry", "mail"): 1,
        ("cancel", None): 1,
        ("run_now", None): 1,
        ("delete", None): 1,
        ("pause", "mail"): 1,
        ("resume", "mail"): 1,
    }


# The async API --------------------------------------------------------------------------------


def test_an_async_enqueue_is_the_same_producer_span_and_the_insert_runs_inside_it(telemetry):
    from opentelemetry import trace

    seen_during_insert = []

    class SeesTheCurrentSpan:
        @hookimpl(wrapper=True, trylast=True)  # innermost: next to the kernel's insert
        def jobkit_enqueue(self, jobs, requests, connection):
            seen_during_insert.append(trace.get_current_span().get_span_context().span_id)
            return (yield)

    telemetry.runtime.pm.register(SeesTheCurrentSpan())

    async def enqueue():
        try:
            return await telemetry.runtime.aenqueue(Noop(1), queue="emails")
        finally:
            await telemetry.runtime.aclose()

    request = asyncio.run(enqueue())
    (span,) = telemetry.finished()
    assert (span.name, span.kind) == ("send emails", SpanKind.PRODUCER)
    assert span.attributes["messaging.message.id"] == str(request.job_id)
    assert seen_during_insert == [span.get_span_context().span_id]
    stored = telemetry.runtime.store.claim(
        worker_id=register(telemetry.runtime.store), queues=["emails"], limit=1
    )
    assert stored[0].headers["traceparent"] == traceparent_of(span)


def test_an_async_transactional_enqueue_is_counted_once_the_caller_commits(
    telemetry, jobkit_settings
):
    def sent(queue):
        return telemetry.total(
            "messaging.client.sent.messages", **{"messaging.destination.name": queue}
        )

    async def enqueue():
        try:
            async with await psycopg.AsyncConnection.connect(
                jobkit_settings.database_url
            ) as connection:
                await telemetry.runtime.aenqueue(
                    Noop(1), queue="rolled-back", connection=connection
                )
                await connection.rollback()
                await telemetry.runtime.aenqueue(Noop(2), queue="kept", connection=connection)
                assert sent("kept") == 0
                await connection.commit()
        finally:
            await telemetry.runtime.aclose()

    asyncio.run(enqueue())
    wait_for(lambda: sent("kept") == 1, timeout=10)
    assert sent("rolled-back") == 0
