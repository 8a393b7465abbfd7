"""The Overview's throughput and failure-rate charts, drawn on the server as inline SVG (no
JavaScript, no chart library): each bar a bucket of ``jobkit.operations.Throughput``, stacked
by outcome, with a ``<title>`` a browser shows on hover, and the failure rate as a line."""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from jobkit.operations import Throughput

WIDTH = 720
"""The chart's width in SVG units (it scales to the page)."""
HEIGHT = 120
"""The bars' height in SVG units; the time labels go below."""
RATE_HEIGHT = 40
"""The failure-rate line's band, in SVG units."""
OUTCOMES = (
    ("successful", ("SUCCESSFUL",)),
    ("failed", ("ERRORED", "LOST")),
    ("other", ("DEFERRED", "CANCELLED")),
)
"""The stacked parts of a bar, bottom up: a CSS class (``bar-<name>``) and the statuses in it."""


@attrs.frozen(kw_only=True)
class Chart:
    title: str
    bars: list[dict[str, Any]]
    rate_points: list[tuple[float, float]]
    labels: list[tuple[float, str]]
    peak: int
    total: int
    failed: int
    failure_rate: float | None
    width: int = WIDTH
    height: int = HEIGHT
    rate_height: int = RATE_HEIGHT


def chart(title: str, throughput: Throughput, *, label_every: int, fmt: str) -> Chart:
    """The geometry of one chart: a bar per bucket (``label_every`` buckets a time label, as
    ``fmt`` writes it), scaled to the busiest bucket."""
    buckets = throughput.buckets
    peak = max((bucket.total for bucket in buckets), default=0)
    step = WIDTH / max(len(buckets), 1)
    bars, points, labels = [], [], []
    for index, bucket in enumerate(buckets):
        x = index * step
        y = float(HEIGHT)
        parts = []
        for name, statuses in OUTCOMES:
            count = sum(bucket.counts.get(status, 0) for status in statuses)
            if count and peak:
                height = HEIGHT * count / peak
                y -= height
                parts.append({"kind": name, "y": round(y, 2), "height": round(height, 2)})
        rate = bucket.failure_rate
        bars.append(
            {
                "x": round(x + step * 0.1, 2),
                "width": round(step * 0.8, 2),
                "parts": parts,
                "title": describe(bucket.start, throughput.bucket_seconds, bucket.counts, rate),
            }
        )
        if rate is not None:
            points.append((round(x + step / 2, 2), round(2 + (RATE_HEIGHT - 4) * (1 - rate), 2)))
        if index % label_every == 0:
            labels.append((round(x, 2), f"{bucket.start.astimezone(datetime.UTC):{fmt}}"))
    return Chart(
        title=title,
        bars=bars,
        rate_points=points,
        labels=labels,
        peak=peak,
        total=throughput.total,
        failed=throughput.failed,
        failure_rate=throughput.failure_rate,
    )


def describe(
    start: datetime.datetime, seconds: int, counts: dict[str, int], rate: float | None
) -> str:
    """A bucket in words: ``12:05 to 12:06 UTC: 40 ended (2 errored, 38 successful), 5.0%
    failed``."""
    end = start + datetime.timedelta(seconds=seconds)
    when = f"{start.astimezone(datetime.UTC):%H:%M} to {end.astimezone(datetime.UTC):%H:%M} UTC"
    total = sum(counts.values())
    if not total:
        return f"{when}: none ended"
    parts = ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items()))
    failed = "" if rate is None else f", {rate:.1%} failed"
    return f"{when}: {total} ended ({parts}){failed}"
