"""Enqueueing against the real database: run_in_worker, delays, transactional enqueue,
enqueue_many, concurrency keys and should_enqueue, parameter errors, get_result and job_state."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
import uuid

import attrs
import psycopg
import pytest
from psycopg import sql

from jobkit import (
    JobRequest,
    ParameterError,
    QueueDepth,
    Stage,
    Status,
    UnknownJobError,
    enqueue_many,
    get_result,
    hookimpl,
    job_state,
    queue_depths,
)
from jobkit.records import Completion, WorkerInfo
from jobkit.testing import run_jobs
from testapp.integration_jobs import (
    AtMostTwo,
    CountsByKey,
    Echo,
    Keyed,
    OnePerUser,
    SlowRetryFail,
    Tuned,
)
from testapp.jobs import Fail, Noop, Record, create_ledger, ledger_table

UTC = datetime.UTC


# Helpers -----------------------------------------------------------------------------------------


def pending_ids(settings) -> list[uuid.UUID]:
    """Committed requests, in the order they were inserted (seen from a connection of our own)."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        query = sql.SQL("SELECT id FROM {}.requests ORDER BY seq").format(
            sql.Identifier(settings.schema)
        )
        return [row[0] for row in connection.execute(query)]


def as_stored(request: JobRequest) -> JobRequest:
    """``request`` as the database gives it back: jsonb re-renders the parameters' JSON text."""
    return attrs.evolve(request, parameters=json.dumps(json.loads(request.parameters)))


def register_worker(runtime, queues=("default",)) -> uuid.UUID:
    worker = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=1, queues=list(queues))
    return runtime.store.register_worker(worker).id


def finish(runtime, worker_id, process) -> None:
    """Run a process claimed with the store directly and record its outcome."""
    started = runtime.store.database_now()
    outcome = runtime.run_attempt(process)
    completion = Completion(
        process=process,
        outcome=outcome,
        started_at=started,
        ended_at=runtime.store.database_now(),
    )
    report = runtime.store.finish(worker_id=worker_id, completions=[completion])
    assert process.id in report.written


