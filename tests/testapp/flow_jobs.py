"""A test job that declares its own flow limit (the ``limits`` class attribute)."""

from __future__ import annotations

from jobkit import register_job
from testapp.jobs import Record


@register_job(name="testapp.OneAtATime")
class OneAtATime(Record):
    """``Record`` (start and end rows in the ledger, a sleep between them standing for the
    work), with a flow limit of its own: one runs at a time."""

    limits = {"max_running": 1}
