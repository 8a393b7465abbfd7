"""Concurrency keys: one pending-or-running job per class and key, retries included, released
however the job ends; custom rules; and the lock is a plugin that can be replaced."""

import datetime
import uuid

import pytest

from jobkit import PluginError, Status
from jobkit.records import Completion, Outcome, WorkerInfo
from jobkit.testing import run_jobs
from testapp import key_jobs
from testapp.key_jobs import DeferOnce, Keyed


@pytest.fixture(autouse=True)
def allow_reruns():
    key_jobs.REFUSE_RERUNS.clear()
    yield
    key_jobs.REFUSE_RERUNS.clear()


def held(key: str) -> bool:
    """Whether a new job with ``key`` is refused."""
    return Keyed(key).run_in_worker() is None


def end_claimed_attempt(runtime, status, **outcome):
    """Claim the one ready attempt and record it with ``status`` as a worker would."""
    store = runtime.store
    worker = store.register_worker(
        WorkerInfo(id=uuid.uuid4(), hostname="test", pid=1, queues=["default"])
    )
    (process,) = store.claim(worker_id=worker.id, queues=["default"], limit=1)
    now = datetime.datetime.now(datetime.UTC)
    completion = Completion(
        process=process,
        outcome=Outcome(status=status, **outcome),
        started_at=now,
        ended_at=now,
    )
    report, _ = runtime.finish_and_claim(worker_id=worker.id, completions=[completion])
    return report.written[process.id]


def test_a_pending_job_holds_its_key_per_class(jobkit_runtime, caplog):
    caplog.set_level("DEBUG", logger="jobkit")
    assert Keyed("k").run_in_worker() is not None
    assert Keyed("k").run_in_worker() is None
    assert "not enqueued: should_enqueue() declined (concurrency key 'k')" in caplog.text
    assert Keyed("other").run_in_worker() is not None
    assert DeferOnce("k").run_in_worker() is not None  # another class, same key


def test_a_running_job_holds_its_key(jobkit_runtime):
    Keyed("k").run_in_worker()
    jobkit_runtime.store.register_worker(
        WorkerInfo(id=(worker := uuid.uuid4()), hostname="t", pid=1, queues=["default"])
    )
    jobkit_runtime.store.claim(worker_id=worker, queues=["default"], limit=1)
    assert held("k")


@pytest.mark.parametrize("fail", [False, True], ids=["successful", "errored"])
def test_the_key_is_free_once_the_job_ends(jobkit_runtime, fail):
    Keyed("k", fail=fail).run_in_worker()
    (result,) = run_jobs(jobkit_runtime)
    assert result.status is (Status.ERRORED if fail else Status.SUCCESSFUL)
    assert not held("k")


def test_a_retry_keeps_the_key_until_the_job_ends(jobkit_runtime):
    Keyed("k", fail=True).run_in_worker(retries=1, delay=0)
    first = end_claimed_attempt(jobkit_runtime, Status.ERRORED, rerun_in=30.0)
    assert first is not None  # the retry waits 30 s, pending
    assert held("k")


@pytest.mark.parametrize("status", [Status.LOST, Status.CANCELLED])
def test_an_interrupted_job_keeps_its_key_while_it_runs_again(jobkit_runtime, status):
    Keyed("k").run_in_worker(retries=1)
    rerun = end_claimed_attempt(
        jobkit_runtime, status, rerun_in=0.0, rerun_uses_retry=status is Status.LOST
    )
    assert rerun is not None and held("k")
    (result,) = run_jobs(jobkit_runtime)
    assert result.status is Status.SUCCESSFUL
    assert not held("k")


def test_a_lost_job_without_retries_frees_its_key(jobkit_runtime):
    Keyed("k").run_in_worker()
    assert end_claimed_attempt(jobkit_runtime, Status.LOST) is None
    assert not held("k")


def test_a_deferral_frees_the_key_and_takes_it_again_under_the_lock(jobkit_runtime):
    first = DeferOnce("k").run_in_worker()
    results = run_jobs(jobkit_runtime)
    assert [r.status for r in results] == [Status.DEFERRED, Status.SUCCESSFUL]
    assert results[0].retry_request_id == results[1].id
    assert jobkit_runtime.get_result(first.id).status is Status.SUCCESSFUL
    assert DeferOnce("k").run_in_worker() is not None


def test_a_deferral_that_should_enqueue_declines_stays_deferred(jobkit_runtime):
    first = DeferOnce("k").run_in_worker()
    key_jobs.REFUSE_RERUNS.set()
    (result,) = run_jobs(jobkit_runtime)
    assert (result.status, result.retry_request_id) == (Status.DEFERRED, None)
    assert jobkit_runtime.get_result(first.id).status is Status.DEFERRED
    assert not held("k")


def test_a_plugin_can_replace_the_built_in_lock(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(
        disable_plugins=["jobkit.builtin.locks"], plugins=["testapp.key_jobs:counting_lock"]
    )
    key_jobs.counting_lock.taken.clear()
    assert Keyed("k").run_in_worker() is not None
    assert Keyed("k").run_in_worker() is None
    assert key_jobs.counting_lock.taken == [("keys.Keyed", "k"), ("keys.Keyed", "k")]
    assert runtime.store.stats().total.pending == 1


def test_without_any_lock_plugin_a_keyed_enqueue_is_a_clear_error(jobkit_runtime_factory):
    runtime = jobkit_runtime_factory(disable_plugins=["jobkit.builtin.locks"])
    with pytest.raises(PluginError, match=r"no plugin provides an enqueue lock for keys\.Keyed"):
        Keyed("k").run_in_worker()
    assert Keyed("").run_in_worker() is not None  # no key, no lock needed
    assert runtime.store.stats().total.pending == 1
