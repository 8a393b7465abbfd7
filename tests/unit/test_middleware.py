"""Tests of the middleware chain: the ``middleware`` setting's and the plugins'
(``jobkit_add_middleware``): order, skipping, running twice, and the errors for what is not a
middleware class."""

from __future__ import annotations

import asyncio
import datetime
import re
import uuid

import pytest

from jobkit.errors import PluginError, SettingsError
from jobkit.job import Job
from jobkit.middleware import build_async_chain, build_chain, import_middleware
from jobkit.plugins import describe_plugins
from jobkit.records import JobProcess, Status
from jobkit.registry import JobRegistry
from jobkit.runtime import Runtime
from jobkit.settings import Settings
from unitplugins import middleware

OUTER = "unitplugins.middleware.Outer"
INNER = "unitplugins.middleware.Inner"


class Logged(Job):
    """Writes to its own log, so each test sees only its own job's steps."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.log: list[str] = []

    def run(self) -> str:
        self.log.append("run")
        if self.fail:
            raise RuntimeError("the job failed")
        return "ran"


class AsyncLogged(Job):
    """An async job that writes to its own log."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def run(self) -> str:
        await asyncio.sleep(0)
        self.log.append("run")
        return "ran"


ASYNC_OUTER = "unitplugins.middleware.AsyncOuter"


def test_the_async_chain_awaits_each_middleware_s_aprocess_job_then_run():
    job = AsyncLogged()

    result = asyncio.run(build_async_chain([ASYNC_OUTER, "unitplugins.middleware.AsyncSkip"])(job))
    assert (result, job.log) == ("skipped", ["async outer before", "skipped", "async outer after"])

    job = AsyncLogged()
    assert asyncio.run(build_async_chain([ASYNC_OUTER])(job)) == "ran"
    assert job.log == ["async outer before", "run", "async outer after"]


def test_middleware_without_an_async_aprocess_job_cannot_wrap_async_jobs():
    message = (
        "middleware unitplugins.middleware.Outer, unitplugins.middleware.NotSubclassed cannot "
        "run around async jobs (`async def run`): it has no `async def aprocess_job(self, job)`; "
        "add one that awaits self.run_job(job) (see docs/async.md)"
    )
    with pytest.raises(PluginError, match=f"^{re.escape(message)}$"):
        build_async_chain([OUTER, ASYNC_OUTER, "unitplugins.middleware.NotSubclassed"])


def test_without_middleware_the_chain_is_run():
    job = Logged()

    assert build_chain([])(job) == "ran"
    assert job.log == ["run"]


def test_the_first_middleware_listed_is_the_outermost():
    job = Logged()

    result = build_chain([OUTER, INNER])(job)

    assert job.log == ["outer before", "inner before", "run", "inner after", "outer after"]
    assert result == "ran"


def test_the_order_of_the_setting_is_the_order_of_the_chain():
    job = Logged()

    build_chain([INNER, OUTER])(job)

    assert job.log == ["inner before", "outer before", "run", "outer after", "inner after"]


def test_a_middleware_can_skip_the_job():
    job = Logged()

    result = build_chain([OUTER, "unitplugins.middleware.Skip", INNER])(job)

    assert job.log == ["outer before", "skipped", "outer after"]
    assert result == "skipped"


def test_a_middleware_can_run_the_job_twice():
    job = Logged()

    build_chain(["unitplugins.middleware.Twice", INNER])(job)

    assert job.log == ["inner before", "run", "inner after"] * 2


def test_a_class_that_does_not_subclass_job_middleware_is_accepted():
    job = Logged()

    build_chain(["unitplugins.middleware.NotSubclassed"])(job)

    assert job.log == ["duck", "run"]


def test_an_exception_from_run_propagates_through_the_chain():
    job = Logged(fail=True)

    with pytest.raises(RuntimeError, match=r"^the job failed$"):
        build_chain([INNER])(job)

    assert job.log == ["inner before", "run", "inner after"]


def test_import_middleware_returns_the_class():
    assert import_middleware(OUTER) is middleware.Outer


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (
            "unitplugins.middleware.Missing",
            "module 'unitplugins.middleware' has no attribute 'Missing'",
        ),
        ("unitplugins.no_such_module.Middleware", "No module named 'unitplugins.no_such_module'"),
        ("Outer", "Empty module name"),
        (
            "unitplugins.middleware:Outer",
            "module 'unitplugins' has no attribute 'middleware:Outer'",
        ),
    ],
)
def test_a_path_that_cannot_be_imported_is_a_settings_error(path, problem):
    message = f"setting middleware names {path!r}, which cannot be imported: {problem}"

    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        build_chain([OUTER, path])