def run_until(runtime, count: int, timeout: float = 10.0) -> list:
    """Call run_jobs until ``count`` results came back, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    results: list = []
    while len(results) < count:
        assert time.monotonic() < deadline, f"only {len(results)} of {count} jobs ran in time"
        results += run_jobs(runtime)
        if len(results) < count:
            time.sleep(0.02)
    return results


# run_in_worker -----------------------------------------------------------------------------------


def test_run_in_worker_returns_the_stored_request(jobkit_runtime):
    before = jobkit_runtime.store.database_now()
    line = sys._getframe().f_lineno + 1
    request = Noop(7).run_in_worker()
    after = jobkit_runtime.store.database_now()

    assert isinstance(request, JobRequest)
    assert isinstance(request.id, uuid.UUID)
    assert request.job_id == request.id
    assert request.job_name == "testapp.jobs.Noop"
    assert json.loads(request.parameters) == {"args": [7], "kwargs": {}}
    assert (request.queue, request.priority, request.retries, request.concurrency_key) == (
        "default",
        0,
        0,
        "",
    )
    assert (request.retry_attempt, request.retry_of, request.headers) == (0, None, {})
    assert request.created_at is not None and before <= request.created_at <= after
    assert request.start_at == request.created_at
    assert request.source == f"{__file__}:{line}"
    assert pending_ids(jobkit_runtime.settings) == [request.id]
    (stored,) = Noop().get_requested_jobs()
    assert stored == as_stored(request)


def test_run_in_worker_takes_defaults_from_the_class_and_overrides_from_the_call(
    jobkit_runtime,
):
    defaults = Tuned("a").run_in_worker()
    overridden = Tuned("b").run_in_worker(
        queue="other", priority=-3, retries=0, concurrency_key="custom"
    )
    assert defaults is not None and overridden is not None
    assert (defaults.queue, defaults.priority, defaults.retries) == ("tuned", 5, 2)
    assert defaults.concurrency_key == "tuned-a"
    assert (overridden.queue, overridden.priority, overridden.retries) == ("other", -3, 0)
    assert overridden.concurrency_key == "custom"
    stored = {request.id: request for request in Tuned().get_requested_jobs()}
    assert stored == {defaults.id: as_stored(defaults), overridden.id: as_stored(overridden)}


# Delays ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "delay", [90, 90.0, datetime.timedelta(seconds=90)], ids=["int", "float", "timedelta"]
)
def test_delay_in_seconds_sets_start_at_from_the_database_clock(jobkit_runtime, delay):
    request = Noop().run_in_worker(delay=delay)
    assert request is not None and request.created_at is not None
    assert request.start_at - request.created_at == datetime.timedelta(seconds=90)
    (stored,) = Noop().get_requested_jobs()
    assert stored.start_at == request.start_at
    assert run_jobs(jobkit_runtime) == []
    assert pending_ids(jobkit_runtime.settings) == [request.id]


def test_delay_as_an_aware_datetime_is_the_start_time(jobkit_runtime):
    tz = datetime.timezone(datetime.timedelta(hours=-7))
    start = datetime.datetime.now(tz).replace(microsecond=250_000) + datetime.timedelta(hours=1)
    request = Noop().run_in_worker(delay=start)
    assert request is not None and request.start_at is not None
    assert abs(request.start_at - start) < datetime.timedelta(milliseconds=1)
    assert run_jobs(jobkit_runtime) == []


def test_naive_datetime_delay_is_refused(jobkit_runtime):
    with pytest.raises(ValueError, match="timezone-aware"):
        Noop().run_in_worker(delay=datetime.datetime.now() + datetime.timedelta(minutes=1))
    assert pending_ids(jobkit_runtime.settings) == []


def test_delayed_jobs_are_claimed_only_once_their_start_passes(jobkit_runtime):
    settings = jobkit_runtime.settings
    create_ledger(settings)
    soon = datetime.datetime.now(UTC) + datetime.timedelta(seconds=1)
    requests = {
        "int": Record("int").run_in_worker(delay=1),
        "timedelta": Record("timedelta").run_in_worker(delay=datetime.timedelta(seconds=1)),
        "datetime": Record("datetime").run_in_worker(delay=soon),
    }
    assert run_jobs(jobkit_runtime) == []

    results = run_until(jobkit_runtime, 3)

    assert sorted(result.id for result in results) == sorted(r.id for r in requests.values())
    assert all(result.status is Status.SUCCESSFUL for result in results)
    # The ledger's times are the database's clock, the one start_at is compared with.
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        query = sql.SQL("SELECT key, at FROM {} WHERE phase = 'start'").format(
            ledger_table(settings)
        )
        ran_at = dict(connection.execute(query).fetchall())
    assert ran_at.keys() == requests.keys()
    for key, request in requests.items():
        assert ran_at[key] >= request.start_at, key


# Transactional enqueue ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "tx-key"], ids=["no key", "concurrency key"])
def test_enqueue_in_a_transaction_is_claimable_only_after_commit(jobkit_runtime, key):
    settings = jobkit_runtime.settings
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        with connection.transaction():
            request = Noop().run_in_worker(connection=connection, concurrency_key=key)
            assert request is not None
            assert pending_ids(settings) == []
            assert run_jobs(jobkit_runtime) == []
        assert pending_ids(settings) == [request.id]
    (result,) = run_jobs(jobkit_runtime)
    assert result.id == request.id and result.status is Status.SUCCESSFUL


@pytest.mark.parametrize("key", ["", "tx-key"], ids=["no key", "concurrency key"])
def test_enqueue_in_a_transaction_that_rolls_back_leaves_no_request(jobkit_runtime, key):
    settings = jobkit_runtime.settings
    with (
        psycopg.connect(settings.database_url, autocommit=True) as connection,
        connection.transaction(),
    ):
        assert Noop().run_in_worker(connection=connection, concurrency_key=key) is not None
        raise psycopg.Rollback
    assert pending_ids(settings) == []
    assert run_jobs(jobkit_runtime) == []
    # The rolled-back request does not hold its concurrency key.
    assert Noop().run_in_worker(concurrency_key=key) is not None


def test_enqueue_on_a_non_autocommit_connection_follows_its_transaction(jobkit_runtime):
    settings = jobkit_runtime.settings
    with psycopg.connect(settings.database_url) as connection:
        rolled_back = Noop(1).run_in_worker(connection=connection)
        assert rolled_back is not None
        connection.rollback()
        committed = Noop(2).run_in_worker(connection=connection)
        assert committed is not None
        assert pending_ids(settings) == []
        connection.commit()
    assert pending_ids(settings) == [committed.id]


# enqueue_many ------------------------------------------------------------------------------------


def test_enqueue_many_stores_ten_thousand_jobs_in_one_insert_in_order(jobkit_runtime, monkeypatch):
    store = jobkit_runtime.store
    inserts = []
    original_enqueue = store.enqueue

    def counting_enqueue(requests, **kwargs):
        inserts.append(len(requests))
        return original_enqueue(requests, **kwargs)

    monkeypatch.setattr(store, "enqueue", counting_enqueue)

    requests = enqueue_many([Noop(number) for number in range(10_000)])

    assert inserts == [10_000]
    assert len(requests) == 10_000
    assert all(isinstance(request, JobRequest) for request in requests)
    numbers = [json.loads(request.parameters)["args"][0] for request in requests]
    assert numbers == list(range(10_000))
    assert len({request.id for request in requests}) == 10_000
    assert pending_ids(jobkit_runtime.settings) == [request.id for request in requests]

    claimed = store.claim(
        worker_id=register_worker(jobkit_runtime), queues=["default"], limit=10_000
    )
    assert [process.id for process in claimed] == [request.id for request in requests]


def test_enqueue_many_resolves_each_jobs_own_defaults(jobkit_runtime):
    jobs = [Noop(1), Tuned("a"), Record("r"), Tuned()]
    requests = enqueue_many(jobs)
    summary = [(r.job_name, r.queue, r.priority, r.retries, r.concurrency_key) for r in requests]
    assert summary == [
        ("testapp.jobs.Noop", "default", 0, 0, ""),
        ("testapp.integration_jobs.Tuned", "tuned", 5, 2, "tuned-a"),
        ("testapp.Record", "default", 0, 0, ""),
        ("testapp.integration_jobs.Tuned", "tuned", 5, 2, ""),
    ]
    assert pending_ids(jobkit_runtime.settings) == [request.id for request in requests]
    assert len({request.source for request in requests}) == 1
    assert requests[0].source.startswith(f"{__file__}:")


def test_enqueue_many_options_override_every_jobs_defaults(jobkit_runtime):
    requests = enqueue_many([Noop(1), Tuned("a")], queue="bulk", priority=9, retries=4)
    assert [(r.queue, r.priority, r.retries) for r in requests] == [("bulk", 9, 4)] * 2
    # concurrency_key is not an option of enqueue_many: each job keeps its own.
    assert [r.concurrency_key for r in requests] == ["", "tuned-a"]


def test_enqueue_many_returns_none_in_the_place_of_each_declined_job(jobkit_runtime):
    earlier = Keyed("c").run_in_worker()
    assert earlier is not None
    jobs = [Keyed("a"), Keyed("a"), Noop(1), Keyed("b"), Keyed("c"), Noop(2), Keyed("a")]

    requests = enqueue_many(jobs)

    declined = [request is None for request in requests]
    assert declined == [False, True, False, False, True, False, True]
    stored = [request.id for request in requests if request is not None]
    assert pending_ids(jobkit_runtime.settings) == [earlier.id, *stored]
    claimed = jobkit_runtime.store.claim(
        worker_id=register_worker(jobkit_runtime), queues=["default"], limit=100
    )
    assert [process.id for process in claimed] == [earlier.id, *stored]


def test_enqueue_many_of_nothing_stores_nothing(jobkit_runtime):
    assert enqueue_many([]) == []
    assert pending_ids(jobkit_runtime.settings) == []


# Concurrency keys and should_enqueue -------------------------------------------------------------


def test_concurrency_key_allows_one_pending_job_per_class_and_key(jobkit_runtime):
    first = Noop(1).run_in_worker(concurrency_key="k")
    assert first is not None
    assert Noop(2).run_in_worker(concurrency_key="k") is None
    other_key = Noop(3).run_in_worker(concurrency_key="other")
    other_class = Keyed("k").run_in_worker()
    unkeyed = Noop(4).run_in_worker()
    assert None not in (other_key, other_class, unkeyed)
    assert pending_ids(jobkit_runtime.settings) == [
        first.id,
        other_key.id,
        other_class.id,
        unkeyed.id,
    ]


def test_concurrency_key_holds_while_the_job_runs_and_is_free_after_it_finishes(
    jobkit_runtime,
):
    first = Keyed("k").run_in_worker()
    assert first is not None
    worker_id = register_worker(jobkit_runtime)
    (process,) = jobkit_runtime.store.claim(worker_id=worker_id, queues=["default"], limit=1)

    assert Keyed("k").get_processing_jobs("k") == [process]
    assert Keyed("k").run_in_worker() is None

    finish(jobkit_runtime, worker_id, process)
    again = Keyed("k").run_in_worker()
    assert again is not None and again.id != first.id


def test_should_enqueue_override_counts_pending_and_processing_jobs(jobkit_runtime):
    first = AtMostTwo().run_in_worker()
    second = AtMostTwo().run_in_worker()
    assert first is not None and second is not None
    assert AtMostTwo().run_in_worker() is None
    assert [r.id for r in AtMostTwo().get_requested_jobs()] == [first.id, second.id]

    worker_id = register_worker(jobkit_runtime)
    (process,) = jobkit_runtime.store.claim(worker_id=worker_id, queues=["default"], limit=1)
    assert process.id == first.id
    assert [p.id for p in AtMostTwo().get_processing_jobs()] == [first.id]
    assert AtMostTwo().run_in_worker() is None

    finish(jobkit_runtime, worker_id, process)
    assert AtMostTwo().run_in_worker() is not None
    assert AtMostTwo().run_in_worker() is None
    assert enqueue_many([AtMostTwo(), Noop()])[0] is None


def test_the_plain_jobs_faq_counts_with_count(jobkit_runtime):
    first = OnePerUser(123).run_in_worker()
    assert first is not None
    assert OnePerUser(123).run_in_worker() is None  # pending
    worker_id = register_worker(jobkit_runtime)
    (process,) = jobkit_runtime.store.claim(worker_id=worker_id, queues=["default"], limit=1)
    assert OnePerUser(123).run_in_worker() is None  # processing
    assert OnePerUser(7).run_in_worker() is not None  # another user

    assert OnePerUser(123).get_processing_jobs("user-123").count() == 1
    assert OnePerUser(123).get_processing_jobs("user-123").count(process) == 1
    assert OnePerUser(123).get_requested_jobs().count() == 1
    finish(jobkit_runtime, worker_id, process)
    assert OnePerUser(123).run_in_worker() is not None


def test_inside_should_enqueue_the_getters_answer_from_one_read(jobkit_runtime, monkeypatch):
    store = jobkit_runtime.store
    store.enqueue([jobkit_runtime.build_request(CountsByKey(key)) for key in ("a", "b", "a")])
    worker_id = register_worker(jobkit_runtime)
    store.claim(worker_id=worker_id, queues=["default"], limit=1)  # the first "a" runs
    reads = []
    find_active = store.find_active
    monkeypatch.setattr(
        store, "find_active", lambda **kw: reads.append(kw["concurrency_key"]) or find_active(**kw)
    )
    CountsByKey.seen.clear()

    assert CountsByKey("a").run_in_worker() is None
    assert CountsByKey.seen == [
        ("get_processing_jobs", None, ["a"]),
        ("get_requested_jobs", None, ["b", "a"]),
        ("get_requested_jobs", "a", ["a"]),
        ("get_processing_jobs", "a", ["a"]),
    ]
    assert reads == [None]  # one read of every key, which answered for "a" too

    CountsByKey("b").run_in_worker()
    assert reads == [None, None]  # the next decision reads again
    assert CountsByKey("c").get_requested_jobs("a") and reads == [None, None, "a"]  # outside


class RefuseEverything:
    def __init__(self):
        self.asked = []

    @hookimpl
    def jobkit_should_enqueue(self, job, request):
        self.asked.append((type(job).__name__, request.job_name))
        return False


class NoOpinion:
    def __init__(self):
        self.asked = 0

    @hookimpl
    def jobkit_should_enqueue(self, job, request):
        self.asked += 1


def test_should_enqueue_plugin_returning_false_refuses_every_job(jobkit_runtime, register_plugin):
    plugin = register_plugin(RefuseEverything())

    assert Noop().run_in_worker() is None
    assert Keyed("k").run_in_worker() is None
    assert AtMostTwo().run_in_worker() is None
    assert enqueue_many([Noop(1), Keyed("j"), Tuned()]) == [None, None, None]

    assert pending_ids(jobkit_runtime.settings) == []
    assert plugin.asked[0] == ("Noop", "testapp.jobs.Noop")
    assert len(plugin.asked) == 6


def test_should_enqueue_plugin_returning_none_lets_the_job_decide(jobkit_runtime, register_plugin):
    plugin = register_plugin(NoOpinion())

    assert Noop().run_in_worker() is not None
    assert Keyed("k").run_in_worker() is not None
    assert Keyed("k").run_in_worker() is None  # the job's own rule still applies
    assert len(pending_ids(jobkit_runtime.settings)) == 2
    assert plugin.asked == 2  # asked only after the job's own should_enqueue allowed it


# Parameters --------------------------------------------------------------------------------------


def test_unserializable_parameter_fails_at_enqueue_and_inserts_nothing(jobkit_runtime):
    with pytest.raises(ParameterError) as raised:
        Echo(object()).run_in_worker()
    message = str(raised.value)
    assert "Echo" in message and "'value'" in message and "object" in message
    assert pending_ids(jobkit_runtime.settings) == []


def test_wrongly_typed_parameter_fails_at_enqueue_naming_the_annotation(jobkit_runtime):
    with pytest.raises(ParameterError) as raised:
        Noop("seven").run_in_worker()
    message = str(raised.value)
    assert "Noop" in message and "'number'" in message
    assert "int" in message and "str" in message
    assert pending_ids(jobkit_runtime.settings) == []


def test_unserializable_parameter_in_enqueue_many_inserts_none_of_the_jobs(jobkit_runtime):
    with pytest.raises(ParameterError, match="Echo"):
        enqueue_many([Noop(1), Echo({"nested": [1, {2, 3}]}), Noop(2)])
    assert pending_ids(jobkit_runtime.settings) == []


# get_result --------------------------------------------------------------------------------------


def test_get_result_is_none_while_pending_and_running_and_the_result_after(jobkit_runtime):
    request = Noop().run_in_worker()
    assert request is not None
    assert get_result(request.id) is None

    worker_id = register_worker(jobkit_runtime)
    (process,) = jobkit_runtime.store.claim(worker_id=worker_id, queues=["default"], limit=1)
    assert process.id == request.id
    assert get_result(request.id) is None

    finish(jobkit_runtime, worker_id, process)
    result = get_result(request.id)
    assert result is not None
    assert (result.id, result.job_id, result.status) == (request.id, request.id, Status.SUCCESSFUL)
    assert result.worker_id == worker_id
    assert get_result(str(request.id)) == result


def test_get_result_of_an_unknown_id_is_none(jobkit_runtime):
    assert get_result(uuid.uuid4()) is None


def test_get_result_follows_retries_to_the_last_result(jobkit_runtime):
    request = Fail(times=2).run_in_worker(retries=3)
    assert request is not None

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [Status.ERRORED, Status.ERRORED, Status.SUCCESSFUL]
    result = get_result(request.id)
    assert result is not None
    assert result.status is Status.SUCCESSFUL
    assert result.retry_attempt == 2
    assert result.id == results[-1].id
    assert result.job_id == request.id
    # Any attempt's id leads to the same last result.
    assert get_result(results[1].id) == result


def test_get_result_is_none_while_a_retry_is_pending(jobkit_runtime):
    settings = jobkit_runtime.settings
    request = SlowRetryFail().run_in_worker(retries=1)
    assert request is not None
    (first,) = run_jobs(jobkit_runtime)
    assert first.status is Status.ERRORED and first.retry_request_id is not None
    assert get_result(request.id) is None

    # Make the retry due now rather than in a minute.
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("UPDATE {}.requests SET start_at = now() WHERE id = %s").format(
                sql.Identifier(settings.schema)
            ),
            (first.retry_request_id,),
        )
    (last,) = run_jobs(jobkit_runtime)
    result = get_result(request.id)
    assert result == last
    assert (result.status, result.retry_attempt, result.retry_request_id) == (
        Status.ERRORED,
        1,
        None,
    )


def test_keyed_enqueue_on_an_idle_non_autocommit_connection_rolls_back_with_it(jobkit_runtime):
    with psycopg.connect(jobkit_runtime.settings.database_url) as connection:
        assert Noop().run_in_worker(connection=connection, concurrency_key="k") is not None
        connection.rollback()
    assert pending_ids(jobkit_runtime.settings) == []


# job_state ---------------------------------------------------------------------------------------


def wait_until_finished(attempt_id, timeout: float = 10.0):
    """A polling loop as an app writes one: until the job is FINISHED, or the id is unknown."""
    deadline = time.monotonic() + timeout
    while (state := job_state(attempt_id)).stage is not Stage.FINISHED:
        assert time.monotonic() < deadline, f"{attempt_id} still {state.stage} after {timeout} s"
        time.sleep(0.02)
    return state.result


def test_job_state_tells_a_rolled_back_id_from_a_pending_one(jobkit_runtime):
    settings = jobkit_runtime.settings
    with (
        psycopg.connect(settings.database_url, autocommit=True) as connection,
        connection.transaction(),
    ):
        rolled_back = Noop(1).run_in_worker(connection=connection)
        assert rolled_back is not None
        raise psycopg.Rollback
    pending = Noop(2).run_in_worker()
    assert pending is not None

    assert get_result(rolled_back.id) is None and get_result(pending.id) is None
    assert job_state(pending.id).stage is Stage.REQUESTED
    with pytest.raises(UnknownJobError) as raised:
        wait_until_finished(rolled_back.id)
    assert str(raised.value) == (
        f"no job has an attempt with id {rolled_back.id} (in schema {settings.schema}): it was "
        f"never enqueued there, the transaction that enqueued it rolled back, or its results "
        f"were deleted (the results_retention setting, jobkit clear)"
    )


def test_job_state_follows_a_job_to_its_final_result(jobkit_runtime):
    request = Fail(times=1).run_in_worker(retries=1)
    assert request is not None
    state = job_state(str(request.id))
    assert (state.stage, state.attempt, state.job_id, state.result) == (
        Stage.REQUESTED,
        as_stored(request),
        request.id,
        None,
    )

    first, retry = run_jobs(jobkit_runtime)

    result = wait_until_finished(request.id)
    assert result is not None
    assert (result.id, result.status, result.retry_attempt) == (retry.id, Status.SUCCESSFUL, 1)
    assert first.status is Status.ERRORED


def test_job_state_of_something_that_is_not_an_id_says_what_it_takes(jobkit_runtime):
    with pytest.raises(ParameterError, match=r"^job_state\(\) takes an attempt id, a UUID"):
        job_state("42")


# queue_depths ------------------------------------------------------------------------------------


def test_queue_depths_count_waiting_and_running_jobs_per_queue(jobkit_runtime):
    enqueue_many([Noop(1), Noop(2)], queue="emails")
    Noop(3).run_in_worker(queue="emails", delay=3600)
    enqueue_many([Noop(4), Noop(5)], queue="reports")
    worker_id = register_worker(jobkit_runtime)
    jobkit_runtime.store.claim(worker_id=worker_id, queues=["reports"], limit=1)

    depths = queue_depths()

    assert list(depths) == ["emails", "reports"]
    assert (depths["emails"].pending, depths["emails"].scheduled) == (2, 1)
    assert (depths["reports"].pending, depths["reports"].running) == (1, 1)
    assert depths["emails"].oldest_pending_age >= 0.0


def test_queue_depths_of_named_queues_keep_their_order_and_count_an_empty_one(jobkit_runtime):
    Noop(1).run_in_worker(queue="emails")
    Noop(2).run_in_worker(queue="reports")

    depths = queue_depths(["reports", "idle"])

    assert list(depths) == ["reports", "idle"]
    assert depths["reports"].pending == 1
    assert depths["idle"] == QueueDepth()


def test_queue_depths_say_which_queues_are_paused(jobkit_runtime):
    Noop(1).run_in_worker(queue="emails")
    jobkit_runtime.store.pause_queue(queue="emails", source="test")
    jobkit_runtime.store.pause_queue(queue="idle", source="test")

    depths = queue_depths(["emails", "reports"])

    assert (depths["emails"].pending, depths["emails"].paused) == (1, True)
    assert depths["reports"] == QueueDepth()  # the paused idle queue is not among those asked
    assert queue_depths()["idle"].paused


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("emails", "queues is a list of queue names, such as ['emails']; got 'emails'"),
        (["bad name"], "a queue name is letters, digits and _.:- (at most 128 characters), got"),
    ],
)
def test_queue_depths_refuse_what_is_not_a_list_of_queue_names(jobkit_runtime, queues, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        queue_depths(queues)
