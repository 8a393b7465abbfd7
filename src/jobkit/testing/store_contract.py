"""The tests every Store must pass. A store plugin subclasses ``StoreContract`` and provides a
``store`` fixture returning a migrated, empty store::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, jobkit_runtime):
            return jobkit_runtime.store

The built-in Postgres store runs this suite in jobkit's own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import select
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from jobkit.errors import LeaseLost, TickBusy
from jobkit.records import (
    HELD_UNTIL,
    INPUTS_HEADER,
    PIPELINE_HEADER,
    WORKFLOW_HEADER,
    AttemptState,
    Completion,
    FlowLimit,
    JobFilter,
    JobProcess,
    JobRequest,
    LimitScope,
    Outcome,
    PipelineState,
    QueueCounts,
    Stage,
    Status,
    WorkerInfo,
    WorkflowLink,
)
from jobkit.store import AsyncStore, Store
from jobkit.testing.waiting import wait_for

T = TypeVar("T")
PARAMETERS = '{"args": [], "kwargs": {}}'


class _RolledBack(Exception):
    """Ends a contract test's transaction with a rollback."""


def make_request(**fields: Any) -> JobRequest:
    fields.setdefault("job_name", "contract.Job")
    fields.setdefault("parameters", PARAMETERS)
    return JobRequest(**fields)


def completion(process: Any, status: Status = Status.SUCCESSFUL, **outcome: Any) -> Completion:
    now = datetime.datetime.now(datetime.UTC)
    return Completion(
        process=process, outcome=Outcome(status=status, **outcome), started_at=now, ended_at=now
    )