@pytest.mark.parametrize(
    "path", ["unitplugins.middleware.NoProcessJob", "unitplugins.middleware.NOT_A_CLASS"]
)
def test_a_path_to_something_without_process_job_is_a_settings_error(path):
    message = (
        f"setting middleware names {path!r}, which has no process_job(job) method; subclass "
        f"jobkit.JobMiddleware"
    )

    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        build_chain([path])


# The runtime runs the setting's chain -----------------------------------------------------------


def run_with_middleware(tmp_path, monkeypatch, paths: list[str], job: Job, plugins=()):
    monkeypatch.chdir(tmp_path)
    runtime = Runtime.from_settings(
        Settings(middleware=paths, plugins=list(plugins)), load_entrypoints=False
    )
    runtime.registry = JobRegistry()
    runtime.registry.register(Logged, "tests.Logged")
    process = JobProcess(
        job_name="tests.Logged",
        parameters='{"args": [], "kwargs": {}}',
        worker_id=uuid.uuid4(),
        claimed_at=datetime.datetime.now(datetime.UTC),
    )
    return runtime.run_job(job, process)


def test_the_runtime_runs_jobs_through_the_middleware_setting(tmp_path, monkeypatch):
    job = Logged()

    outcome = run_with_middleware(tmp_path, monkeypatch, [OUTER, INNER], job)

    assert outcome.status is Status.SUCCESSFUL
    assert job.log == ["outer before", "inner before", "run", "inner after", "outer after"]


def test_a_job_skipped_by_middleware_is_successful(tmp_path, monkeypatch):
    job = Logged()

    outcome = run_with_middleware(tmp_path, monkeypatch, ["unitplugins.middleware.Skip"], job)

    assert outcome.status is Status.SUCCESSFUL
    assert job.log == ["skipped"]


def test_a_failure_inside_the_chain_is_an_errored_outcome(tmp_path, monkeypatch):
    job = Logged(fail=True)

    outcome = run_with_middleware(tmp_path, monkeypatch, [INNER], job)

    assert outcome.status is Status.ERRORED
    assert outcome.error_type == "RuntimeError"
    assert outcome.error.endswith("RuntimeError: the job failed\n")
    assert job.log == ["inner before", "run", "inner after"]


# Plugins' middleware ----------------------------------------------------------------------------

PLUGINS = "unitplugins.middleware_plugins:"


def test_plugins_middleware_wraps_the_settings_in_the_order_pluggy_calls_the_plugins(
    tmp_path, monkeypatch
):
    # pluggy calls the plugin registered last first; of the plugins setting, the last listed.
    job = Logged()

    outcome = run_with_middleware(
        tmp_path,
        monkeypatch,
        [OUTER],
        job,
        plugins=[PLUGINS + "audit_and_timing", PLUGINS + "metrics", PLUGINS + "nothing"],
    )

    assert outcome.status is Status.SUCCESSFUL
    assert job.log == [
        "metrics before",
        "audit before",
        "timing before",
        "outer before",
        "run",
        "outer after",
        "timing after",
        "audit after",
        "metrics after",
    ]


def test_jobkit_plugins_lists_the_plugins_middleware_in_the_order_of_the_chain(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    plugins = [PLUGINS + "audit_and_timing", PLUGINS + "metrics"]
    runtime = Runtime.from_settings(Settings(plugins=plugins), load_entrypoints=False)

    infos = describe_plugins(runtime.pm, runtime.settings, hook="jobkit_add_middleware")

    assert [info.name for info in infos] == [PLUGINS + "metrics", PLUGINS + "audit_and_timing"]


def test_plugins_middleware_runs_without_the_setting(tmp_path, monkeypatch):
    job = Logged()

    run_with_middleware(tmp_path, monkeypatch, [], job, plugins=[PLUGINS + "metrics"])

    assert job.log == ["metrics before", "run", "metrics after"]


@pytest.mark.parametrize(
    ("plugin", "problem"),
    [
        (
            "one_class",
            "answered jobkit_add_middleware with <class 'unitplugins.middleware.Audit'>; it "
            "must return a list of middleware classes",
        ),
        (
            "an_instance",
            "answered jobkit_add_middleware with <unitplugins.middleware.Audit object at ",
        ),
        (
            "a_path",
            "answered jobkit_add_middleware with 'unitplugins.middleware.Audit', which is not a "
            "middleware class (one built with the next step, with a process_job(job) method); "
            "return subclasses of jobkit.JobMiddleware",
        ),
    ],
    ids=["one class, not a list", "an instance", "a dotted path"],
)
def test_a_plugin_answer_that_is_not_a_list_of_middleware_classes_names_the_plugin(
    tmp_path, monkeypatch, plugin, problem
):
    monkeypatch.chdir(tmp_path)
    runtime = Runtime.from_settings(Settings(plugins=[PLUGINS + plugin]), load_entrypoints=False)

    with pytest.raises(PluginError) as raised:
        runtime.middleware_chain()

    assert str(raised.value).startswith(f"plugin {PLUGINS + plugin!r} {problem}")
