"""Jobs that give every outcome's metrics."""

from __future__ import annotations

from jobkit import Job, register_job


@register_job(name="deploy_tests.Succeed")
class Succeed(Job):
    def run(self) -> None:
        pass


@register_job(name="deploy_tests.Fail")
class Fail(Job):
    def run(self) -> None:
        raise ValueError("boom")
