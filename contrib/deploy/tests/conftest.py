"""The OpenTelemetry SDK with an in-memory metric reader, as the app's own set-up
(``otel.sdk = "none"``): set before any runtime makes jobkit's instruments."""

from __future__ import annotations

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

READER = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return READER