class StoreContract:
    """Subclass and provide a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("provide a `store` fixture returning a migrated, empty store")

    @pytest.fixture
    def worker_id(self, store: Store) -> uuid.UUID:
        return self.register(store).id

    def register(self, store: Store, queues: tuple[str, ...] = ("default",)) -> WorkerInfo:
        return store.register_worker(
            WorkerInfo(id=uuid.uuid4(), hostname="contract", pid=1, queues=list(queues))
        )

    # Enqueue ---------------------------------------------------------------------------------

    def test_enqueue_stamps_requests_with_the_database_clock(self, store: Store) -> None:
        before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        (stored,) = store.enqueue([make_request(delay=60)], connection=None)
        assert stored.created_at is not None and stored.created_at > before
        assert stored.start_at is not None
        assert 59 <= (stored.start_at - stored.created_at).total_seconds() <= 61

    def test_enqueue_many_keeps_order_and_fields(self, store: Store, worker_id: uuid.UUID) -> None:
        requests = [
            make_request(
                queue="bulk",
                priority=3,
                retries=2,
                concurrency_key=f"k{i}",
                headers={"traceparent": f"t{i}"},
                source="here:1",
                timeout=12.5,
            )
            for i in range(50)
        ]
        store.enqueue(requests, connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["bulk"], limit=100)
        assert [p.id for p in claimed] == [r.id for r in requests]
        first = claimed[0]
        assert (first.priority, first.retries, first.concurrency_key) == (3, 2, "k0")
        assert first.headers == {"traceparent": "t0"}
        assert first.source == "here:1"
        assert first.timeout == 12.5
        assert first.job_id == first.id
        assert first.parameters.replace(" ", "") == PARAMETERS.replace(" ", "")

    def test_rolled_back_transaction_leaves_no_request(self, store: Store) -> None:
        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), store.transaction() as connection:
            store.enqueue([make_request()], connection=connection)
            raise Rollback
        assert store.stats().total.pending == 0

    def test_after_commit_calls_back_at_once_without_a_transaction(self, store: Store) -> None:
        called: list[str] = []
        store.enqueue([make_request()], connection=None)
        store.after_commit(None, lambda: called.append("own"))
        assert called == ["own"]

    def test_after_commit_waits_for_the_callers_commit(self, store: Store) -> None:
        committed = threading.Event()
        with store.transaction() as connection:
            store.enqueue([make_request()], connection=connection)
            store.after_commit(connection, committed.set)
            # Another transaction commits and is called back while this one is still open.
            probe = threading.Event()
            with store.transaction() as other:
                store.enqueue([make_request()], connection=other)
                store.after_commit(other, probe.set)
            assert probe.wait(10), "after_commit never called back after the commit"
            assert not committed.is_set()
        assert committed.wait(10), "after_commit never called back after the commit"

    def test_after_commit_never_calls_back_for_a_rollback(self, store: Store) -> None:
        class Rollback(Exception):
            pass

        rolled_back, committed = threading.Event(), threading.Event()
        with pytest.raises(Rollback), store.transaction() as connection:
            store.enqueue([make_request()], connection=connection)
            store.after_commit(connection, rolled_back.set)
            raise Rollback
        # A later transaction's callback comes back: the rolled-back one was decided by then.
        with store.transaction() as connection:
            store.enqueue([make_request()], connection=connection)
            store.after_commit(connection, committed.set)
        assert committed.wait(10)
        assert not rolled_back.is_set()

    def test_find_active_sees_requests_and_processes_by_name_and_key(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue(
            [
                make_request(job_name="a", concurrency_key="x"),
                make_request(job_name="a", concurrency_key="y"),
                make_request(job_name="b", concurrency_key="x"),
            ],
            connection=None,
        )
        store.claim(worker_id=worker_id, queues=["default"], limit=1)
        requests, processes = store.find_active(job_name="a", concurrency_key=None, connection=None)
        assert len(requests) + len(processes) == 2 and len(processes) == 1
        requests, processes = store.find_active(job_name="a", concurrency_key="y", connection=None)
        assert [r.concurrency_key for r in [*requests, *processes]] == ["y"]

    # Async producer side (a store that implements jobkit.store.AsyncStore) -------------------

    def run_async(self, store: Store, body: Callable[[AsyncStore], Awaitable[T]]) -> T:
        """Run ``body(store)`` on a new event loop, closing the store's async connections before
        the loop ends; skipped for a store without the async methods (the async API refuses
        such a store with a StoreError)."""
        if not isinstance(store, AsyncStore):
            pytest.skip("this store has no async methods (jobkit.store.AsyncStore)")

        async def run() -> T:
            try:
                return await body(store)
            finally:
                await store.aclose()

        return asyncio.run(run())

    def test_aenqueue_stores_what_enqueue_stores(self, store: Store, worker_id: uuid.UUID) -> None:
        requests = [
            make_request(queue="bulk", priority=3, concurrency_key=f"k{i}", delay=60 * i)
            for i in range(3)
        ]

        async def enqueue(async_store: AsyncStore) -> list[JobRequest]:
            return await async_store.aenqueue(requests, connection=None)

        stored = self.run_async(store, enqueue)
        assert [request.id for request in stored] == [request.id for request in requests]
        start_at, created_at = stored[1].start_at, stored[1].created_at
        assert start_at is not None and created_at is not None
        assert start_at - created_at == datetime.timedelta(seconds=60)
        (claimed,) = store.claim(worker_id=worker_id, queues=["bulk"], limit=10)
        assert (claimed.id, claimed.priority, claimed.concurrency_key) == (stored[0].id, 3, "k0")

    def test_an_async_transaction_decides_its_requests(self, store: Store) -> None:
        class Rollback(Exception):
            pass

        committed: list[str] = []

        async def enqueue(async_store: AsyncStore) -> JobRequest:
            with contextlib.suppress(Rollback):
                async with async_store.atransaction() as connection:
                    await async_store.aenqueue([make_request(job_name="a")], connection=connection)
                    raise Rollback
            async with async_store.atransaction() as connection:
                (kept,) = await async_store.aenqueue(
                    [make_request(job_name="a", concurrency_key="x")], connection=connection
                )
                # Seen inside the transaction, by key, before it commits.
                requests, processes = await async_store.afind_active(
                    job_name="a", concurrency_key="x", connection=connection
                )
                assert ([r.id for r in requests], processes) == ([kept.id], [])
                assert store.stats().total.pending == 0
                await async_store.aafter_commit(connection, lambda: committed.append("kept"))
            return kept

        kept = self.run_async(store, enqueue)
        assert store.stats().total.pending == 1
        assert store.find_active(job_name="a", concurrency_key=None, connection=None)[0] == [
            store.find_active(job_name="a", concurrency_key="x", connection=None)[0][0]
        ]
        assert store.get_result(kept.id) is None
        wait_for(lambda: committed == ["kept"], timeout=10)

    def test_aget_result_reads_what_get_result_reads(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (request,) = store.enqueue([make_request()], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)

        async def result(async_store: AsyncStore) -> Any:
            return await async_store.aget_result(request.id)

        assert self.run_async(store, result) is None
        store.finish(worker_id=worker_id, completions=[completion(process)])
        finished = self.run_async(store, result)
        assert finished is not None and finished.status is Status.SUCCESSFUL
        assert finished == store.get_result(request.id)

    # Claim -----------------------------------------------------------------------------------

    def test_claim_order_is_priority_then_start_then_enqueue_order(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        low_first = make_request(priority=-5)
        normal_first = make_request()
        normal_second = make_request()
        normal_older_start = make_request(start_at=past)
        high = make_request(priority=10)
        store.enqueue([low_first, normal_first, normal_second], connection=None)
        store.enqueue([normal_older_start, high], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=10)
        assert [p.id for p in claimed] == [
            high.id,
            normal_older_start.id,
            normal_first.id,
            normal_second.id,
            low_first.id,
        ]

    def test_claim_leaves_requests_whose_start_time_has_not_come(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(delay=30)], connection=None)
        assert store.claim(worker_id=worker_id, queues=["default"], limit=10) == []
        waiting = store.seconds_until_next_start(queues=["default"])
        assert waiting is not None and 25 < waiting <= 30
        assert store.seconds_until_next_start(queues=["other"]) is None

    def test_claim_takes_only_the_given_queues_and_limit(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(queue="a") for _ in range(5)], connection=None)
        store.enqueue([make_request(queue="b") for _ in range(5)], connection=None)
        store.enqueue([make_request(queue="c")], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["a", "b"], limit=7)
        assert len(claimed) == 7
        assert {p.queue for p in claimed} <= {"a", "b"}
        assert all(p.worker_id == worker_id for p in claimed)
        stats = store.stats()
        assert stats.queues["c"].pending == 1
        assert stats.total.running == 7

    def test_concurrent_claims_never_share_a_request(self, store: Store) -> None:
        requests = [make_request() for _ in range(400)]
        store.enqueue(requests, connection=None)
        workers = [self.register(store) for _ in range(4)]
        claimed: dict[uuid.UUID, list[uuid.UUID]] = {w.id: [] for w in workers}

        def claim_all(worker: WorkerInfo) -> None:
            while batch := store.claim(worker_id=worker.id, queues=["default"], limit=7):
                claimed[worker.id].extend(p.id for p in batch)

        threads = [threading.Thread(target=claim_all, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [attempt for ids in claimed.values() for attempt in ids]
        assert len(every) == len(set(every)) == len(requests)

    # Finish ----------------------------------------------------------------------------------

    def test_finish_turns_processes_into_results(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request(), make_request()], connection=None)
        first, second = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        report = store.finish(
            worker_id=worker_id,
            completions=[
                completion(first),
                completion(second, Status.ERRORED, error="Traceback...", error_type="ValueError"),
            ],
        )
        assert report.written == {first.id: None, second.id: None}
        assert report.lost_lease == []
        stats = store.stats()
        assert (stats.total.running, stats.total.successful, stats.total.errored) == (0, 1, 1)
        result = store.get_result(second.id)
        assert result is not None
        assert (result.status, result.error_type, result.worker_id) == (
            Status.ERRORED,
            "ValueError",
            worker_id,
        )

    def test_a_retry_is_a_new_request_pointing_back_to_its_result(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (original,) = store.enqueue([make_request(retries=2, concurrency_key="k")], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        report = store.finish(
            worker_id=worker_id,
            completions=[completion(process, Status.ERRORED, rerun_in=0.0)],
        )
        retry_id = report.written[process.id]
        assert retry_id is not None
        assert store.get_result(original.id) is None  # the job is pending again
        (retry,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        assert retry.id == retry_id
        assert (retry.retry_attempt, retry.retry_of, retry.job_id) == (1, process.id, original.id)
        assert retry.concurrency_key == "k"
        store.finish(worker_id=worker_id, completions=[completion(retry)])
        result = store.get_result(original.id)
        assert result is not None
        assert (result.id, result.status, result.retry_attempt) == (
            retry.id,
            Status.SUCCESSFUL,
            1,
        )

    def test_a_delayed_rerun_waits_and_a_deferral_may_keep_its_attempt(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(retries=1)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(
            worker_id=worker_id,
            completions=[
                completion(process, Status.DEFERRED, rerun_in=30.0, rerun_uses_retry=False)
            ],
        )
        assert store.claim(worker_id=worker_id, queues=["default"], limit=1) == []
        stats = store.stats()
        assert (stats.total.scheduled, stats.total.deferred) == (1, 1)
        requests, _ = store.find_active(
            job_name="contract.Job", concurrency_key=None, connection=None
        )
        assert requests[0].retry_attempt == 0

    def test_a_worker_that_lost_an_attempt_cannot_write_its_result(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request()], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        other = self.register(store)
        report = store.finish(worker_id=other.id, completions=[completion(process)])
        assert report.written == {} and report.lost_lease == [process.id]
        assert store.stats().total.successful == 0
        report = store.finish(worker_id=worker_id, completions=[completion(process)])
        assert list(report.written) == [process.id]
        again = store.finish(worker_id=worker_id, completions=[completion(process)])
        assert again.lost_lease == [process.id]
        assert store.stats().total.successful == 1

    def test_finish_and_claim_share_one_call(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request() for _ in range(3)], connection=None)
        (first,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        report, claimed = store.finish_and_claim(
            worker_id=worker_id, completions=[completion(first)], queues=["default"], limit=5
        )
        assert list(report.written) == [first.id]
        assert len(claimed) == 2

    def test_release_returns_unstarted_attempts_unchanged(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (request,) = store.enqueue([make_request(retries=3)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        assert store.release(worker_id=self.register(store).id, process_ids=[process.id]) == []
        assert store.release(worker_id=worker_id, process_ids=[process.id]) == [process.id]
        (later,) = store.enqueue([make_request(retries=3)], connection=None)
        again, after = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        assert (again.id, again.retry_attempt, again.created_at) == (
            request.id,
            0,
            request.created_at,
        )
        assert after.id == later.id  # the released job kept its place in line

    # Outputs ---------------------------------------------------------------------------------

    def test_a_successful_result_keeps_its_output(self, store: Store, worker_id: uuid.UUID) -> None:
        # The JSON value comes back, not always its text (the built-in store keeps jsonb).
        output = '{"rows":[1,2.5,"caf\\u00e9 \\ud83d\\ude00",null,true],"zeta":{"a":{}}}'
        store.enqueue([make_request(), make_request()], connection=None)
        with_output, without = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        report, _ = store.finish_and_claim(
            worker_id=worker_id,
            completions=[completion(with_output, output=output), completion(without)],
            queues=["default"],
            limit=1,
        )
        assert set(report.written) == {with_output.id, without.id}

        result = store.get_result(with_output.id)
        assert result is not None and result.output_json is not None
        assert json.loads(result.output_json) == json.loads(output)
        state = store.job_state(with_output.id)
        assert state is not None and state.result is not None
        assert json.loads(state.result.output_json or "null") == json.loads(output)
        (attempt,) = store.job_attempts(with_output.id)
        assert json.loads(attempt.output_json or "null") == json.loads(output)

        nothing = store.get_result(without.id)
        assert nothing is not None and nothing.output_json is None
        assert store.job_attempts(without.id)[0].output_json is None

    @pytest.mark.parametrize("output", ['"text"', "0", "[]", "false", '{"a":"x"}'])
    def test_every_json_value_is_an_output(
        self, store: Store, worker_id: uuid.UUID, output: str
    ) -> None:
        store.enqueue([make_request()], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(worker_id=worker_id, completions=[completion(process, output=output)])
        result = store.get_result(process.id)
        assert result is not None and result.output_json is not None
        assert json.loads(result.output_json) == json.loads(output)

    def test_an_output_is_read_from_the_job_s_last_result(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (request,) = store.enqueue([make_request(retries=1)], connection=None)
        (first,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(
            worker_id=worker_id, completions=[completion(first, Status.ERRORED, rerun_in=0.0)]
        )
        (second,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(worker_id=worker_id, completions=[completion(second, output="[42]")])
        result = store.get_result(request.id)
        assert result is not None
        assert (result.id, json.loads(result.output_json or "null")) == (second.id, [42])
        assert [a.output_json is None for a in store.job_attempts(request.id)] == [True, False]

    # Reading and housekeeping -----------------------------------------------------------------

    def test_get_result_is_none_while_pending_running_or_unknown(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (request,) = store.enqueue([make_request()], connection=None)
        assert store.get_result(request.id) is None
        store.claim(worker_id=worker_id, queues=["default"], limit=1)
        assert store.get_result(request.id) is None
        assert store.get_result(uuid.uuid4()) is None

    def test_job_state_follows_a_job_through_its_stages_and_retries(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (request,) = store.enqueue([make_request(retries=1)], connection=None)
        state = store.job_state(request.id)
        assert state is not None
        assert (state.stage, type(state.attempt), state.attempt.id) == (
            Stage.REQUESTED,
            JobRequest,
            request.id,
        )
        assert (state.job_id, state.result) == (request.id, None)

        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        state = store.job_state(request.id)
        assert state is not None and state.stage is Stage.PROCESSING
        assert isinstance(state.attempt, JobProcess) and state.attempt.worker_id == worker_id
        assert state.result is None

        report = store.finish(
            worker_id=worker_id, completions=[completion(process, Status.ERRORED, rerun_in=0.0)]
        )
        state = store.job_state(request.id)
        assert state is not None and state.stage is Stage.REQUESTED  # its retry waits
        assert (state.attempt.id, state.attempt.retry_attempt, state.job_id) == (
            report.written[process.id],
            1,
            request.id,
        )

        (retry,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(worker_id=worker_id, completions=[completion(retry)])
        for attempt_id in (request.id, retry.id):  # from any attempt, forward to the last
            state = store.job_state(attempt_id)
            assert state is not None and state.stage is Stage.FINISHED
            assert state.result is state.attempt
            assert (state.result.id, state.result.status, state.job_id) == (
                retry.id,
                Status.SUCCESSFUL,
                request.id,
            )

    def test_job_state_of_a_request_not_due_yet_is_requested(self, store: Store) -> None:
        (request,) = store.enqueue([make_request(delay=3600)], connection=None)
        state = store.job_state(request.id)
        assert state is not None and state.stage is Stage.REQUESTED
        assert state.attempt.start_at == request.start_at

    def test_job_state_is_none_for_an_id_never_stored(self, store: Store) -> None:
        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), store.transaction() as connection:
            (rolled_back,) = store.enqueue([make_request()], connection=connection)
            raise Rollback
        assert store.job_state(rolled_back.id) is None
        assert store.job_state(uuid.uuid4()) is None

    def test_clear_results_deletes_only_old_ones(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request(), make_request()], connection=None)
        old, new = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        old_completion = completion(old)
        old_completion.ended_at = long_ago
        store.finish(worker_id=worker_id, completions=[old_completion, completion(new)])
        assert store.clear_results(older_than=86400) == 1
        assert store.get_result(old.id) is None
        assert store.get_result(new.id) is not None

    def test_stats_age_the_oldest_pending_request_from_when_it_became_ready(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        now = store.database_now()
        store.enqueue(
            [
                make_request(queue="old", start_at=now - datetime.timedelta(seconds=120)),
                make_request(queue="old", start_at=now - datetime.timedelta(seconds=30)),
                make_request(queue="fresh"),
                make_request(queue="later", delay=3600),
                make_request(queue="claimed", start_at=now - datetime.timedelta(seconds=600)),
            ],
            connection=None,
        )
        store.claim(worker_id=worker_id, queues=["claimed"], limit=1)
        stats = store.stats(include_results=False)
        elapsed = (store.database_now() - now).total_seconds()
        ages = {name: counts.oldest_pending_age for name, counts in stats.queues.items()}
        # Since start_at (not created_at, which is now), and only of requests still pending.
        assert 120 <= ages["old"] <= 120 + elapsed
        assert 0 <= ages["fresh"] <= elapsed
        assert ages["later"] == 0.0  # nothing ready yet
        assert ages["claimed"] == 0.0  # running, not pending
        assert stats.total.oldest_pending_age == ages["old"]
        assert store.stats().queues["old"].oldest_pending_age >= ages["old"]
        assert store.stats(include_results=False).total.pending == 3

    def test_stats_of_named_queues_count_only_their_jobs(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue(
            [make_request(queue=name) for name in ("emails", "emails", "reports", "other")],
            connection=None,
        )
        (process,) = store.claim(worker_id=worker_id, queues=["reports"], limit=1)
        store.finish(worker_id=worker_id, completions=[completion(process)])
        store.enqueue([make_request(queue="reports")], connection=None)
        store.claim(worker_id=worker_id, queues=["reports"], limit=1)

        stats = store.stats(queues=["emails", "reports", "idle"])

        assert sorted(stats.queues) == ["emails", "reports"]
        assert stats.queues["emails"].pending == 2
        assert (stats.queues["reports"].running, stats.queues["reports"].successful) == (1, 1)
        assert (stats.total.pending, stats.total.running, stats.total.successful) == (2, 1, 1)
        assert store.stats(queues=[]).queues == {}
        assert store.stats().total.pending == 3

    def test_stats_count_results_through_upkeep_retention_and_purge(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        def results(queue: str) -> tuple[int, int, int]:
            counts = store.stats().queues.get(queue, QueueCounts())
            return counts.successful, counts.errored, counts.lost

        store.enqueue([make_request(queue="counted") for _ in range(5)], connection=None)
        processes = store.claim(worker_id=worker_id, queues=["counted"], limit=5)
        ended = [completion(p) for p in processes[:3]] + [completion(processes[3], Status.ERRORED)]
        for old in ended:
            old.ended_at = store.database_now() - datetime.timedelta(days=10)
        store.finish(worker_id=worker_id, completions=ended)
        assert results("counted") == (3, 1, 0)
        store.maintain()
        store.maintain()  # a second call folds nothing twice
        assert results("counted") == (3, 1, 0)
        store.finish(worker_id=worker_id, completions=[completion(processes[4], Status.LOST)])
        assert results("counted") == (3, 1, 1)

        assert store.clear_results(older_than=86400) == 4
        assert results("counted") == (0, 0, 1)
        store.maintain()
        assert results("counted") == (0, 0, 1)
        store.purge()
        assert "counted" not in store.stats().queues
        store.maintain()
        assert store.stats().queues == {}

    def test_stats_age_is_zero_when_nothing_is_pending(self, store: Store) -> None:
        stats = store.stats()
        assert stats.total.oldest_pending_age == 0.0 and stats.queues == {}

    def test_stats_count_workers_active_and_stale_by_the_rescue_rule(self, store: Store) -> None:
        beating = self.register(store)
        silent = self.register(store)
        stats = store.stats(heartbeat_timeout=3600)
        assert (stats.workers_active, stats.workers_stale) == (2, 0)
        # Stale means what a rescue sweep with the same timeout would call dead.
        wait_for(lambda: silent.id in store.dead_workers(heartbeat_timeout=1.0), timeout=10)
        store.heartbeat(worker_id=beating.id)
        stats = store.stats(heartbeat_timeout=1.0)
        assert (stats.workers_active, stats.workers_stale) == (1, 1)
        # Without a timeout the workers are not counted.
        stats = store.stats()
        assert (stats.workers_active, stats.workers_stale) == (0, 0)
        assert stats.as_dict()["workers_stale"] == 0

    def test_purge_deletes_every_job(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request() for _ in range(3)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        store.finish(worker_id=worker_id, completions=[completion(process)])
        assert store.purge() == 3
        assert store.stats().as_dict()["successful"] == 0

    # Schedule ticks --------------------------------------------------------------------------

    def test_a_tick_is_recorded_once_and_with_its_enqueue(self, store: Store) -> None:
        at = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)
        with store.transaction() as connection:
            assert store.record_tick(key="report", fire_at=at, connection=connection)
            assert not store.record_tick(key="report", fire_at=at, connection=connection)
        with store.transaction() as connection:
            assert not store.record_tick(key="report", fire_at=at, connection=connection)
            assert store.record_tick(key="other", fire_at=at, connection=connection)
        assert store.last_ticks(["report", "other", "never"]) == {"report": at, "other": at}

    def test_a_rolled_back_tick_can_be_recorded_again(self, store: Store) -> None:
        class Rollback(Exception):
            pass

        at = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)
        with pytest.raises(Rollback), store.transaction() as connection:
            assert store.record_tick(key="report", fire_at=at, connection=connection)
            raise Rollback
        assert store.last_ticks(["report"]) == {}
        with store.transaction() as connection:
            assert store.record_tick(key="report", fire_at=at, connection=connection)

    @pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
    def test_a_tick_another_transaction_is_recording_waits_for_it_or_is_busy(
        self, store: Store, first_commits: bool
    ) -> None:
        """A second caller while the first one's transaction is open either waits for its end
        or raises ``TickBusy`` at once and tries again after it: either way it gets the tick
        only if the first one rolled back."""
        at = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)
        first_holds = threading.Event()
        release_first = threading.Event()
        won: list[str] = []
        answers: list[bool | str] = []

        def first() -> None:
            with contextlib.suppress(_RolledBack), store.transaction() as connection:
                if store.record_tick(key="report", fire_at=at, connection=connection):
                    won.append("first")
                first_holds.set()
                release_first.wait(5)
                if not first_commits:
                    raise _RolledBack

        def second() -> None:
            try:
                with store.transaction() as connection:
                    answers.append(
                        store.record_tick(key="report", fire_at=at, connection=connection)
                    )
            except TickBusy:
                answers.append("busy")

        holder = threading.Thread(target=first)
        holder.start()
        assert first_holds.wait(5)
        contender = threading.Thread(target=second)
        contender.start()
        contender.join(0.3)
        assert contender.is_alive() or answers == ["busy"], (
            f"while the first caller's transaction is open, the second must wait for it or be "
            f"told TickBusy; it answered {answers}"
        )
        release_first.set()
        holder.join(5)
        contender.join(5)
        if answers == ["busy"]:  # tries again, as the scheduler does
            with store.transaction() as connection:
                answers[0] = store.record_tick(key="report", fire_at=at, connection=connection)
        assert won == ["first"]
        assert answers == [not first_commits]

    def test_clearing_keeps_each_keys_latest_tick(self, store: Store) -> None:
        now = store.database_now()
        long_ago = now - datetime.timedelta(days=30)
        older = long_ago - datetime.timedelta(days=1)
        with store.transaction() as connection:
            for key, at in (("a", older), ("a", long_ago), ("b", older), ("b", now)):
                store.record_tick(key=key, fire_at=at, connection=connection)
        store.clear_results(older_than=86400)
        with store.transaction() as connection:
            assert store.record_tick(key="a", fire_at=older, connection=connection)
            assert not store.record_tick(key="a", fire_at=long_ago, connection=connection)
            assert store.record_tick(key="b", fire_at=older, connection=connection)
        assert store.last_ticks(["a", "b"]) == {"a": long_ago, "b": now}
        assert store.purge() == 4
        assert store.last_ticks(["a", "b"]) == {}

    def test_workers_register_beat_and_leave(self, store: Store) -> None:
        worker = self.register(store, queues=("a", "b"))
        assert worker.started_at is not None and worker.last_heartbeat_at is not None
        beat = store.heartbeat(worker_id=worker.id)
        assert beat >= worker.last_heartbeat_at
        assert [w.queues for w in store.workers() if w.id == worker.id] == [["a", "b"]]
        store.unregister_worker(worker_id=worker.id)
        assert worker.id not in {w.id for w in store.workers()}

    def test_listener_wakes_when_an_enqueue_commits_not_before(self, store: Store) -> None:
        listener = store.listen(queues=["wake"])
        try:
            with store.transaction() as connection:
                store.enqueue([make_request(queue="wake")], connection=connection)
                assert not select.select([listener], [], [], 0.2)[0]
            assert select.select([listener], [], [], 5)[0]
            assert listener.drain() == {"wake"}
            store.enqueue([make_request(queue="not-listened")], connection=None)
            if select.select([listener], [], [], 0.5)[0]:
                assert listener.drain() == set()
        finally:
            listener.close()

    def test_a_listener_hears_its_own_probe_and_wakes_no_queue(self, store: Store) -> None:
        listener = store.listen(queues=["wake"])
        other = store.listen(queues=["wake"])
        try:
            assert listener.unheard_for() == 0.0
            listener.probe()
            assert listener.unheard_for() > 0.0
            assert select.select([listener], [], [], 5)[0]
            assert listener.drain() == set()
            assert listener.unheard_for() == 0.0
            # Another listener may receive the probe too, and makes nothing of it.
            if select.select([other], [], [], 0.5)[0]:
                assert other.drain() == set()
            assert other.unheard_for() == 0.0
        finally:
            listener.close()
            other.close()

    def test_migrate_again_changes_nothing(self, store: Store) -> None:
        assert store.migrate() == []
        store.check_schema()
        assert "CREATE TABLE" in store.migration_sql()

    def test_dead_workers_are_those_whose_beat_is_older_than_the_timeout(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(), make_request()], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        assert worker_id not in store.dead_workers(heartbeat_timeout=3600)
        wait_for(lambda: worker_id in store.dead_workers(heartbeat_timeout=0.001))
        dead = store.dead_workers(heartbeat_timeout=0.001)
        assert sorted(p.id for p in dead[worker_id]) == sorted(p.id for p in claimed)
        store.heartbeat(worker_id=worker_id)
        assert worker_id not in store.dead_workers(heartbeat_timeout=60)

    def test_a_rescue_locks_a_silent_worker_and_gets_its_processes(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request()], connection=None)
        (claimed,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        wait_for(lambda: worker_id in store.dead_workers(heartbeat_timeout=0.001))
        with store.transaction() as rescue:
            held = store.lock_dead_worker(
                worker_id=worker_id, heartbeat_timeout=0.001, connection=rescue
            )
            assert held is not None and [p.id for p in held] == [claimed.id]
            # A second rescue does not wait for the first: it leaves the worker alone.
            with store.transaction() as other:
                assert (
                    store.lock_dead_worker(
                        worker_id=worker_id, heartbeat_timeout=0.001, connection=other
                    )
                    is None
                )
            store.unregister_worker(worker_id=worker_id, connection=rescue)
        assert worker_id not in {worker.id for worker in store.workers()}

    def test_a_rescue_leaves_a_worker_that_beat_within_the_timeout(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.heartbeat(worker_id=worker_id)
        with store.transaction() as rescue:
            assert (
                store.lock_dead_worker(worker_id=worker_id, heartbeat_timeout=60, connection=rescue)
                is None
            )

    def test_a_rescue_rolled_back_changes_nothing(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request()], connection=None)
        (claimed,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        wait_for(lambda: worker_id in store.dead_workers(heartbeat_timeout=0.001))
        with pytest.raises(RuntimeError), store.transaction() as rescue:
            store.lock_dead_worker(worker_id=worker_id, heartbeat_timeout=0.001, connection=rescue)
            store.release(worker_id=worker_id, process_ids=[claimed.id], connection=rescue)
            store.unregister_worker(worker_id=worker_id, connection=rescue)
            raise RuntimeError("the rescuing worker cannot vouch any more")
        assert [p.id for p in store.dead_workers(heartbeat_timeout=0.001)[worker_id]] == [
            claimed.id
        ]

    def test_a_heartbeat_of_a_rescued_worker_raises_lease_lost(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.unregister_worker(worker_id=worker_id)
        with pytest.raises(LeaseLost):
            store.heartbeat(worker_id=worker_id)

    def test_a_result_keeps_the_attempts_timeout(self, store: Store, worker_id: uuid.UUID) -> None:
        store.enqueue([make_request(timeout=3.5, retries=1)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        report = store.finish(
            worker_id=worker_id, completions=[completion(process, Status.ERRORED, rerun_in=0.0)]
        )
        (retry,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        assert (process.timeout, retry.timeout) == (3.5, 3.5)
        assert retry.id == report.written[process.id]

    def test_database_now_is_the_database_clock(self, store: Store) -> None:
        worker = self.register(store)
        now = store.database_now()
        assert worker.started_at is not None
        assert worker.started_at <= now
        assert abs((now - datetime.datetime.now(datetime.UTC)).total_seconds()) < 60

    def test_location_is_words_for_the_workers_start_line(self, store: Store) -> None:
        location = store.location()
        assert isinstance(location, str) and location.strip()
        assert "\n" not in location

    def test_a_job_a_fault_interrupted_keeps_its_place_in_line(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (interrupted,) = store.enqueue([make_request(retries=1)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        (later,) = store.enqueue([make_request()], connection=None)
        store.finish(
            worker_id=worker_id, completions=[completion(process, Status.LOST, rerun_in=0.0)]
        )
        first, second = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        assert (first.retry_of, second.id) == (interrupted.id, later.id)
        assert first.start_at == interrupted.start_at

    def test_a_held_rerun_waits_until_released_and_keeps_its_place_in_line(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        (interrupted,) = store.enqueue([make_request(retries=1)], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        (later,) = store.enqueue([make_request()], connection=None)
        lost = completion(process, Status.LOST, rerun_in=0.0, hold_rerun=60.0)
        rerun_id = store.finish(worker_id=worker_id, completions=[lost]).written[process.id]
        assert rerun_id is not None
        # Held: only the later job is ready.
        assert [p.id for p in store.claim(worker_id=worker_id, queues=["default"], limit=2)] == [
            later.id
        ]
        in_line = process.start_at
        assert in_line is not None
        assert store.release_held_rerun(request_id=rerun_id, start_at=in_line)
        (rerun,) = store.claim(worker_id=worker_id, queues=["default"], limit=1)
        assert (rerun.id, rerun.start_at) == (rerun_id, interrupted.start_at)
        assert not store.release_held_rerun(request_id=rerun_id, start_at=in_line)

    def test_attempts_marked_started_are_told_apart_from_ones_never_run(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(), make_request()], connection=None)
        running, waiting = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        now = datetime.datetime.now(datetime.UTC)
        store.finish_and_claim(
            worker_id=worker_id, completions=[], queues=[], limit=0, started=[(running.id, now)]
        )
        wait_for(lambda: worker_id in store.dead_workers(heartbeat_timeout=0.001))
        held = {p.id: p.started_at for p in store.dead_workers(heartbeat_timeout=0.001)[worker_id]}
        assert held[waiting.id] is None
        marked = held[running.id]
        assert marked is not None
        assert abs((marked - now).total_seconds()) < 1

    # Operations ------------------------------------------------------------------------------

    def one_of_each(self, store: Store, worker_id: uuid.UUID) -> dict[str, uuid.UUID]:
        """A job in every state, by state: pending, scheduled, running, successful, an errored
        attempt that was retried (its retry still pending), a final errored one, and a lost one.
        Returns attempt ids."""
        ids: dict[str, uuid.UUID] = {}
        (running, successful, errored, retried, lost) = store.enqueue(
            [make_request(queue="ops", retries=1 if n == 3 else 0) for n in range(5)],
            connection=None,
        )
        claimed = store.claim(worker_id=worker_id, queues=["ops"], limit=5)
        assert [p.id for p in claimed] == [
            a.id for a in (running, successful, errored, retried, lost)
        ]
        report = store.finish(
            worker_id=worker_id,
            completions=[
                completion(claimed[1]),
                completion(claimed[2], Status.ERRORED, error="Traceback\nValueError: boom"),
                completion(
                    claimed[3], Status.ERRORED, error="Traceback\nKeyError: k", rerun_in=3600.0
                ),
                completion(claimed[4], Status.LOST, error_type="WorkerLost"),
            ],
        )
        (pending,) = store.enqueue(
            [make_request(queue="ops", job_name="contract.Other")], connection=None
        )
        (scheduled,) = store.enqueue([make_request(queue="later", delay=3600)], connection=None)
        retry_id = report.written[retried.id]
        assert retry_id is not None
        ids.update(
            running=running.id,
            successful=successful.id,
            errored=errored.id,
            retried=retried.id,
            retry=retry_id,
            lost=lost.id,
            pending=pending.id,
            scheduled=scheduled.id,
        )
        return ids

    def test_listings_filter_by_state_newest_first(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        ids = self.one_of_each(store, worker_id)

        def listed(*states: str, **criteria: Any) -> list[uuid.UUID]:
            found = store.list_attempts(filter=JobFilter(states=states, **criteria), limit=100)
            assert [a.at for a in found] == sorted((a.at for a in found), reverse=True)
            return [a.id for a in found]

        assert listed("pending") == [ids["pending"]]
        # The retry waits an hour: scheduled, like the job enqueued with a delay.
        assert set(listed("scheduled")) == {ids["retry"], ids["scheduled"]}
        assert set(listed("pending", "scheduled")) == {
            ids["pending"],
            ids["retry"],
            ids["scheduled"],
        }
        assert listed("running") == [ids["running"]]
        assert listed("successful") == [ids["successful"]]
        assert set(listed("errored")) == {ids["errored"], ids["retried"]}
        assert set(listed("failed")) == {ids["errored"], ids["lost"]}  # not the retried one
        assert set(listed("errored", "failed")) == {ids["errored"], ids["retried"], ids["lost"]}
        assert set(listed()) == set(ids.values())
        assert set(listed(queues=("later",))) == {ids["scheduled"]}
        assert listed(job_names=("contract.Other",)) == [ids["pending"]]
        assert listed(error_contains="valueerror") == [ids["errored"]]
        assert listed(error_contains="%") == []

    def test_a_listing_pages_with_a_cursor_and_counts(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(queue="paged") for _ in range(7)], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["paged"], limit=7)
        for process in claimed:  # one at a time, so each ends at its own moment
            store.finish(worker_id=worker_id, completions=[completion(process)])
        everything = JobFilter(states=("successful",), queues=("paged",))
        first = store.list_attempts(filter=everything, limit=3)
        second = store.list_attempts(filter=everything, limit=3, after=(first[-1].at, first[-1].id))
        third = store.list_attempts(
            filter=everything, limit=3, after=(second[-1].at, second[-1].id)
        )
        pages = [a.id for a in first + second + third]
        assert len(pages) == 7 and len(set(pages)) == 7
        assert pages == [a.id for a in store.list_attempts(filter=everything, limit=10)]
        assert store.count_attempts(filter=everything, cap=100) == (7, True)
        count, exact = store.count_attempts(filter=everything, cap=5)
        assert not exact and count >= 6

    def test_a_job_is_told_with_every_attempt_in_order(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        ids = self.one_of_each(store, worker_id)
        job = store.job_attempts(ids["retried"])
        assert [(a.id, a.state.value) for a in job] == [
            (ids["retried"], "errored"),
            (ids["retry"], "scheduled"),
        ]
        assert [(a.id, a.state.value) for a in store.job_attempts(ids["running"])] == [
            (ids["running"], "running")
        ]
        assert [a.id for a in store.job_attempts(ids["pending"])] == [ids["pending"]]
        assert store.job_attempts(uuid.uuid4()) == []

    def test_a_paused_queue_is_not_claimed_from_until_resumed(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(queue="held"), make_request(queue="free")], connection=None)
        pause, new = store.pause_queue(queue="held", source="contract")
        assert new and (pause.queue, pause.source) == ("held", "contract")
        assert store.pause_queue(queue="held", source="again") == (pause, False)
        assert store.paused_queues() == [pause]
        claimed = store.claim(worker_id=worker_id, queues=["held", "free"], limit=10)
        assert [p.queue for p in claimed] == ["free"]
        assert store.resume_queue(queue="held")
        assert not store.resume_queue(queue="held")
        assert store.paused_queues() == []
        (process,) = store.claim(worker_id=worker_id, queues=["held", "free"], limit=10)
        assert process.queue == "held"

    def test_cancelling_ends_a_waiting_attempt_and_asks_for_a_running_one(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        waiting, running, done = store.enqueue(
            [make_request(queue="c"), make_request(queue="c"), make_request(queue="c")],
            connection=None,
        )
        claimed = store.claim(worker_id=worker_id, queues=["c"], limit=3)
        store.release(worker_id=worker_id, process_ids=[claimed[0].id])  # back to waiting
        store.finish(worker_id=worker_id, completions=[completion(claimed[2])])

        assert store.cancel_attempt(attempt_id=waiting.id, source="ops", why="no") == (
            "cancelled",
            None,
        )
        [cancelled] = store.job_attempts(waiting.id)
        assert (cancelled.state, cancelled.error, cancelled.error_type) == (
            AttemptState.CANCELLED,
            "no",
            "CancelledByOperator",
        )
        assert cancelled.retry_request_id is None
        assert store.cancel_attempt(attempt_id=running.id, source="ops", why="no") == (
            "requested",
            worker_id,
        )
        assert store.cancel_requests(worker_id=worker_id) == {running.id: "ops"}
        assert store.cancel_attempt(attempt_id=done.id, source="ops", why="no") is None
        # A cancelled attempt that goes back unstarted ends CANCELLED instead of waiting again.
        assert store.release(worker_id=worker_id, process_ids=[running.id]) == []
        assert store.job_attempts(running.id)[-1].state is AttemptState.CANCELLED

    def test_a_retry_takes_a_final_result_once(self, store: Store, worker_id: uuid.UUID) -> None:
        first, second = store.enqueue([make_request(), make_request()], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=2)
        store.finish(
            worker_id=worker_id, completions=[completion(p, Status.ERRORED) for p in claimed]
        )
        with store.transaction() as one:
            taken = store.lock_for_retry([first.id, second.id], connection=one)
            assert sorted(r.id for r in taken) == sorted([first.id, second.id])
            with store.transaction() as other:  # taken by the first: skipped, not waited for
                assert store.lock_for_retry([first.id], connection=other) == []
            (rerun,) = store.enqueue(
                [make_request(job_id=first.id, retry_of=first.id)], connection=one
            )
            store.link_reruns([(first.id, rerun.id)], connection=one)
        with store.transaction() as later:
            assert [
                r.id for r in store.lock_for_retry([first.id, second.id], connection=later)
            ] == [second.id]
        assert [a.id for a in store.job_attempts(first.id)] == [first.id, rerun.id]

    def test_deleting_takes_a_jobs_results_or_its_waiting_request_never_a_running_attempt(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        retried, running, pending, done = store.enqueue(
            [make_request(queue="d") for _ in range(4)], connection=None
        )
        claimed = store.claim(worker_id=worker_id, queues=["d"], limit=4)
        store.release(worker_id=worker_id, process_ids=[pending.id])  # back to waiting
        store.finish(
            worker_id=worker_id,
            completions=[
                completion(claimed[0], Status.ERRORED, error="boom", rerun_in=3600.0),
                completion(claimed[3]),
            ],
        )
        assert len(store.job_attempts(retried.id)) == 2  # an errored result, a scheduled retry
        counts = store.stats().queues["d"]
        assert (counts.successful, counts.errored, counts.scheduled) == (1, 1, 1)

        assert store.delete_job(job_id=retried.id) == ("deleted", 2)
        assert store.job_attempts(retried.id) == []
        assert store.delete_job(job_id=running.id) == ("running", 0)
        assert [a.state for a in store.job_attempts(running.id)] == [AttemptState.RUNNING]
        assert store.delete_job(job_id=pending.id) == ("deleted", 1)
        assert store.claim(worker_id=worker_id, queues=["d"], limit=10) == []
        assert store.delete_job(job_id=done.id) == ("deleted", 1)
        assert store.delete_job(job_id=done.id) == ("deleted", 0)
        assert store.delete_job(job_id=uuid.uuid4()) == ("deleted", 0)
        # The result counts follow the deletions, before and after the store's upkeep.
        counts = store.stats().queues["d"]
        assert (counts.successful, counts.errored, counts.scheduled, counts.running) == (
            0,
            0,
            0,
            1,
        )
        store.maintain()
        counts = store.stats().queues["d"]
        assert (counts.successful, counts.errored, counts.running) == (0, 0, 1)

    def test_run_now_lets_a_scheduled_attempt_start_and_wakes_its_queue(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        scheduled, pending = store.enqueue(
            [make_request(queue="soon", delay=3600), make_request(queue="soon")], connection=None
        )
        (ready,) = store.claim(worker_id=worker_id, queues=["soon"], limit=10)
        assert ready.id == pending.id
        listener = store.listen(queues=["soon"])
        try:
            assert store.run_now(attempt_id=scheduled.id)
            assert select.select([listener], [], [], 5)[0]
            assert listener.drain() == {"soon"}
        finally:
            listener.close()
        assert not store.run_now(attempt_id=scheduled.id)  # ready already: left alone
        assert not store.run_now(attempt_id=pending.id)  # running
        assert not store.run_now(attempt_id=uuid.uuid4())
        (claimed,) = store.claim(worker_id=worker_id, queues=["soon"], limit=10)
        assert claimed.id == scheduled.id
        assert claimed.start_at is not None and claimed.start_at <= store.database_now()

    def test_results_are_counted_by_time_bucket_and_status(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        store.enqueue([make_request(queue="t") for _ in range(6)], connection=None)
        processes = store.claim(worker_id=worker_id, queues=["t"], limit=6)
        now = store.database_now()
        minute = datetime.timedelta(minutes=1)
        this_minute = now.replace(second=0, microsecond=0)
        second = datetime.timedelta(seconds=1)
        ended = [
            completion(processes[0]),
            completion(processes[1], Status.ERRORED, error="boom"),
            completion(processes[2], Status.ERRORED, error="boom"),
            completion(processes[3]),
            completion(processes[4], Status.LOST),
            completion(processes[5], Status.LOST),
        ]
        ended[0].ended_at = now
        ended[1].ended_at = ended[2].ended_at = this_minute - 2 * minute + second
        ended[3].ended_at = now - datetime.timedelta(hours=2)  # outside the hour
        ended[4].ended_at = this_minute - 59 * minute  # the first bucket of the hour
        ended[5].ended_at = this_minute - 59 * minute - second  # just before it
        store.finish(worker_id=worker_id, completions=ended)

        current, rows = store.count_results_by_time(buckets=60, bucket_seconds=60)
        assert current == this_minute
        assert rows == sorted(rows)
        assert rows == [
            (this_minute - 59 * minute, "LOST", 1),
            (this_minute - 2 * minute, "ERRORED", 2),
            (this_minute, "SUCCESSFUL", 1),
        ]
        current, rows = store.count_results_by_time(buckets=24, bucket_seconds=3600)
        assert current == now.replace(minute=0, second=0, microsecond=0)
        assert sum(count for _, _, count in rows) == 6  # all within the day

    # Workflows -------------------------------------------------------------------------------

    def enqueue_link(
        self, store: Store, members: int = 2, *, callback_on_failure: bool = True, **fields: Any
    ) -> WorkflowLink:
        """A workflow link of ``members`` requests in queue "wf" and its held callback,
        recorded and enqueued in one transaction."""
        link_id = uuid.uuid4()
        requests = [
            make_request(queue="wf", headers={WORKFLOW_HEADER: str(link_id)}, **fields)
            for _ in range(members)
        ]
        callback = make_request(
            queue="wf", headers={INPUTS_HEADER: str(link_id)}, start_at=HELD_UNTIL
        )
        link = WorkflowLink(
            id=link_id,
            root_id=link_id,
            name="contract",
            members=requests,
            callback=callback,
            callback_on_failure=callback_on_failure,
        )
        with store.transaction() as connection:
            store.create_workflows([link], connection=connection)
            store.enqueue([*requests, callback], connection=connection)
        return link

    def test_a_workflows_callback_is_released_when_its_last_member_ends(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        link = self.enqueue_link(store)
        assert link.callback is not None
        first, second = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        store.finish(worker_id=worker_id, completions=[completion(first, output='{"n": 1}')])
        assert store.claim(worker_id=worker_id, queues=["wf"], limit=10) == []  # held
        members = store.workflow_members(link.id)
        assert [(m.job_id, m.position, m.status) for m in members] == [
            (first.job_id, 0, Status.SUCCESSFUL),
            (second.job_id, 1, None),
        ]
        assert json.loads(members[0].output_json or "null") == {"n": 1}

        store.finish(worker_id=worker_id, completions=[completion(second, Status.ERRORED)])

        (callback,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert (callback.id, callback.headers) == (link.callback.id, link.callback.headers)
        statuses = [(m.status, m.failed) for m in store.workflow_members(link.id)]
        assert statuses == [(Status.SUCCESSFUL, False), (Status.ERRORED, True)]

    def test_a_workflow_member_with_a_rerun_has_not_ended(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        link = self.enqueue_link(store, 1, retries=1)
        (process,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        store.finish(
            worker_id=worker_id,
            completions=[completion(process, Status.LOST, rerun_in=0.0)],  # a rescue's, say
        )
        (retry,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert retry.job_id == process.job_id
        assert store.workflow_members(link.id)[0].status is None
        store.finish(worker_id=worker_id, completions=[completion(retry)])
        (callback,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert link.callback is not None and callback.id == link.callback.id

    def test_a_members_deferred_result_ends_it_unless_a_rerun_is_linked_in_its_transaction(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        # A deferral that needs a decision: the DEFERRED result is written first, then the rerun
        # (if should_enqueue allows it) is enqueued and linked, in the same transaction.
        link = self.enqueue_link(store, 2)
        rerun_later, declined = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        with store.transaction() as connection:
            store.finish(
                worker_id=worker_id,
                completions=[completion(rerun_later, Status.DEFERRED)],
                connection=connection,
            )
            (rerun,) = store.enqueue(
                [make_request(queue="wf", job_id=rerun_later.job_id, headers=rerun_later.headers)],
                connection=connection,
            )
            store.link_reruns([(rerun_later.id, rerun.id)], connection=connection)
        assert store.workflow_members(link.id)[0].status is None
        with store.transaction() as connection:  # should_enqueue declined: nothing follows it
            store.finish(
                worker_id=worker_id,
                completions=[completion(declined, Status.DEFERRED)],
                connection=connection,
            )
        assert store.workflow_members(link.id)[1].status is Status.DEFERRED
        (again,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert again.id == rerun.id
        store.finish(worker_id=worker_id, completions=[completion(again)])

        (callback,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert link.callback is not None and callback.id == link.callback.id
        statuses = [(m.status, m.failed) for m in store.workflow_members(link.id)]
        assert statuses == [(Status.SUCCESSFUL, False), (Status.DEFERRED, True)]

    def test_a_failed_member_holds_a_callback_that_waits_for_success_until_it_is_retried(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        link = self.enqueue_link(store, 1, callback_on_failure=False)
        (process,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        store.finish(worker_id=worker_id, completions=[completion(process, Status.LOST)])
        assert store.claim(worker_id=worker_id, queues=["wf"], limit=10) == []
        assert store.workflow_members(link.id)[0].status is Status.LOST

        with store.transaction() as connection:  # an operator's retry
            (failed,) = store.lock_for_retry([process.id], connection=connection)
            (rerun,) = store.enqueue(
                [make_request(queue="wf", job_id=failed.job_id, headers=failed.headers)],
                connection=connection,
            )
            store.link_reruns([(failed.id, rerun.id)], connection=connection)
        (again,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        store.finish(worker_id=worker_id, completions=[completion(again)])

        (callback,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert link.callback is not None and callback.id == link.callback.id
        assert store.workflow_members(link.id)[0].status is Status.SUCCESSFUL

    def test_a_cancelled_waiting_member_has_ended(self, store: Store, worker_id: uuid.UUID) -> None:
        link = self.enqueue_link(store, 1)
        (member,) = link.members
        assert store.cancel_attempt(attempt_id=member.id, source="ops", why="no") == (
            "cancelled",
            None,
        )
        (callback,) = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        assert link.callback is not None and callback.id == link.callback.id
        assert store.workflow_members(link.id)[0].status is Status.CANCELLED

    def test_two_transactions_ending_the_last_two_members_at_once_release_the_callback(
        self, store: Store
    ) -> None:
        link = self.enqueue_link(store, 2)
        one, other = self.register(store, ("wf",)), self.register(store, ("wf",))
        (first,) = store.claim(worker_id=one.id, queues=["wf"], limit=1)
        (second,) = store.claim(worker_id=other.id, queues=["wf"], limit=1)
        finished = threading.Event()

        def finish_second() -> None:
            store.finish(worker_id=other.id, completions=[completion(second)])
            finished.set()

        with store.transaction() as connection:
            store.finish(worker_id=one.id, completions=[completion(first)], connection=connection)
            # The second member ends while the first's transaction is open: whichever commits
            # last sees the other's count (or waits for it) rather than miss it. The racer gets
            # up to 0.3 s to commit first; a store that makes it wait for this transaction
            # instead is as right, so the wait's answer is not asserted.
            racer = threading.Thread(target=finish_second)
            racer.start()
            finished.wait(0.3)
        racer.join(timeout=10)
        assert finished.is_set()
        (callback,) = store.claim(worker_id=one.id, queues=["wf"], limit=10)
        assert link.callback is not None and callback.id == link.callback.id
        assert [m.status for m in store.workflow_members(link.id)] == [Status.SUCCESSFUL] * 2

    def test_workflow_members_of_an_unknown_link_are_none(self, store: Store) -> None:
        assert store.workflow_members(uuid.uuid4()) == []
        assert store.workflow(uuid.uuid4()) == []
        assert store.workflow_of_job(uuid.uuid4()) is None

    def test_a_workflow_is_told_link_by_link(self, store: Store, worker_id: uuid.UUID) -> None:
        link = self.enqueue_link(store, 2)
        assert link.callback is not None
        (state,) = store.workflow(link.id)
        assert (state.id, state.root_id, state.name) == (link.id, link.id, "contract")
        assert (state.unfinished, state.failed, state.released_at) == (2, 0, None)
        assert (state.callback_id, state.callback_on_failure) == (link.callback.id, True)
        assert [m.job_id for m in state.members] == [m.job_id for m in link.members]
        for job_id in [*(m.job_id for m in link.members), link.callback.job_id]:
            assert store.workflow_of_job(job_id) == link.id

        processes = store.claim(worker_id=worker_id, queues=["wf"], limit=10)
        store.finish(
            worker_id=worker_id,
            completions=[completion(processes[0]), completion(processes[1], Status.LOST)],
        )
        (state,) = store.workflow(link.id)
        assert (state.unfinished, state.failed) == (0, 1)
        assert state.released_at is not None

    def test_clearing_results_clears_the_workflows_that_ended_before_them(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        ended, waiting = self.enqueue_link(store, 1), self.enqueue_link(store, 1)
        process = next(
            p
            for p in store.claim(worker_id=worker_id, queues=["wf"], limit=10)
            if p.id == ended.members[0].id
        )
        store.finish(worker_id=worker_id, completions=[completion(process)])
        store.clear_results(older_than=3600)
        assert len(store.workflow_members(ended.id)) == 1
        store.clear_results(older_than=0)
        assert store.workflow_members(ended.id) == []
        assert len(store.workflow_members(waiting.id)) == 1  # its member has not ended

    # Pipelines -------------------------------------------------------------------------------

    def enqueue_pipeline(self, store: Store, workspace: dict[str, Any]) -> JobRequest:
        request = make_request(queue="pipe", retries=1, headers={PIPELINE_HEADER: "1"})
        pipeline = PipelineState(
            job_id=request.job_id,
            job_name=request.job_name,
            step="first",
            workspace_json=json.dumps(workspace),
        )
        with store.transaction() as connection:
            store.enqueue([request], connection=connection)
            store.create_pipeline(pipeline, connection=connection)
        return request

    def test_a_pipeline_saves_its_workspace_with_each_steps_result(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        request = self.enqueue_pipeline(store, {"user_id": 42})
        saved = store.pipeline(request.job_id)
        assert saved is not None
        assert (saved.job_name, saved.step, json.loads(saved.workspace_json)) == (
            "contract.Job",
            "first",
            {"user_id": 42},
        )

        def step(status: Status, output: object, **outcome: Any) -> None:
            (process,) = store.claim(worker_id=worker_id, queues=["pipe"], limit=1)
            text = None if output is None else json.dumps(output)
            store.finish(
                worker_id=worker_id,
                completions=[completion(process, status, output=text, **outcome)],
            )

        def saved_state() -> tuple[str | None, object]:
            state = store.pipeline(request.job_id)
            assert state is not None
            return state.step, json.loads(state.workspace_json)

        second = {"step": "second", "workspace": {"user_id": 42, "n": 1}}
        step(Status.DEFERRED, second, rerun_in=0.0, rerun_uses_retry=False)
        assert saved_state() == ("second", {"user_id": 42, "n": 1})
        # A failure, and a deferral of its own (no output), leave the saved step as it was.
        step(Status.ERRORED, None, rerun_in=0.0)
        step(Status.DEFERRED, None, rerun_in=0.0, rerun_uses_retry=False)
        assert saved_state() == ("second", {"user_id": 42, "n": 1})
        step(Status.SUCCESSFUL, {"step": None, "workspace": {"user_id": 42, "n": 2}})
        assert saved_state() == (None, {"user_id": 42, "n": 2})

    def test_pipelines_are_found_by_workspace_content(self, store: Store) -> None:
        mine = self.enqueue_pipeline(store, {"user_id": 42, "team": {"id": 7, "name": "a"}})
        other = self.enqueue_pipeline(store, {"user_id": 43, "team": {"id": 7}})

        def found(workspace: dict[str, Any], limit: int = 10) -> list[uuid.UUID]:
            pipelines = store.find_pipelines(workspace_json=json.dumps(workspace), limit=limit)
            return [pipeline.job_id for pipeline in pipelines]

        assert found({"user_id": 42}) == [mine.job_id]
        assert sorted(found({"team": {"id": 7}})) == sorted([mine.job_id, other.job_id])
        assert len(found({"team": {"id": 7}}, limit=1)) == 1
        assert found({"user_id": "42"}) == []
        assert found({}) != []
        assert store.pipeline(uuid.uuid4()) is None

    def test_pipelines_are_counted_at_their_step_until_they_end(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        assert store.pipeline_steps() == {}
        first = self.enqueue_pipeline(store, {})
        self.enqueue_pipeline(store, {})
        assert store.pipeline_steps() == {"contract.Job": {"first": 2}}
        process = next(
            p
            for p in store.claim(worker_id=worker_id, queues=["pipe"], limit=10)
            if p.id == first.id
        )
        output = json.dumps({"step": None, "workspace": {}})
        store.finish(worker_id=worker_id, completions=[completion(process, output=output)])
        assert store.pipeline_steps() == {"contract.Job": {"first": 1}}

    # Flow limits -----------------------------------------------------------------------------

    def test_max_running_holds_back_only_the_limited_requests(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        limits = [FlowLimit(scope=LimitScope.JOB_NAME, name="contract.Limited", max_running=2)]
        store.enqueue(
            [make_request(job_name="contract.Limited") for _ in range(5)], connection=None
        )
        store.enqueue([make_request() for _ in range(3)], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits)
        # The limited requests came first; the two it allows are taken, and the rest of the
        # queue behind the three it holds back.
        assert (
            sorted(p.job_name for p in claimed) == ["contract.Job"] * 3 + ["contract.Limited"] * 2
        )
        assert store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits) == []
        # Without the limits a claim takes them: limits live in the claimers' settings.
        limited = [p for p in claimed if p.job_name == "contract.Limited"]
        report, again = store.finish_and_claim(
            worker_id=worker_id,
            completions=[completion(limited[0])],
            queues=["default"],
            limit=10,
            limits=limits,
        )
        assert list(report.written) == [limited[0].id]
        assert [p.job_name for p in again] == ["contract.Limited"]  # the freed slot, at once
        assert store.claim(worker_id=worker_id, queues=["default"], limit=10) != []

    def test_a_queue_limit_holds_its_queue_and_not_the_others(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        limits = [FlowLimit(scope=LimitScope.QUEUE, name="narrow", max_running=1)]
        store.enqueue([make_request(queue="narrow") for _ in range(3)], connection=None)
        store.enqueue([make_request(queue="wide") for _ in range(3)], connection=None)
        claimed = store.claim(
            worker_id=worker_id, queues=["narrow", "wide"], limit=10, limits=limits
        )
        assert sorted(p.queue for p in claimed) == ["narrow"] + ["wide"] * 3

    def test_a_concurrency_key_limit_counts_every_job_name_with_the_key(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        limits = [FlowLimit(scope=LimitScope.CONCURRENCY_KEY, name="tenant-7", max_running=2)]
        store.enqueue(
            [
                make_request(job_name=f"contract.Job{n}", concurrency_key="tenant-7")
                for n in range(4)
            ]
            + [make_request(concurrency_key="tenant-8")],
            connection=None,
        )
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits)
        assert sorted(p.concurrency_key for p in claimed) == ["tenant-7", "tenant-7", "tenant-8"]

    def test_max_starts_allows_that_many_claims_per_window(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        name = f"contract.Rated{uuid.uuid4().hex}"
        limits = [FlowLimit(scope=LimitScope.JOB_NAME, name=name, max_starts=3, per=1.0)]
        store.enqueue([make_request(job_name=name) for _ in range(5)], connection=None)
        first = store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits)
        claimed_at = time.monotonic()
        assert len(first) == 3
        # Finishing them frees no start: the window counts claims, not running attempts.
        store.finish(worker_id=worker_id, completions=[completion(p) for p in first])
        assert store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits) == []
        reopens = store.seconds_until_next_start(queues=["default"], limits=limits)
        assert reopens is not None and 0 < reopens <= 1.0
        assert store.seconds_until_next_start(queues=["default"]) is None
        second = wait_for(
            lambda: store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits)
        )
        assert time.monotonic() - claimed_at >= 1.0 - 0.05  # the database's clock, not ours
        assert len(second) == 2

    def test_a_rate_limit_a_claim_found_full_is_due_at_once_once_it_has_room(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        """A worker asks when to claim again after a claim that came up short, ``since`` that
        claim. If the window reopened before it asked, the answer is 0 seconds: None would
        leave it to its next poll while the job waits."""
        name = f"contract.Rated{uuid.uuid4().hex}"
        limits = [FlowLimit(scope=LimitScope.JOB_NAME, name=name, max_starts=2, per=0.5)]
        store.enqueue([make_request(job_name=name) for _ in range(3)], connection=None)
        claimed = store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits)
        assert len(claimed) == 2
        since = store.database_now()
        assert store.claim(worker_id=worker_id, queues=["default"], limit=10, limits=limits) == []

        def until_next(since: datetime.datetime | None) -> float | None:
            return store.seconds_until_next_start(queues=["default"], limits=limits, since=since)

        reopens = until_next(since)
        assert reopens is not None and 0 < reopens <= 0.5
        wait_for(lambda: until_next(None) is None, message="the window to reopen")

        assert until_next(since) == 0
        assert until_next(store.database_now()) is None  # a claim now would find room

    def test_concurrent_claims_never_exceed_a_limit(self, store: Store) -> None:
        name = f"contract.Crowded{uuid.uuid4().hex}"
        limits = [
            FlowLimit(scope=LimitScope.JOB_NAME, name=name, max_running=3),
            FlowLimit(scope=LimitScope.QUEUE, name="default", max_starts=40, per=60.0),
        ]
        store.enqueue([make_request(job_name=name) for _ in range(60)], connection=None)
        workers = [self.register(store) for _ in range(4)]
        seen: list[int] = []
        # Every round, all four claim before any finishes, so the limit is reached for sure.
        round_ends = threading.Barrier(len(workers), timeout=30)

        def claim_and_finish(worker: WorkerInfo) -> None:
            for _ in range(20):
                batch = store.claim(worker_id=worker.id, queues=["default"], limit=2, limits=limits)
                round_ends.wait()
                _, processing = store.find_active(
                    job_name=name, concurrency_key=None, connection=None
                )
                seen.append(len(processing))
                round_ends.wait()
                store.finish(worker_id=worker.id, completions=[completion(p) for p in batch])

        threads = [threading.Thread(target=claim_and_finish, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert max(seen) == 3  # reached, never passed
        assert store.stats().total.pending == 20  # 40 starts in the window, then no more

    def test_a_rescue_frees_a_dead_workers_running_slots(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        limits = [FlowLimit(scope=LimitScope.QUEUE, name="default", max_running=1)]
        store.enqueue([make_request(), make_request()], connection=None)
        (held,) = store.claim(worker_id=worker_id, queues=["default"], limit=5, limits=limits)
        other = self.register(store).id
        assert store.claim(worker_id=other, queues=["default"], limit=5, limits=limits) == []
        wait_for(lambda: worker_id in store.dead_workers(heartbeat_timeout=0.001))
        with store.transaction() as rescue:
            assert store.lock_dead_worker(
                worker_id=worker_id, heartbeat_timeout=0.001, connection=rescue
            )
            store.finish(
                worker_id=worker_id, completions=[completion(held, Status.LOST)], connection=rescue
            )
            store.unregister_worker(worker_id=worker_id, connection=rescue)
        assert len(store.claim(worker_id=other, queues=["default"], limit=5, limits=limits)) == 1

    def test_finishing_a_limited_attempt_wakes_its_queue(
        self, store: Store, worker_id: uuid.UUID
    ) -> None:
        limits = [FlowLimit(scope=LimitScope.QUEUE, name="gated", max_running=1)]
        store.enqueue([make_request(queue="gated")], connection=None)
        (process,) = store.claim(worker_id=worker_id, queues=["gated"], limit=5, limits=limits)
        listener = store.listen(queues=["gated"])
        try:
            store.finish_and_claim(
                worker_id=worker_id,
                completions=[completion(process)],
                queues=[],
                limit=0,
                limits=limits,
            )
            assert select.select([listener], [], [], 5)[0]
            assert listener.drain() == {"gated"}
        finally:
            listener.close()
