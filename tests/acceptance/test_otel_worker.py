"""OpenTelemetry end to end: a real ``jobkit worker`` whose pool children set up the SDK from
the ``OTEL_*`` environment and export over OTLP/HTTP to a receiver in the test."""

import gzip
import http.server
import subprocess
import sys
import threading

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobkit import Status
from jobkit.builtin.otel import OpenTelemetry
from testapp.jobs import Fail, Noop

pytestmark = pytest.mark.acceptance


class Receiver:
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    def __init__(self):
        self.spans: list[tuple[dict, Span]] = []
        self.metric_names: set[str] = set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, path: str, body: bytes) -> None:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(resource, span) for span in scope_spans.spans]
        elif path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    self.metric_names |= {metric.name for metric in scope_metrics.metrics}


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def attributes(span: Span) -> dict:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = (
            value.int_value if value.WhichOneof("value") == "int_value" else value.string_value
        )
    return values


def test_a_pool_childs_spans_link_back_to_the_producers_trace(
    start_worker, jobkit_runtime_factory, receiver
):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.otel"])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime.pm.register(OpenTelemetry(tracer_provider=provider), "test-otel")
    succeeds = runtime.enqueue(Noop(1))
    fails = runtime.enqueue(Fail("kaput"))
    sends = {
        span.attributes["messaging.message.id"]: span for span in exporter.get_finished_spans()
    }

    worker = start_worker(
        "--burst",
        "--max-processes",
        "2",
        env={
            "JOBKIT_OTEL_SDK": "environment",
            "OTEL_SERVICE_NAME": "jobkit-e2e",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    assert worker.wait_for_exit() == 0, worker.output()
    assert runtime.get_result(succeeds.id).status == Status.SUCCESSFUL
    assert runtime.get_result(fails.id).status == Status.ERRORED

    processes = {
        attributes(span)["messaging.message.id"]: (resource, span)
        for resource, span in receiver.spans
        if span.name == "process default"
    }
    assert set(processes) == set(sends), worker.output()
    for message_id, (resource, span) in processes.items():
        send = sends[message_id].get_span_context()
        assert resource["service.name"] == "jobkit-e2e"
        assert span.kind == Span.SpanKind.SPAN_KIND_CONSUMER
        (link,) = span.links
        assert link.trace_id == send.trace_id.to_bytes(16, "big")
        assert link.span_id == send.span_id.to_bytes(8, "big")
        assert span.trace_id != link.trace_id  # a link, not a parent
    failed = processes[str(fails.job_id)][1]
    assert attributes(failed)["error.type"] == "ValueError"
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert failed.status.message == "ValueError: kaput"
    assert {
        "messaging.client.consumed.messages",
        "messaging.process.duration",
        "jobkit.queue.wait.duration",
    } <= receiver.metric_names, worker.output()


def test_an_unknown_exporter_stops_the_worker_with_the_fix(run_cli):
    result = run_cli(
        "worker",
        "--burst",
        env={"JOBKIT_OTEL_SDK": "environment", "OTEL_TRACES_EXPORTER": "carrier-pigeon"},
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "OTEL_TRACES_EXPORTER='carrier-pigeon'" in result.stderr
    assert "'carrier-pigeon' exporter" in result.stderr
    assert "pip install opentelemetry-exporter-otlp" in result.stderr


def test_a_bad_sdk_setting_names_the_setting(run_cli):
    result = run_cli("worker", "--burst", env={"JOBKIT_OTEL_SDK": "automatic"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "setting otel.sdk (from JOBKIT_OTEL_SDK)" in result.stderr
    assert "('none', 'environment') (got 'automatic')" in result.stderr


OFF_SCRIPT = """
import sys

if sys.argv[1] == "absent":
    class NoOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoOpenTelemetry())

from jobkit.runtime import get_runtime
from jobkit.testing import run_jobs
from testapp.jobs import Fail, Noop

request = Noop(1).run_in_worker()
Fail().run_in_worker()
results = run_jobs(get_runtime())
print(sorted(r.status.value for r in results), "traceparent" in request.headers)
print(sorted(name for name in sys.modules if name.partition(".")[0] == "opentelemetry"))
"""


@pytest.mark.parametrize(
    ("how", "env"),
    [
        ("blocked", {"JOBKIT_DISABLE_PLUGINS": "jobkit.builtin.otel"}),
        ("absent", {}),
    ],
)
def test_off_means_no_opentelemetry_import_and_jobs_still_run(
    how, env, subprocess_env, jobkit_runtime
):
    """Blocked, or without the otel extra (imports of opentelemetry fail): enqueue and run
    work as before, and no OpenTelemetry module was ever imported."""
    result = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, how],
        env={**subprocess_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['ERRORED', 'SUCCESSFUL'] False", "[]"], result.stderr
    assert "Traceback" not in result.stderr
