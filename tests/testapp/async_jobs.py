"""A module whose job has an ``async def run()``: importing it must fail at ``@register_job``."""

from __future__ import annotations

from jobkit import Job, register_job


@register_job(name="testapp.AsyncJob")
class AsyncJob(Job):
    async def run(self) -> None:
        pass
