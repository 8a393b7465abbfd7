"""Jobs for the dashboard's tests; the test process and its ``jobkit worker`` subprocesses
import this module (``JOBKIT_IMPORTS=dashboard_jobs``)."""

from __future__ import annotations

import time

from jobkit import Job, Pipeline, register_job


@register_job(name="dashboard.Succeed")
class Succeed(Job):
    def __init__(self, number: int = 0):
        self.number = number

    def run(self) -> None:
        pass


@register_job(name="dashboard.Report")
class Report(Job):
    """Returns ``output``, the job's output."""

    def __init__(self, output: object = None):
        self.output = output

    def run(self) -> object:
        return self.output


@register_job(name="dashboard.Fail")
class Fail(Job):
    """Fails every time, with the given message in its traceback."""

    def __init__(self, message: str = "the mail server said no"):
        self.message = message

    def run(self) -> None:
        raise ValueError(self.message)


@register_job(name="dashboard.Flaky")
class Flaky(Job):
    """Fails on its first attempt and succeeds on any later one (a retry)."""

    def __init__(self, label: str = ""):
        self.label = label

    def run(self) -> None:
        attempt = self.job_process.retry_attempt if self.job_process else 0
        if attempt == 0:
            raise RuntimeError(f"flaky {self.label} failed its first attempt")


@register_job(name="dashboard.Sleep")
class Sleep(Job):
    """Sleeps in short steps (so a cancel ends it soon)."""

    def __init__(self, seconds: float = 60.0):
        self.seconds = seconds

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)


@register_job(name="dashboard.Onboard")
class Onboard(Pipeline):
    """Two steps: ``greet`` notes itself in the workspace; ``check`` fails when the workspace
    says ``"fail": true``, which leaves the pipeline at that step."""

    steps = ("greet", "check")

    def greet(self) -> None:
        self.workspace["greeted"] = True

    def check(self) -> None:
        if self.workspace.get("fail"):
            raise ValueError("the check failed")
