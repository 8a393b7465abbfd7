"""The hooks against the real database: jobkit_enqueue and jobkit_run_job wrappers, the job
events, jobkit_connection and jobkit_driver_connection for transactional enqueue, and
jobkit_register_jobs."""

from __future__ import annotations

import json
import logging
import uuid

import psycopg
import pytest
from psycopg import sql

from jobkit import Status, enqueue_many, get_result, hookimpl
from jobkit.registry import JobRegistry
from jobkit.testing import run_jobs
from testapp.integration_jobs import (
    PLUGIN_JOB_NAME,
    Keyed,
    PluginProvidedJob,
    RecordHeaders,
)
from testapp.jobs import Fail, Noop, Record, create_ledger, ledger

# Helpers -----------------------------------------------------------------------------------------


def pending_ids(settings) -> list:
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        query = sql.SQL("SELECT id FROM {}.requests ORDER BY seq").format(
            sql.Identifier(settings.schema)
        )
        return [row[0] for row in connection.execute(query)]


# jobkit_enqueue ----------------------------------------------------------------------------------


class StampHeaders:
    """Wraps every enqueue: notes what it was given and adds a header to each request."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.returned: list[list] = []

    @hookimpl(wrapper=True)
    def jobkit_enqueue(self, jobs, requests, connection):
        self.calls.append([type(job).__name__ for job in jobs])
        for job, request in zip(jobs, requests, strict=True):
            request.headers["trace"] = f"trace-{type(job).__name__}"
        stored = yield
        self.returned.append(stored)
        return stored


def test_enqueue_wrapper_sees_every_enqueue_once(jobkit_runtime, register_plugin):
    plugin = register_plugin(StampHeaders())

    single = Noop(1).run_in_worker()
    many = enqueue_many([Noop(2), Record("r"), Keyed("k"), Keyed("k")])

    assert plugin.calls == [["Noop"], ["Noop", "Record", "Keyed", "Keyed"]]
    assert plugin.returned == [[single], many]
    assert many[3] is None
    assert len(pending_ids(jobkit_runtime.settings)) == 4


def test_headers_added_by_an_enqueue_wrapper_are_stored_and_reach_the_job(
    jobkit_runtime, register_plugin
):
    settings = jobkit_runtime.settings
    create_ledger(settings)
    register_plugin(StampHeaders())

    request = RecordHeaders("h", fail_times=1).run_in_worker(retries=1)

    assert request is not None
    assert request.headers == {"trace": "trace-RecordHeaders"}
    (stored,) = RecordHeaders("h").get_requested_jobs()
    assert stored.headers == request.headers

    failed, retried = run_jobs(jobkit_runtime)

    assert (failed.status, retried.status) == (Status.ERRORED, Status.SUCCESSFUL)
    assert retried.retry_of == failed.id
    assert failed.headers == retried.headers == request.headers
    assert get_result(request.id).headers == request.headers
    expected = json.dumps(request.headers, sort_keys=True)
    assert [(phase, attempt) for _, phase, _, attempt in ledger(settings)] == [
        (expected, 0),
        (expected, 1),
    ]


# jobkit_run_job ----------------------------------------------------------------------------------


class WatchRuns:
    def __init__(self):
        self.before: list[tuple[str, object]] = []
        self.after: list[tuple[object, Status]] = []

    @hookimpl(wrapper=True)
    def jobkit_run_job(self, job, process):
        assert job.job_process is process
        self.before.append((type(job).__name__, process.id))
        outcome = yield
        self.after.append((process.id, outcome.status))
        return outcome


def test_run_job_wrapper_sees_each_run_and_its_outcome(jobkit_runtime, register_plugin):
    plugin = register_plugin(WatchRuns())
    ok = Noop().run_in_worker()
    bad = Fail().run_in_worker(retries=1)
    assert ok is not None and bad is not None

    results = run_jobs(jobkit_runtime)

    assert len(results) == 3
    retry_id = results[1].retry_request_id
    assert plugin.before == [("Noop", ok.id), ("Fail", bad.id), ("Fail", retry_id)]
    assert plugin.after == [
        (ok.id, Status.SUCCESSFUL),
        (bad.id, Status.ERRORED),
        (retry_id, Status.ERRORED),
    ]


class BrokenRunWrapper:
    def __init__(self, when: str):
        self.when = when

    @hookimpl(wrapper=True)
    def jobkit_run_job(self, job, process):
        if self.when == "before":
            raise RuntimeError("wrapper broke before the job")
        yield
        raise RuntimeError("wrapper broke after the job")


@pytest.mark.parametrize("when", ["before", "after"])
def test_exception_in_a_run_job_wrapper_is_recorded_errored(jobkit_runtime, register_plugin, when):
    settings = jobkit_runtime.settings
    create_ledger(settings)
    register_plugin(BrokenRunWrapper(when))
    request = Record("wrapped").run_in_worker()
    assert request is not None

    (result,) = run_jobs(jobkit_runtime)

    assert (result.id, result.status) == (request.id, Status.ERRORED)
    assert result.error_type == "RuntimeError"
    assert f"wrapper broke {when} the job" in result.error
    ran = [phase for _, phase, _, _ in ledger(settings)]
    assert ran == ([] if when == "before" else ["start", "end"])


# Events ------------------------------------------------------------------------------------------


class Events:
    def __init__(self):
        self.enqueued: list = []
        self.started: list = []
        self.finished: list = []

    @hookimpl
    def jobkit_job_enqueued(self, request):
        self.enqueued.append(request)

    @hookimpl
    def jobkit_job_started(self, job, process):
        self.started.append((job, process))

    @hookimpl
    def jobkit_job_finished(self, result):
        self.finished.append(result)


class BrokenEvents:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def jobkit_job_enqueued(self, request):
        self.calls += 1
        raise RuntimeError("broken enqueued event")

    @hookimpl
    def jobkit_job_started(self, job, process):
        self.calls += 1
        raise RuntimeError("broken started event")

    @hookimpl
    def jobkit_job_finished(self, result):
        self.calls += 1
        raise RuntimeError("broken finished event")


def test_job_events_fire_with_the_right_records(jobkit_runtime, register_plugin):
    events = register_plugin(Events())

    ok = Noop(1).run_in_worker()
    declined = [Keyed("k").run_in_worker(), Keyed("k").run_in_worker()]
    many = enqueue_many([Noop(2), Fail()], retries=1)

    assert declined[1] is None
    assert events.enqueued == [ok, declined[0], *many]
    assert events.started == events.finished == []

    results = run_jobs(jobkit_runtime)

    assert len(results) == 5  # Noop, Keyed, Noop, Fail and its retry
    assert events.finished == results
    started_ids = [process.id for _, process in events.started]
    assert started_ids == [result.id for result in results]
    for job, process in events.started:
        assert job.job_process is process
        assert process.worker_id == results[0].worker_id
    assert [type(job).__name__ for job, _ in events.started] == [
        "Noop",
        "Keyed",
        "Noop",
        "Fail",
        "Fail",
    ]
    assert events.started[1][0].key == "k"
    # A retry is made by the worker, not enqueued by a producer: no enqueued event for it.
    assert len(events.enqueued) == 4


def test_a_raising_event_plugin_loses_no_result_and_others_still_get_the_event(
    jobkit_runtime, register_plugin, caplog
):
    first = register_plugin(Events())
    broken = register_plugin(BrokenEvents())
    last = register_plugin(Events())

    with caplog.at_level(logging.ERROR, logger="jobkit"):
        request = Noop().run_in_worker()
        assert request is not None
        (result,) = run_jobs(jobkit_runtime)

    assert result.status is Status.SUCCESSFUL
    assert get_result(request.id) == result
    assert broken.calls == 3
    for events in (first, last):
        assert events.enqueued == [request]
        assert [process.id for _, process in events.started] == [request.id]
        assert events.finished == [result]
    logged = caplog.text
    for hook in ("jobkit_job_enqueued", "jobkit_job_started", "jobkit_job_finished"):
        assert hook in logged
    assert "broken started event" in logged


# jobkit_connection -------------------------------------------------------------------------------


class CurrentConnection:
    def __init__(self, connection):
        self.connection = connection

    @hookimpl
    def jobkit_connection(self):
        return self.connection


@pytest.mark.parametrize("key", ["", "joined-key"], ids=["no key", "concurrency key"])
def test_connection_plugin_makes_run_in_worker_join_its_transaction(
    jobkit_runtime, register_plugin, key
):
    settings = jobkit_runtime.settings
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        register_plugin(CurrentConnection(connection))

        with connection.transaction():
            committed = Noop(1).run_in_worker(concurrency_key=key)
            assert committed is not None
            assert pending_ids(settings) == []
        assert pending_ids(settings) == [committed.id]

        with connection.transaction():
            assert Noop(2).run_in_worker(concurrency_key=key + "-2") is not None
            assert None not in enqueue_many([Noop(3), Noop(4)])
            raise psycopg.Rollback
        assert pending_ids(settings) == [committed.id]

    (result,) = run_jobs(jobkit_runtime)
    assert result.id == committed.id


def test_connection_plugin_answering_none_leaves_the_store_its_own(jobkit_runtime, register_plugin):
    register_plugin(CurrentConnection(None))
    request = Noop().run_in_worker()
    assert request is not None
    assert pending_ids(jobkit_runtime.settings) == [request.id]


# jobkit_driver_connection ------------------------------------------------------------------------


class Session:
    """Stands for an ORM session: it holds a psycopg connection but is not one."""

    def __init__(self, connection):
        self.connection = connection


class SessionAdapter:
    @hookimpl
    def jobkit_driver_connection(self, connection):
        return connection.connection if isinstance(connection, Session) else None


def test_driver_connection_plugin_lets_run_in_worker_take_a_session(
    jobkit_runtime, register_plugin
):
    settings = jobkit_runtime.settings
    register_plugin(SessionAdapter())
    with psycopg.connect(settings.database_url) as connection:
        session = Session(connection)
        committed = Noop(1).run_in_worker(connection=session)
        assert enqueue_many([Noop(2)], connection=session) != [None]
        assert pending_ids(settings) == []
        connection.commit()
        assert len(pending_ids(settings)) == 2

        Noop(3).run_in_worker(connection=session, concurrency_key="k")
        connection.rollback()
    assert pending_ids(settings)[0] == committed.id
    assert len(pending_ids(settings)) == 2


def test_driver_connection_plugin_adapts_what_jobkit_connection_answers(
    jobkit_runtime, register_plugin
):
    settings = jobkit_runtime.settings
    register_plugin(SessionAdapter())
    with psycopg.connect(settings.database_url) as connection:
        register_plugin(CurrentConnection(Session(connection)))
        request = Noop().run_in_worker()
        assert pending_ids(settings) == []
        connection.commit()
    assert pending_ids(settings) == [request.id]


# jobkit_register_jobs ----------------------------------------------------------------------------


def test_register_jobs_lets_a_plugin_provide_a_job_that_runs_by_name(jobkit_runtime_factory):
    plugin_name = "testapp.integration_jobs:jobs_plugin"
    runtime = jobkit_runtime_factory(plugins=[plugin_name])
    settings = runtime.settings
    create_ledger(settings)
    assert runtime.pm.has_plugin(plugin_name)
    fresh = JobRegistry()
    runtime.pm.hook.jobkit_register_jobs(registry=fresh)
    assert (PLUGIN_JOB_NAME, PluginProvidedJob) in fresh.items()
    assert runtime.registry.get(PLUGIN_JOB_NAME) is PluginProvidedJob

    request = PluginProvidedJob("enqueued").run_in_worker()
    assert request is not None and request.job_name == PLUGIN_JOB_NAME
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "INSERT INTO {}.requests (id, job_id, job_name, parameters, queue) "
                "VALUES (%(id)s, %(id)s, %(name)s, %(parameters)s, 'default')"
            ).format(sql.Identifier(settings.schema)),
            {
                "id": uuid.uuid4(),
                "name": PLUGIN_JOB_NAME,
                "parameters": '{"args": ["by name"], "kwargs": {}}',
            },
        )

    results = run_jobs(runtime)

    assert [r.status for r in results] == [Status.SUCCESSFUL, Status.SUCCESSFUL]
    assert results[0].id == request.id
    assert [(key, phase) for key, phase, _, _ in ledger(settings)] == [
        ("enqueued", "plugin job"),
        ("by name", "plugin job"),
    ]
