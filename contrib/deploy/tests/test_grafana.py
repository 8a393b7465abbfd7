"""The Grafana dashboard queries only what jobkit's OpenTelemetry plugin really emits: jobs are
enqueued, run and operated on with the SDK's in-memory metric reader, and each name and label
the dashboard's PromQL uses must be one of those metrics' under Prometheus' standard translation
of OTLP names (the OpenTelemetry Collector's prometheus exporter, Prometheus' OTLP receiver)."""

from __future__ import annotations

import os
import re
import socket
import uuid

import pytest
from deploy_jobs import Fail, Succeed
from deployfiles import grafana
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

from jobkit import Status, enqueue_many, pause_queue, resume_queue
from jobkit.records import WorkerInfo
from jobkit.testing import run_jobs

UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}
NOT_ON_THE_DASHBOARD = {"jobkit.queue.paused"}
"""Emitted metrics the dashboard leaves out (the jobkit dashboard shows paused queues)."""
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset"}  # fmt: skip


def prometheus_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


def prometheus_series(metric) -> set[str]:
    """The series names Prometheus stores for an OTLP metric (the OpenTelemetry specification's
    Prometheus compatibility rules): dots become underscores, the unit is appended (annotations
    in braces dropped), a monotonic sum ends in ``_total``, a histogram is three series."""
    base = prometheus_name(metric.name)
    suffix = UNIT_SUFFIXES.get(metric.unit, "")
    if suffix and not base.endswith(f"_{suffix}"):
        base += f"_{suffix}"
    if isinstance(metric.data, Gauge) and metric.unit == "1":
        base += "_ratio"
    if isinstance(metric.data, Histogram):
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    if isinstance(metric.data, Sum) and metric.data.is_monotonic:
        return {f"{base}_total"}
    return {base}


@pytest.fixture
def emitted(jobkit_runtime, metric_reader):
    """{OTLP name: (series names, label names)} of what jobkit emitted for two queues' jobs,
    one failing, an operator's pause and resume, and a worker's gauges."""
    assert Succeed().run_in_worker(queue="emails") is not None
    assert None not in enqueue_many([Succeed(), Fail()])
    statuses = sorted(result.status.value for result in run_jobs())
    assert statuses == sorted([Status.SUCCESSFUL, Status.SUCCESSFUL, Status.ERRORED])
    Succeed().run_in_worker(delay=3600)  # scheduled, for the gauges
    pause_queue("emails", source="test")
    resume_queue("emails", source="test")

    # The worker's part for the gauges: its services run, and it reports its stats.
    worker_id = uuid.uuid4()
    services = [
        service
        for answer in jobkit_runtime.pm.hook.jobkit_add_worker_services(
            runtime=jobkit_runtime, worker_id=worker_id
        )
        for service in answer
        if service.name == "otel-gauges"
    ]
    assert services, "the OpenTelemetry plugin adds its gauges to a worker"
    for service in services:
        service.start()
    worker = WorkerInfo(id=worker_id, hostname=socket.gethostname(), pid=os.getpid(), queues=[])
    jobkit_runtime.pm.hook.jobkit_worker_stats_reported(worker=worker, stats={"processes": 2})
    try:
        data = metric_reader.get_metrics_data()
    finally:
        for service in services:
            service.stop()

    found: dict[str, tuple[set[str], set[str]]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "jobkit":
                continue
            for metric in scope_metrics.metrics:
                labels = {
                    prometheus_name(key)
                    for point in metric.data.data_points
                    for key in point.attributes
                }
                if isinstance(metric.data, Histogram):
                    labels.add("le")
                found[metric.name] = (prometheus_series(metric), labels)
    return found


def queries() -> list[str]:
    dashboard = grafana()
    found = [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    assert found
    return found


def used_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses."""
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    rest = re.sub(r"\{[^}]*\}", " ", expr)
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", rest):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    rest = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", rest)
    rest = re.sub(r"\[[^\]]*\]|\$\w+|\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)?\b", " ", rest)
    names = {
        word
        for word, call in re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)(\s*\()?", rest)
        if not call and word not in PROMQL_WORDS
    }
    return names, labels


def test_the_dashboard_is_grafana_json_with_unique_panels():
    dashboard = grafana()
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and panel["description"]
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for expr in queries():
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval", "__range"}


def test_the_parser_finds_names_and_labels():
    """The reading of PromQL the test below relies on."""
    names, labels = used_in(
        'histogram_quantile(0.95, sum by (le, queue) (rate(a_b_bucket{x=~"$q", y!="1"}[5m])))'
        " / max(c_total offset 5m)"
    )
    assert (names, labels) == ({"a_b_bucket", "c_total"}, {"le", "queue", "x", "y"})


def test_every_metric_and_label_the_dashboard_queries_is_emitted(emitted):
    series = {name: names for name, (names, _) in emitted.items()}
    all_series = set().union(*series.values())
    labels_of = {name: labels for names, labels in emitted.values() for name in names}
    for expr in queries():
        names, labels = used_in(expr)
        assert names, expr
        unknown = names - all_series
        assert not unknown, (
            f"{expr}: no emitted metric is called {unknown}; emitted: {sorted(all_series)}"
        )
        available = set().union(*(labels_of[name] for name in names))
        assert labels <= available, f"{expr}: labels {labels - available} are not emitted"
    for variable in grafana()["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(
                r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]
            ).groups()
            assert label in labels_of[metric]


def test_the_dashboard_shows_every_metric_jobkit_emits(emitted):
    used = set().union(*(used_in(expr)[0] for expr in queries()))
    missing = {
        name for name, (names, _) in emitted.items() if not names & used
    } - NOT_ON_THE_DASHBOARD
    assert not missing, f"no panel shows {missing}"
    assert len(emitted) >= 14  # every instrument of docs/otel.md, all of them recorded
