"""Workflows against the real database with run_jobs: a group's callback receives its members'
outputs in order once all have ended (failed ones told apart, retries waited for), a chain passes
each output on and stops at a failure until an operator's retry succeeds, an operator's cancel of
a member counts as its end, and a workflow is enqueued whole or not at all."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit import Chain, Group, ParameterError, Status, get_result
from jobkit.errors import ParameterTypeError
from jobkit.testing import run_jobs
from testapp.jobs import Collect, Fail, Increment, Noop, Square, create_ledger, ledger


def callbacks(settings) -> list[str]:
    """The keys of the Collect runs (the only jobs here that write to the ledger)."""
    return [key for key, _, _, _ in ledger(settings)]


def test_a_groups_callback_receives_every_output_in_order_once(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    flow = Group([Square(n) for n in range(1, 6)], then=Collect("sum")).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [Status.SUCCESSFUL] * 6
    assert results[-1].id == flow.last.id  # the callback ran after every member
    assert get_result(flow.last.id).output == [["SUCCESSFUL", n * n] for n in range(1, 6)]
    assert callbacks(jobkit_runtime.settings) == ["sum"]


def test_the_callback_is_held_until_the_last_member_ends(jobkit_runtime):
    flow = Group([Square(2), Square(3)], then=Collect("held")).run_in_worker()
    assert jobkit.job(flow.last.job_id).state is jobkit.AttemptState.SCHEDULED

    run_jobs(jobkit_runtime, max_jobs=1)
    assert jobkit.job(flow.last.job_id).state is jobkit.AttemptState.SCHEDULED

    run_jobs(jobkit_runtime)
    assert get_result(flow.last.id).status is Status.SUCCESSFUL


def test_the_callback_is_told_which_members_failed(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    flow = Group([Square(2), Fail("no"), Square(4)], then=Collect("told")).run_in_worker()

    run_jobs(jobkit_runtime)

    assert get_result(flow.last.id).output == [
        ["SUCCESSFUL", 4],
        ["ERRORED", None],
        ["SUCCESSFUL", 16],
    ]


def test_a_member_with_retries_left_has_not_ended(jobkit_runtime):
    class Flaky(Fail):
        def default_retries(self) -> int:
            return 1

    jobkit.register_job(Flaky, name="testapp.Flaky")
    create_ledger(jobkit_runtime.settings)
    flow = Group([Flaky("once", times=1)], then=Collect("after-retry")).run_in_worker()

    first = run_jobs(jobkit_runtime, max_jobs=1)
    assert [r.status for r in first] == [Status.ERRORED]
    assert first[0].retry_request_id is not None  # it has a retry, so it has not ended

    run_jobs(jobkit_runtime)

    assert get_result(flow.last.id).output == [["SUCCESSFUL", None]]
    assert callbacks(jobkit_runtime.settings) == ["after-retry"]


def test_a_chain_passes_each_output_to_the_next_job(jobkit_runtime):
    flow = Chain(Increment(10), Increment(), Increment()).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [r.output for r in results] == [11, 12, 13]
    assert [r.id for r in results] == [r.id for r in flow.requests]


def test_a_chain_stops_at_a_failure_and_an_operators_retry_resumes_it(jobkit_runtime):
    flow = Chain(Increment(1), Fail("first try", times=1), Increment()).run_in_worker()

    run_jobs(jobkit_runtime)

    failed = jobkit.job(flow.requests[1].job_id)
    assert failed.state is jobkit.AttemptState.ERRORED
    assert jobkit.job(flow.last.job_id).state is jobkit.AttemptState.SCHEDULED

    assert jobkit.retry(flow.requests[1].job_id).done
    run_jobs(jobkit_runtime)

    # The retried job returned None; the last link got it and could not add one to it.
    last = get_result(flow.last.id)
    assert last is not None and last.status is Status.ERRORED
    assert "NoneType" in last.error


def test_cancelling_a_waiting_member_ends_it_as_failed(jobkit_runtime):
    flow = Group([Square(5), Square(6)], then=Collect("cancelled")).run_in_worker()

    assert jobkit.cancel(flow.requests[1].job_id).done
    create_ledger(jobkit_runtime.settings)
    run_jobs(jobkit_runtime)

    assert get_result(flow.last.id).output == [["SUCCESSFUL", 25], ["CANCELLED", None]]


@jobkit.register_job(name="test_workflows.DefersOnce")
class DefersOnce(jobkit.Job):
    """Defers its first run. Its ``should_enqueue`` (so each rerun is decided after its
    DEFERRED result is written) declines the deferral's rerun when ``declined``."""

    runs = 0

    def __init__(self, declined: bool):
        self.declined = declined

    def run(self) -> str:
        DefersOnce.runs += 1
        if DefersOnce.runs == 1:
            raise jobkit.DeferJob(delay=0)
        return "ran"

    def should_enqueue(self, concurrency_key: str) -> bool:
        return not (self.declined and DefersOnce.runs == 1)


