"""A schedule plugin for tests: ``jobkit_parse_schedule`` reads ``"every N seconds"`` (and
``"every N seconds from T"``, T a Unix time the ticks are counted from), so scheduler tests tick
every few seconds instead of every minute. The ticks still go through the database exactly as
cron ticks do: only the clock arithmetic is this plugin's.

With ``SCHEDULE_STALL_FILE`` set in a worker's environment, the plugin also stalls that
worker's scheduler inside a tick's transaction (after the tick is recorded, before the job's
insert): it creates the file and sleeps, so a test can kill the worker mid-tick. With
``SCHEDULE_SLOW_TICK`` (seconds) it makes each tick's insert that slow, as a busy database
would: the worker's main loop goes on meanwhile.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from jobkit import ScheduleError, hookimpl

_EVERY = re.compile(r"^every (\d+(?:\.\d+)?) seconds?(?: from (\d+(?:\.\d+)?))?$")


class EverySeconds:
    """Fires at ``anchor + k * period`` for every integer k."""

    def __init__(self, period: float, anchor: float = 0.0):
        self.period = period
        self.anchor = anchor

    def __str__(self) -> str:
        return f"every {self.period:g} seconds from {self.anchor:g}"

    def next(self, after: datetime.datetime) -> datetime.datetime:
        count = math.floor((after.timestamp() - self.anchor) / self.period) + 1
        return self._at(count)

    def last_fire_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        count = math.floor((moment.timestamp() - self.anchor) / self.period)
        return self._at(count)

    def _at(self, count: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.anchor + count * self.period, datetime.UTC)


@hookimpl
def jobkit_parse_schedule(spec: str) -> EverySeconds | None:
    if not spec.startswith("every "):
        return None
    match = _EVERY.match(spec)
    if match is None:
        raise ScheduleError(f"{spec!r}: write 'every N seconds' or 'every N seconds from T'")
    return EverySeconds(float(match[1]), float(match[2] or 0))


@hookimpl(wrapper=True)
def jobkit_enqueue(requests: Any) -> Generator[None, Any, Any]:
    stall_file = os.environ.get("SCHEDULE_STALL_FILE")
    ticking = any(request.source.startswith("schedule:") for request in requests)
    if stall_file and ticking:
        Path(stall_file).write_text(requests[0].source)
        time.sleep(120)
    if ticking:
        time.sleep(float(os.environ.get("SCHEDULE_SLOW_TICK", "0")))
    return (yield)
