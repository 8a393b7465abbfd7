"""Workflows with real ``jobkit worker`` processes: a group's callback runs exactly once, with
every member's output, when the worker running the members is killed with kill -9 between them
(a peer rescues them), and when two workers finish the last two members of many groups at the
same moment. The ledger counts every run."""

from __future__ import annotations

import json
import os
import signal

import pytest
from faults import check_invariants, ledger_starts, wait_for

from jobkit import Group, get_result
from testapp.jobs import Collect, ImportCats, Square

pytestmark = pytest.mark.acceptance


def registered(db, worker) -> bool:
    return db.count("workers", "pid = %s", [worker.pid]) == 1


def start_ready(workers, db, *args: str):
    worker = workers.start(*args)
    worker.wait_for_log(" started: queues ")
    wait_for(lambda: registered(db, worker), 10, message=f"worker {worker.pid} registered")
    return worker


def all_finished(db, requests) -> bool:
    job_ids = [request.job_id for request in requests]
    done = db.value(
        "SELECT count(*) FROM {schema}.results WHERE job_id = ANY(%s) AND retry_request_id IS NULL",
        [job_ids],
    )
    return done == len(job_ids)


def test_kill_9_of_the_worker_between_members_runs_the_callback_once(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    doomed = start_ready(workers, db, "--max-processes", "2")
    members = [Square(n, key=f"m{n}", seconds=0.2 if n < 2 else 3) for n in range(4)]
    flow = Group(members, then=Collect("callback")).run_in_worker(retries=1)
    # Two members ended on the doomed worker; two run there, for longer than the test waits.
    wait_for(
        lambda: (
            db.count("results", "status = 'SUCCESSFUL'") == 2
            and ledger_starts(jobkit_settings).keys() >= {"m2", "m3"}
        ),
        message="two members ended and two started",
    )
    peer = start_ready(workers, db, "--max-processes", "2")

    os.killpg(doomed.pid, signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL

    wait_for(lambda: all_finished(db, flow.requests), 40, message="the callback ran")
    job_ids = [request.job_id for request in flow.requests]
    faults = dict.fromkeys(job_ids[2:4], 1)
    check_invariants(
        db,
        jobkit_settings,
        dict(zip(job_ids, ["m0", "m1", "m2", "m3", "callback"], strict=True)),
        faults=faults,
    )
    assert ledger_starts(jobkit_settings)["callback"] == 1
    assert get_result(flow.last.id).output == [["SUCCESSFUL", n * n] for n in range(4)]
    assert peer.stop(10) == 0, peer.output()


def test_two_workers_finishing_the_last_two_members_run_each_callback_once(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    # Each group's first member goes to one worker's queue, its second to the other's, so the two
    # end at about the same moment on two workers; the callbacks go to either.
    flags = ("--max-processes", "2", "--max-pending-per-process", "1", "--queue", "default")
    one = start_ready(workers, db, *flags, "--queue", "left")
    other = start_ready(workers, db, *flags, "--queue", "right")
    flows = [
        Group(
            [
                Square(n, key=f"g{g}-m{n}", seconds=0.05, queue=queue)
                for n, queue in enumerate(("left", "right"))
            ],
            then=Collect(f"g{g}-callback"),
        ).run_in_worker()
        for g in range(30)
    ]
    requests = [request for flow in flows for request in flow.requests]

    wait_for(lambda: all_finished(db, requests), 60, message="every callback ran")

    keys = {}
    for g, flow in enumerate(flows):
        names = [f"g{g}-m0", f"g{g}-m1", f"g{g}-callback"]
        keys |= dict(zip([r.job_id for r in flow.requests], names, strict=True))
        assert get_result(flow.last.id).output == [["SUCCESSFUL", 0], ["SUCCESSFUL", 1]]
    check_invariants(db, jobkit_settings, keys)
    starts = ledger_starts(jobkit_settings)
    assert [starts[f"g{g}-callback"] for g in range(30)] == [1] * 30
    split = db.value(
        "SELECT count(*) FROM (SELECT m.workflow_id FROM {schema}.workflow_members AS m "
        "JOIN {schema}.results AS r ON r.id = m.result_id "
        "GROUP BY m.workflow_id HAVING count(DISTINCT r.worker_id) = 2) AS split"
    )
    assert split == 30, f"only {split} groups had their members end on both workers"
    assert one.stop(10) == 0, one.output()
    assert other.stop(10) == 0, other.output()


def test_the_workflow_command_and_stats_tell_workflows_and_pipelines(jobkit_runtime, run_cli):
    flow = Group([Square(2)], then=Collect("cli")).run_in_worker()

    shown = run_cli("workflow", str(flow.id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["callback_id"] == str(flow.last.job_id)
    told = run_cli("show", str(flow.requests[0].job_id))
    assert f"workflow   {flow.id}" in told.stdout

    cancelled = run_cli("workflow", str(flow.id), "--cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.splitlines()[0].startswith(f"{flow.last.job_id}: ")
    assert run_cli("workflow", str(flow.id), "--cancel").returncode == 1
    ImportCats(workspace={"key": "stats"}).run_in_worker()
    stats = run_cli("stats", "--json")
    assert json.loads(stats.stdout)["pipelines"] == {"testapp.jobs.ImportCats": {"fetch": 1}}
    assert "pipeline testapp.jobs.ImportCats: fetch 1" in run_cli("stats").stdout
    unknown = run_cli("workflow", "01a2445e-280d-7727-8853-58a0d1949ebc")
    assert unknown.returncode != 0 and "no workflow has the id" in unknown.stderr


def test_kill_9_mid_step_reruns_that_step_with_the_saved_workspace(
    workers, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    doomed = start_ready(workers, db, "--max-processes", "1")
    request = ImportCats(workspace={"key": "cats", "slow_in": "parse"}).run_in_worker()
    wait_for(lambda: ledger_starts(jobkit_settings)["cats-parse"] == 1, message="parse started")
    peer = start_ready(workers, db, "--max-processes", "1")

    os.killpg(doomed.pid, signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL

    wait_for(lambda: all_finished(db, [request]), 40, message="the pipeline ended")
    statuses = db.query(
        "SELECT status, error_type FROM {schema}.results WHERE job_id = %s ORDER BY ended_at",
        [request.job_id],
    )
    assert statuses == [
        ("DEFERRED", ""),
        ("LOST", "WorkerLost"),
        ("DEFERRED", ""),
        ("SUCCESSFUL", ""),
    ]
    starts = ledger_starts(jobkit_settings)
    assert [starts[f"cats-{step}"] for step in ("fetch", "parse", "store")] == [1, 2, 1]
    output = get_result(request.id).output
    assert output["step"] is None
    assert output["workspace"]["count"] == 2 and output["workspace"]["stored"] is True
    assert peer.stop(10) == 0, peer.output()
