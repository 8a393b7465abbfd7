"""Pipelines against the real database with run_jobs: steps run in order, one attempt each,
sharing a workspace saved with each step's result; a failed step is retried from that step with
the workspace as saved; a step ends early or chooses the next; pipelines are found by workspace
content, and `jobkit show` tells the step and the workspace."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit import Pipeline, Status, enqueue_many, get_result
from jobkit.errors import ParameterError, ParameterTypeError
from jobkit.operations_cli import describe_job
from jobkit.testing import run_jobs
from testapp.jobs import ImportCats, create_ledger, ledger


def steps_run(settings, key: str) -> list[str]:
    return [
        name.removeprefix(f"{key}-")
        for name, _, _, _ in ledger(settings)
        if name.startswith(f"{key}-")
    ]


def test_steps_run_in_order_sharing_the_workspace(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "a", "user_id": 42}).run_in_worker()
    pipeline = jobkit.job(request.job_id).pipeline
    assert pipeline is not None and (pipeline.step, pipeline.workspace) == (
        "fetch",
        {"key": "a", "user_id": 42},
    )

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [Status.DEFERRED, Status.DEFERRED, Status.SUCCESSFUL]
    assert steps_run(jobkit_runtime.settings, "a") == ["fetch", "parse", "store"]
    final = {"key": "a", "user_id": 42, "cats": ["tom", "felix"], "count": 2, "stored": True}
    assert get_result(request.id).output == {"step": None, "workspace": final}
    pipeline = jobkit.job(request.job_id).pipeline
    assert pipeline is not None and (pipeline.step, pipeline.workspace) == (None, final)


def test_the_workspace_is_saved_after_each_step(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "b"}).run_in_worker()

    run_jobs(jobkit_runtime, max_jobs=1)

    pipeline = jobkit.job(request.job_id).pipeline
    assert pipeline is not None
    assert (pipeline.step, pipeline.workspace) == ("parse", {"key": "b", "cats": ["tom", "felix"]})
    assert jobkit.pipeline_steps()["testapp.jobs.ImportCats"]["parse"] >= 1
    shown = describe_job(jobkit.job(request.job_id))
    assert "step       parse (the step it runs next)" in shown
    assert 'workspace  {"key": "b", "cats": ["tom", "felix"]}' in shown
    assert jobkit.job(request.job_id).as_dict()["pipeline"]["step"] == "parse"


def test_a_failed_step_is_retried_from_that_step_with_the_saved_workspace(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "c", "fail_in": "parse"}).run_in_worker()

    results = run_jobs(jobkit_runtime)

    assert [r.status for r in results] == [
        Status.DEFERRED,
        Status.ERRORED,
        Status.DEFERRED,
        Status.SUCCESSFUL,
    ]
    assert steps_run(jobkit_runtime.settings, "c") == ["fetch", "parse", "parse", "store"]
    assert get_result(request.id).output["workspace"]["count"] == 2


def test_a_step_that_fails_for_good_leaves_the_pipeline_at_that_step(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "d", "fail_in": "store"}).run_in_worker(retries=0)

    run_jobs(jobkit_runtime)

    assert get_result(request.id).status is Status.ERRORED
    pipeline = jobkit.job(request.job_id).pipeline
    assert pipeline is not None and pipeline.step == "store"
    assert pipeline.workspace["count"] == 2
    assert jobkit.retry(request.job_id).done  # an operator's retry resumes it at that step
    run_jobs(jobkit_runtime)
    assert steps_run(jobkit_runtime.settings, "d") == ["fetch", "parse", "store", "store"]
    assert jobkit.job(request.job_id).pipeline.step is None


@pytest.mark.parametrize(("jump", "ran"), [("store", ["fetch", "store"]), ("end", ["fetch"])])
def test_a_step_chooses_the_next_step_or_ends(jobkit_runtime, jump, ran):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "e", "jump": jump}).run_in_worker()

    run_jobs(jobkit_runtime)

    assert steps_run(jobkit_runtime.settings, "e") == ran
    assert get_result(request.id).status is Status.SUCCESSFUL


def test_a_step_that_names_no_step_errors(jobkit_runtime):
    create_ledger(jobkit_runtime.settings)
    request = ImportCats(workspace={"key": "f", "jump": "nowhere"}).run_in_worker(retries=0)

    run_jobs(jobkit_runtime)

    result = get_result(request.id)
    assert result is not None and result.status is Status.ERRORED
    assert "ImportCats.fetch() returned 'nowhere': a step returns None" in result.error


def test_pipelines_are_found_by_workspace_content(jobkit_runtime):
    mine = ImportCats(workspace={"key": "g", "user_id": 42, "team": {"id": 7}}).run_in_worker()
    ImportCats(workspace={"key": "h", "user_id": 43, "team": {"id": 7}}).run_in_worker()

    found = jobkit.pipelines(workspace={"user_id": 42})
    assert [p.job_id for p in found] == [mine.job_id]
    assert {p.workspace["key"] for p in jobkit.pipelines(workspace={"team": {"id": 7}})} >= {
        "g",
        "h",
    }
    assert jobkit.pipelines(workspace={"user_id": 44}) == []
    with pytest.raises(ParameterError, match="workspace must be a dict"):
        jobkit.pipelines(workspace=[42])


def test_the_workspace_query_uses_its_index(jobkit_runtime):
    settings = jobkit_runtime.settings
    query = sql.SQL(
        "EXPLAIN (FORMAT JSON) SELECT job_id FROM {}.pipelines WHERE workspace @> %s::jsonb"
    ).format(sql.Identifier(settings.schema))
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        (plan,) = connection.execute(query, ['{"user_id": 42}']).fetchone()
    assert "pipelines_workspace" in str(plan)


def test_a_pipeline_enqueued_without_its_record_errors_clearly(jobkit_runtime):
    (request,) = enqueue_many([ImportCats(workspace={"key": "i"})], retries=0)

    (result,) = run_jobs(jobkit_runtime)

    assert (result.job_id, result.status) == (request.job_id, Status.ERRORED)
    assert "enqueue it with its own run_in_worker()" in result.error


def test_bad_pipelines_are_refused_with_what_was_wrong():
    with pytest.raises(ParameterTypeError, match="workspace must be a dict"):
        ImportCats(workspace=["key"])
    with pytest.raises(TypeError, match="must name its steps in order"):
        type("NoSteps", (Pipeline,), {})
    with pytest.raises(TypeError, match="names 'missing', which is not a method of it"):
        type("Missing", (Pipeline,), {"steps": ("missing",)})


def test_a_deferral_stores_its_output_and_an_unstorable_one_errors(jobkit_runtime):
    class Keeps(Pipeline):
        steps = ("first", "second")

        def first(self) -> None:
            self.workspace["kept"] = object() if self.workspace.get("bad") else [1, 2]

        def second(self) -> None:
            pass

    jobkit.register_job(Keeps, name="testapp.Keeps")
    good = Keeps(workspace={}).run_in_worker(retries=0)
    bad = Keeps(workspace={"bad": True}).run_in_worker(retries=0)

    results = {r.job_id: r for r in run_jobs(jobkit_runtime) if r.retry_of is None}

    deferred = results[good.job_id]
    assert deferred.status is Status.DEFERRED
    assert deferred.output == {"step": "second", "workspace": {"kept": [1, 2]}}
    failed = results[bad.job_id]
    assert (failed.status, failed.error_type) == (Status.ERRORED, "jobkit.errors.OutputError")
    assert jobkit.job(bad.job_id).pipeline.step == "first"  # nothing saved: it reruns first
