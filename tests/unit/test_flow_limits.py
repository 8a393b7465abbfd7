"""Flow limits a job class declares (its ``limits`` attribute): the worker keeps them with the
``limits`` setting's, each of the class's own job name, and refuses a wrong one at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from jobkit import Job
from jobkit.errors import SettingsError
from jobkit.records import FlowLimit, LimitScope
from jobkit.registry import JobRegistry
from jobkit.runtime import Runtime
from jobkit.settings import Settings


def runtime_with(limits_of_class: Any, setting: list[Any] | None = None) -> Runtime:
    runtime = Runtime.from_settings(Settings(limits=setting or []), load_entrypoints=False)
    runtime.registry = JobRegistry()

    class Report(Job):
        limits = limits_of_class

        def run(self) -> None:
            pass

    class Plain(Job):
        def run(self) -> None:
            pass

    runtime.registry.register(Report, name="app.Report")
    runtime.registry.register(Plain, name="app.Plain")
    return runtime


def test_a_job_class_limits_its_own_name_beside_the_setting():
    runtime = runtime_with(
        {"max_running": 2, "max_starts": 5, "per": 60},
        setting=[{"queue": "emails", "max_running": 1}],
    )
    assert runtime.flow_limits == [FlowLimit(scope=LimitScope.QUEUE, name="emails", max_running=1)]
    runtime.import_jobs()
    assert runtime.flow_limits == [
        FlowLimit(scope=LimitScope.QUEUE, name="emails", max_running=1),
        FlowLimit(
            scope=LimitScope.JOB_NAME, name="app.Report", max_running=2, max_starts=5, per=60.0
        ),
    ]


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        (2, "has limits 2: a table of max_running, or max_starts and per, that limits its own"),
        (
            {"queue": "emails", "max_running": 1},
            "has limits {'queue': 'emails', 'max_running': 1}: a table of max_running",
        ),
        ({}, "has limits {}, which must set max_running, or max_starts and per"),
        ({"max_starts": 3}, "which must set max_starts and per together"),
        ({"max_running": 0}, "which must have max_running as an integer of 1 or more"),
    ],
)
def test_a_wrong_class_limit_is_refused_naming_the_class(limits, problem):
    runtime = runtime_with(limits)
    with pytest.raises(SettingsError) as raised:
        runtime.import_jobs()
    assert "job class " in str(raised.value)
    assert "runtime_with.<locals>.Report ('app.Report') has limits" in str(raised.value)
    assert problem in str(raised.value)


def test_a_name_limited_by_the_class_and_the_setting_is_refused():
    runtime = runtime_with(
        {"max_running": 2}, setting=[{"job_name": "app.Report", "max_starts": 1, "per": 1}]
    )
    with pytest.raises(SettingsError, match=r"the limits setting limits job_name:app\.Report too"):
        runtime.import_jobs()
