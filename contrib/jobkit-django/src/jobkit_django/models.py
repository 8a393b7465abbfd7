"""Models of the admin's pages and of the tasks backend's return values.

The admin models have no table (``managed = False``, never queried): their admin pages read
and act through jobkit's operations API, so the admin shows jobkit's own data, not a copy,
and does not depend on how jobkit lays out its tables. ``TaskReturnValue`` is the one table of
this app: jobkit keeps no return values, and ``django.tasks`` results have one.
"""

from __future__ import annotations

from django.db import models


class JobRequest(models.Model):
    """Jobs waiting: pending (ready now) and scheduled (later)."""

    class Meta:
        managed = False
        verbose_name = "request (waiting job)"
        verbose_name_plural = "requests (waiting jobs)"
        default_permissions = ("view", "change")


class JobProcess(models.Model):
    """Attempts a worker runs now."""

    class Meta:
        managed = False
        verbose_name = "running attempt"
        verbose_name_plural = "running attempts"
        default_permissions = ("view", "change")


class JobResult(models.Model):
    """Attempts that ended, with their status, error and traceback."""

    class Meta:
        managed = False
        verbose_name = "result"
        verbose_name_plural = "results"
        default_permissions = ("view", "change")


class Queue(models.Model):
    """The queues, their depths, and whether each is paused."""

    class Meta:
        managed = False
        verbose_name = "queue"
        verbose_name_plural = "queues"
        default_permissions = ("view", "change")


class TaskReturnValue(models.Model):
    """The return value of a ``django.tasks`` task run by jobkit, by jobkit job id."""

    job_id = models.UUIDField(primary_key=True)
    return_value = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
