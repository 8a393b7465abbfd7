"""Operating workflows against the real database: a workflow's links, members and callbacks in
the operations API, `jobkit workflow` and `jobkit show`; cancelling a workflow cancels its waiting
jobs, held callbacks first, and leaves a running member to end."""

from __future__ import annotations

import uuid

import pytest

import jobkit
from jobkit import AttemptState, CallbackStage, Chain, Group, JobNotFound, Status
from jobkit.operations_cli import describe_job, describe_workflow
from jobkit.testing import run_jobs
from jobkit.testing.store_contract import StoreContract, completion
from testapp.jobs import Collect, Increment, Square, create_ledger


def test_a_groups_links_and_members_are_told(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    flow = Group([Square(2), Square(3)], then=Collect("told"), name="squares").run_in_worker()
    run_jobs(jobkit_runtime, max_jobs=1)

    (link,) = jobkit.workflow(flow.id)
    assert (link.id, link.name, link.unfinished, link.failed) == (flow.id, "squares", 1, 0)
    assert link.callback_id == flow.last.job_id and link.released_at is None
    assert link.callback_state is AttemptState.SCHEDULED
    assert link.callback_stage is CallbackStage.HELD
    assert (link.as_dict()["callback_state"], link.as_dict()["callback_stage"]) == (
        "scheduled",
        "held",
    )
    assert [(m.position, m.status) for m in link.members] == [(0, Status.SUCCESSFUL), (1, None)]
    assert link.members[0].output == 4
    shown = describe_workflow([link])
    assert f"workflow   {flow.id}  squares" in shown
    assert f"link 1: 1 of 2 ended, 0 failed; callback {flow.last.job_id} held" in shown
    assert f"{flow.requests[1].job_id}  testapp.jobs.Square  not ended" in shown
    for request in flow.requests:
        assert f"workflow   {flow.id}" in describe_job(jobkit.job(request.job_id))
        assert jobkit.job(request.job_id).as_dict()["workflow_id"] == str(flow.id)

    run_jobs(jobkit_runtime)
    (link,) = jobkit.workflow(flow.id)
    assert link.unfinished == 0 and link.released_at is not None
    assert link.as_dict()["members"][1]["output"] == 9
    assert (link.callback_stage, link.callback_state) == (
        CallbackStage.RELEASED,
        AttemptState.SUCCESSFUL,
    )
    assert f"callback {flow.last.job_id} released " in describe_workflow([link])
    assert describe_workflow([link]).split("\n")[2].endswith(": successful")
    # The store's own links leave the state to the operations API, which reads it.
    (stored,) = jobkit_runtime.store.workflow(flow.id)
    assert stored.callback_state is None and stored.callback_stage is CallbackStage.RELEASED


def test_a_chains_links_are_in_order(jobkit_runtime):
    flow = Chain(Increment(1), Increment(), Increment()).run_in_worker()

    links = jobkit.workflow(flow.id)

    assert [link.members[0].job_id for link in links] == [r.job_id for r in flow.requests[:2]]
    assert [link.callback_id for link in links] == [r.job_id for r in flow.requests[1:]]
    assert {link.root_id for link in links} == {flow.id}
    run_jobs(jobkit_runtime)


def test_cancelling_a_workflow_cancels_its_waiting_jobs_callbacks_first(jobkit_runtime):
    flow = Chain(Increment(1), Increment(), Increment()).run_in_worker()

    reports = jobkit.cancel_workflow(flow.id)

    assert [r.job_id for r in reports] == [r.job_id for r in reversed(flow.requests)]
    assert all(report.done for report in reports)
    assert run_jobs(jobkit_runtime) == []
    for request in flow.requests:
        assert jobkit.job(request.job_id).state is AttemptState.CANCELLED
    links = jobkit.workflow(flow.id)
    assert {(link.callback_stage, link.callback_state) for link in links} == {
        (CallbackStage.NEVER_RELEASED, AttemptState.CANCELLED)
    }
    shown = describe_workflow(links)
    assert f"callback {flow.requests[1].job_id} never released: cancelled" in shown


def test_cancelling_a_group_leaves_its_running_member_to_end(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    flow = Group([Square(2), Square(3)], then=Collect("never")).run_in_worker()
    store = jobkit_runtime.store
    worker = StoreContract().register(store)
    (running,) = store.claim(worker_id=worker.id, queues=["default"], limit=1)

    reports = jobkit.cancel_workflow(flow.id)

    assert [r.job_id for r in reports] == [flow.last.job_id, flow.requests[1].job_id]
    assert jobkit.job(running.job_id).state is AttemptState.RUNNING
    assert jobkit.cancel_workflow(flow.id) == []  # nothing waits any more
    store.finish(worker_id=worker.id, completions=[completion(running, output="4")])
    (link,) = jobkit.workflow(flow.id)
    assert [m.status for m in link.members] == [Status.SUCCESSFUL, Status.CANCELLED]
    assert run_jobs(jobkit_runtime) == []  # the callback was cancelled: nothing follows


def test_an_unknown_workflow_is_not_found(jobkit_runtime):
    with pytest.raises(JobNotFound, match="no workflow has the id"):
        jobkit.workflow(uuid.uuid4())
    with pytest.raises(JobNotFound, match="no workflow has the id"):
        jobkit.cancel_workflow(uuid.uuid4())
