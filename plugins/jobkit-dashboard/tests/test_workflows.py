"""Workflows and pipelines in the dashboard, through Starlette's TestClient: a workflow's page
(its links, members, callback, and cancelling what waits), the link to it from each of its jobs,
and a pipeline's step and workspace on its job's page."""

from __future__ import annotations

import re
import uuid

import pytest
from dashboard_jobs import Fail, Onboard, Report, Succeed
from jobkit_dashboard import create_app
from starlette.testclient import TestClient

from jobkit import AttemptState, Chain, Group
from jobkit.testing import run_jobs

EVIL = "<script>alert(1)</script>"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found[1]


def statuses(html: str) -> list[str]:
    return re.findall(r'<td class="status">([^<]*)</td>', html)


@pytest.fixture
def client(runtime):
    with TestClient(create_app(runtime), base_url="http://127.0.0.1") as client:
        yield client


def test_a_workflow_page_shows_its_members_and_callback_as_they_end(client, runtime):
    flow = Group([Succeed(1), Fail("no")], then=Report("done"), name=EVIL).run_in_worker()
    members, callback = flow.requests[:2], flow.requests[2]

    waiting = client.get(f"/workflows/{flow.id}").text
    assert EVIL not in waiting and "&lt;script&gt;" in waiting  # the name, escaped
    assert statuses(waiting) == ["not ended", "not ended"]
    assert f'Callback <a href="/jobs/{callback.job_id}">' in waiting
    assert "held until the members have ended" in waiting
    assert 'id="workflow-state">waiting<' in waiting
    assert 'id="cancel-workflow"' in waiting

    for request in [*members, callback]:  # each of its jobs links to it
        job_page = client.get(f"/jobs/{request.job_id}").text
        assert f'id="workflow-link" href="/workflows/{flow.id}"' in job_page

    run_jobs(runtime)  # the members, then the callback they released
    ended = client.get(f"/workflows/{flow.id}").text
    assert statuses(ended) == ["SUCCESSFUL", "ERRORED"]
    assert "2 of 2 ended, 1 failed" in ended
    assert re.search(r'released \d{4}-\d\d-\d\d [^<]*: <span class="state">successful<', ended)
    assert 'id="workflow-state">ended<' in ended
    assert 'id="cancel-workflow"' not in ended  # nothing waits
    assert runtime.store.job_attempts(callback.job_id)[-1].state is AttemptState.SUCCESSFUL


def test_cancel_on_a_workflow_page_cancels_every_job_that_waits(client, runtime):
    flow = Chain(Succeed(1), Succeed(2), Succeed(3)).run_in_worker()
    page = client.get(f"/workflows/{flow.id}").text
    assert len(re.findall(r'<article class="link"', page)) == 2  # a chain of 3: two links

    done = client.post(f"/workflows/{flow.id}/cancel", data={"csrf_token": csrf_of(page)})
    assert done.status_code == 200
    assert "cancelled 3 of 3 jobs" in done.text
    for request in flow.requests:
        assert runtime.store.job_attempts(request.job_id)[-1].state is AttemptState.CANCELLED
    assert 'id="workflow-state">ended<' in done.text
    assert done.text.count('never released: <span class="state">cancelled</span>') == 2

    unknown = client.post(f"/workflows/{flow.id}/pause", data={"csrf_token": csrf_of(page)})
    assert unknown.status_code == 404


def test_a_read_only_dashboard_shows_a_workflow_and_refuses_to_cancel_it(runtime):
    flow = Group([Succeed(1)]).run_in_worker()
    with TestClient(create_app(runtime, read_only=True)) as client:
        page = client.get(f"/workflows/{flow.id}")
        assert page.status_code == 200
        assert 'method="post"' not in page.text
        refused = client.post(f"/workflows/{flow.id}/cancel")
        assert refused.status_code == 403
    assert runtime.store.job_attempts(flow.requests[0].job_id)[-1].state is AttemptState.PENDING


def test_an_unknown_workflow_is_a_404_that_says_why(client):
    missing = client.get(f"/workflows/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "no workflow has the id" in missing.text
    assert client.get("/workflows/not-a-uuid").status_code == 404


def test_a_pipeline_s_job_page_shows_its_next_step_and_workspace(client, runtime):
    stuck = Onboard(workspace={"user": EVIL, "fail": True}).run_in_worker()
    done = Onboard(workspace={"user": 7}).run_in_worker()
    assert stuck is not None and done is not None
    run_jobs(runtime)

    page = client.get(f"/jobs/{stuck.job_id}").text
    assert 'id="pipeline-step"><code>check</code>' in page  # stopped at the failed step
    workspace = page.split('<pre id="workspace">')[1].split("</pre>")[0]
    assert "&#34;greeted&#34;: true" in workspace
    assert EVIL not in page and "&lt;script&gt;" in workspace

    ended = client.get(f"/jobs/{done.job_id}").text
    assert 'id="pipeline-step">none: it ended' in ended
    assert 'id="workflow-link"' not in ended  # a pipeline is no workflow