def test_a_member_whose_decided_deferral_runs_again_ends_with_its_rerun(jobkit_runtime):
    DefersOnce.runs = 0
    flow = Group([Square(3), DefersOnce(declined=False)], then=Collect("rerun")).run_in_worker()

    run_jobs(jobkit_runtime, max_jobs=2)  # the square, and the member's deferred first run
    assert jobkit.job(flow.last.job_id).state is jobkit.AttemptState.SCHEDULED

    create_ledger(jobkit_runtime.settings)
    run_jobs(jobkit_runtime)
    assert get_result(flow.last.id).output == [["SUCCESSFUL", 9], ["SUCCESSFUL", "ran"]]


def test_a_member_whose_deferral_should_enqueue_declines_has_ended_deferred(jobkit_runtime):
    DefersOnce.runs = 0
    create_ledger(jobkit_runtime.settings)
    flow = Group([Square(3), DefersOnce(declined=True)], then=Collect("declined")).run_in_worker()

    run_jobs(jobkit_runtime)

    deferred = jobkit.job(flow.requests[1].job_id).latest
    assert deferred.state is jobkit.AttemptState.DEFERRED and deferred.retry_request_id is None
    assert get_result(flow.last.id).output == [["SUCCESSFUL", 9], ["DEFERRED", None]]
    assert callbacks(jobkit_runtime.settings) == ["declined"]


def workflow_count(settings) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.workflows").format(sql.Identifier(settings.schema))
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        (count,) = connection.execute(query).fetchone()
    return count


def test_a_workflow_is_enqueued_whole_or_not_at_all(jobkit_runtime):
    class Declined(Noop):
        def should_enqueue(self, concurrency_key: str) -> bool:
            return False

    jobkit.register_job(Declined, name="testapp.Declined")
    before = workflow_count(jobkit_runtime.settings)
    with pytest.raises(ParameterError, match=r"declined .*Declined\(2\): nothing was enqueued"):
        Group([Noop(1), Declined(2)], then=Noop(3)).run_in_worker()

    waiting = jobkit_runtime.store.stats(include_results=False).total
    assert (waiting.pending, waiting.scheduled) == (0, 0)
    assert workflow_count(jobkit_runtime.settings) == before


def test_a_rolled_back_transaction_leaves_no_workflow(jobkit_runtime):
    with psycopg.connect(jobkit_runtime.settings.database_url) as connection:
        Chain(Increment(), Increment()).run_in_worker(connection=connection)
        connection.rollback()
    assert run_jobs(jobkit_runtime) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Group([]), "Group needs at least one job"),
        (lambda: Group([Noop()], then="Noop"), "Group's then takes Job instances"),
        (lambda: Group([Noop, Noop()]), "Group takes Job instances"),
        (lambda: Chain(Noop()), "Chain needs at least two jobs, got 1"),
        (lambda: Chain(Noop(), 3), "Chain takes Job instances"),
    ],
)
def test_bad_workflows_are_refused_with_what_was_wrong(make, message):
    with pytest.raises((ParameterError, ParameterTypeError), match=message):
        make()
