"""Rescue of dead workers' jobs, from seeded state: rows that look like a worker that died, one
sweep, and the state of every row after it. (The real kills are in tests/acceptance.)"""

import datetime

import pytest

from jobkit import Status, hookimpl
from jobkit.records import Completion, Outcome
from testapp import rescue_jobs
from testapp.dead_workers import age, claim_and_start, register
from testapp.rescue_jobs import Careful, Clumsy


@pytest.fixture(autouse=True)
def forget_aborted():
    rescue_jobs.ABORTED.clear()


def test_jobs_of_a_worker_that_stopped_beating_are_lost_and_retried(jobkit_runtime):
    store = jobkit_runtime.store
    with_retry = Careful("retry").run_in_worker(retries=1)
    without = Careful("last").run_in_worker()
    dead = register(store)
    claim_and_start(store, dead)
    age(store, "workers", "last_heartbeat_at", dead, 10)

    rescued = jobkit_runtime.rescue_dead_workers()

    by_id = {result.id: result for result in rescued}
    assert set(by_id) == {with_retry.id, without.id}
    assert {r.status for r in rescued} == {Status.LOST}
    assert {r.error_type for r in rescued} == {"WorkerLost"}
    assert f"worker {dead} sent no heartbeat for more than 5 s" in by_id[without.id].error
    assert by_id[without.id].retry_request_id is None
    retry_id = by_id[with_retry.id].retry_request_id
    assert retry_id is not None
    requests, processes = store.find_active(
        job_name="testapp.rescue_jobs.Careful", concurrency_key=None, connection=None
    )
    assert [(r.id, r.retry_attempt) for r in requests] == [(retry_id, 1)]
    assert requests[0].start_at - requests[0].created_at >= datetime.timedelta(seconds=29)
    assert processes == []
    assert dead not in {w.id for w in store.workers()}
    assert sorted(rescue_jobs.ABORTED) == [("last", "LOST"), ("retry", "LOST")]


def test_a_worker_that_beats_is_left_alone(jobkit_runtime):
    store = jobkit_runtime.store
    Careful("alive").run_in_worker()
    alive = register(store, beat_seconds_ago=2)
    store.claim(worker_id=alive, queues=["default"], limit=1)

    assert jobkit_runtime.rescue_dead_workers() == []
    assert store.stats().total.running == 1
    assert alive in {w.id for w in store.workers()}


def test_a_dead_worker_without_jobs_is_removed(jobkit_runtime):
    store = jobkit_runtime.store
    dead = register(store, beat_seconds_ago=60)
    assert jobkit_runtime.rescue_dead_workers() == []
    assert dead not in {w.id for w in store.workers()}


def test_processes_whose_worker_row_is_gone_are_rescued(jobkit_runtime):
    store = jobkit_runtime.store
    request = Careful("orphan").run_in_worker()
    gone = register(store)
    claim_and_start(store, gone, limit=1)
    store.unregister_worker(worker_id=gone)
    assert jobkit_runtime.rescue_dead_workers() == []  # claimed just now: give it time

    age(store, "processes", "claimed_at", gone, 10)
    (result,) = jobkit_runtime.rescue_dead_workers()
    assert (result.id, result.status) == (request.id, Status.LOST)


def test_a_job_finished_before_the_rescue_keeps_its_result(jobkit_runtime):
    store = jobkit_runtime.store
    request = Careful("finished").run_in_worker()
    slow = register(store)
    (process,) = store.claim(worker_id=slow, queues=["default"], limit=1)
    found = store.dead_workers(heartbeat_timeout=0.001)
    assert [p.id for p in found[slow]] == [request.id]
    # The worker writes its result between the rescuer's scan and its write.
    now = datetime.datetime.now(datetime.UTC)
    store.finish(
        worker_id=slow,
        completions=[
            Completion(
                process=process,
                outcome=Outcome(status=Status.SUCCESSFUL),
                started_at=now,
                ended_at=now,
            )
        ],
    )
    age(store, "workers", "last_heartbeat_at", slow, 10)

    assert jobkit_runtime.rescue_dead_workers() == []
    result = store.get_result(request.id)
    assert result is not None and result.status is Status.SUCCESSFUL
    assert rescue_jobs.ABORTED == []


def test_an_on_aborted_that_raises_is_logged_and_the_result_stays(jobkit_runtime, caplog):
    store = jobkit_runtime.store
    request = Clumsy().run_in_worker()
    dead = register(store)
    claim_and_start(store, dead, limit=1)
    age(store, "workers", "last_heartbeat_at", dead, 10)

    (result,) = jobkit_runtime.rescue_dead_workers()

    assert result.id == request.id
    assert store.get_result(request.id).status is Status.LOST
    assert f"on_aborted of testapp.rescue_jobs.Clumsy {request.id} failed" in caplog.text
    assert "RuntimeError: cleanup failed" in caplog.text


def test_rescue_announces_finished_and_aborted_events(jobkit_runtime, register_plugin):
    seen = []

    class Listener:
        @hookimpl
        def jobkit_job_finished(self, result):
            seen.append(("finished", result.status))

        @hookimpl
        def jobkit_job_aborted(self, result):
            seen.append(("aborted", result.status))

    register_plugin(Listener())
    store = jobkit_runtime.store
    Careful("events").run_in_worker()
    dead = register(store)
    claim_and_start(store, dead, limit=1)
    age(store, "workers", "last_heartbeat_at", dead, 10)

    jobkit_runtime.rescue_dead_workers()

    assert seen == [("finished", Status.LOST), ("aborted", Status.LOST)]


def test_jobs_a_dead_worker_never_started_go_back_to_the_queue_unchanged(jobkit_runtime):
    store = jobkit_runtime.store
    started = Careful("started").run_in_worker()
    waiting = Careful("waiting").run_in_worker()  # no retries: LOST would be its end
    dead = register(store)
    running, _ = store.claim(worker_id=dead, queues=["default"], limit=2)
    assert running.id == started.id
    now = datetime.datetime.now(datetime.UTC)
    store.finish_and_claim(
        worker_id=dead, completions=[], queues=[], limit=0, started=[(running.id, now)]
    )
    age(store, "workers", "last_heartbeat_at", dead, 10)

    (lost,) = jobkit_runtime.rescue_dead_workers()

    assert (lost.id, lost.status) == (started.id, Status.LOST)
    requests, processes = store.find_active(
        job_name="testapp.rescue_jobs.Careful", concurrency_key=None, connection=None
    )
    assert [(r.id, r.retry_attempt) for r in requests] == [(waiting.id, 0)]
    assert processes == []
    assert rescue_jobs.ABORTED == [("started", "LOST")]
