"""The admin pages, through Django's test client: requests, running attempts, results and
queues read through jobkit's operations API, with filters, search and actions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.test import Client

import jobkit
from conftest import PROJECT
from jobkit.testing import run_jobs, wait_for

RESULTS = "/admin/jobkit_django/jobresult/"
REQUESTS = "/admin/jobkit_django/jobrequest/"
QUEUES = "/admin/jobkit_django/queue/"
PROCESSES = "/admin/jobkit_django/jobprocess/"


@pytest.fixture
def admin_client(jobs):
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(
        username="ops", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_index_lists_the_job_pages(admin_client):
    page = admin_client.get("/admin/").content.decode()
    for title in ("Requests (waiting jobs)", "Running attempts", "Results", "Queues"):
        assert title in page


def test_results_list_filters_searches_and_shows_a_job(admin_client):
    from shop.jobs import ChargeCard, ConfirmOrder

    failed = ChargeCard(1).run_in_worker(queue="emails")
    ConfirmOrder(2).run_in_worker()
    run_jobs()

    every = admin_client.get(RESULTS).content.decode()
    assert "shop.jobs.ChargeCard" in every and "shop.jobs.ConfirmOrder" in every
    only_failed = admin_client.get(RESULTS, {"state": "failed"}).content.decode()
    assert "shop.jobs.ChargeCard" in only_failed and "ConfirmOrder" not in only_failed
    by_queue = admin_client.get(RESULTS, {"queue": "default"}).content.decode()
    assert "ConfirmOrder" in by_queue and "ChargeCard" not in by_queue
    by_error = admin_client.get(RESULTS, {"q": "card declined"}).content.decode()
    assert "ChargeCard" in by_error and "ConfirmOrder" not in by_error

    found = admin_client.get(RESULTS, {"q": str(failed.job_id)})
    assert found.status_code == 302 and found.url == f"{RESULTS}{failed.job_id}/"
    job_page = admin_client.get(found.url).content.decode()
    assert "RuntimeError: card declined for order 1" in job_page


def test_retry_and_retry_all_failed_go_through_the_operations_api(admin_client):
    from shop.jobs import ChargeCard

    one, two = ChargeCard(1).run_in_worker(), ChargeCard(2).run_in_worker()
    run_jobs()

    admin_client.post(RESULTS, {"action": "retry", "job": [str(one.job_id)]})
    assert jobkit.job(one.job_id).latest.state.value == "pending"
    assert jobkit.job(one.job_id).latest.source == "retried by django admin ops"
    assert jobkit.job(two.job_id).latest.state.value == "errored"

    response = admin_client.post(
        f"{RESULTS}?state=failed", {"action": "retry_all_failed"}, follow=True
    )
    assert "Retried 1 of 1 failed jobs" in response.content.decode()
    assert jobkit.job(two.job_id).latest.state.value == "pending"


def test_cancel_a_waiting_job_and_pause_a_queue(admin_client):
    from shop.jobs import ConfirmOrder

    waiting = ConfirmOrder(3).run_in_worker()
    listed = admin_client.get(REQUESTS).content.decode()
    assert str(waiting.job_id) in listed

    admin_client.post(REQUESTS, {"action": "cancel", "job": [str(waiting.job_id)]})
    assert jobkit.job(waiting.job_id).latest.state.value == "cancelled"

    admin_client.post(QUEUES, {"queue": "emails", "action": "pause"})
    assert jobkit.queue_depths(["emails"])["emails"].paused
    assert "Resume" in admin_client.get(QUEUES).content.decode()
    admin_client.post(QUEUES, {"queue": "emails", "action": "resume"})
    assert not jobkit.queue_depths(["emails"])["emails"].paused


def test_a_job_page_shows_its_workflow_and_cancels_what_waits(admin_client):
    from shop.jobs import ConfirmOrder

    flow = jobkit.Chain(ConfirmOrder(1), ConfirmOrder(2), name="<b>order</b>").run_in_worker()
    first, second = flow.requests
    page = admin_client.get(f"{RESULTS}{first.job_id}/").content.decode()
    assert f"Workflow {flow.id} (&lt;b&gt;order&lt;/b&gt;)" in page
    assert f'<a href="{RESULTS}{second.job_id}/">callback held until the members have ended' in page
    assert '<td class="status">not ended</td>' in page

    response = admin_client.post(
        f"{RESULTS}{first.job_id}/",
        {"action": "cancel_workflow", "workflow": str(flow.id)},
        follow=True,
    )
    page = response.content.decode()
    assert "Cancelled 2 waiting jobs of the workflow" in page
    assert "callback never released: cancelled" in page
    assert '<td class="status">CANCELLED</td>' in page
    assert [jobkit.job(r.job_id).state.value for r in flow.requests] == ["cancelled"] * 2


def test_a_pipeline_s_job_page_shows_its_next_step_and_workspace(admin_client):
    from shop.jobs import Checkout

    stuck = Checkout(workspace={"order": "<i>7</i>", "declined": True}).run_in_worker()
    run_jobs()
    page = admin_client.get(f"{RESULTS}{stuck.job_id}/").content.decode()
    assert '<code id="pipeline-step">pay</code>' in page  # stopped at the failed step
    assert "&quot;reserved&quot;: true" in page
    assert "<i>7</i>" not in page and "&lt;i&gt;7&lt;/i&gt;" in page


def test_a_user_without_permission_cannot_see_or_act(admin_client):
    from django.contrib.auth.models import User

    viewer = User.objects.create(username="viewer", is_staff=True)
    client = Client()
    client.force_login(viewer)
    try:
        assert client.get(RESULTS).status_code == 403
        assert client.post(QUEUES, {"queue": "emails", "action": "pause"}).status_code == 403
        assert not jobkit.queue_depths(["emails"])["emails"].paused
    finally:
        viewer.delete()


def test_a_running_attempt_is_listed_and_cancelled_by_its_worker(
    admin_client, project_environ, tmp_path
):
    from shop.jobs import Sleep

    request = Sleep(120).run_in_worker()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "jobkit", "worker"],
        cwd=PROJECT,
        env=project_environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: jobkit.job(request.job_id).latest.state.value == "running")
        assert str(request.job_id) in admin_client.get(PROCESSES).content.decode()

        admin_client.post(PROCESSES, {"action": "cancel", "job": [str(request.job_id)]})

        wait_for(lambda: jobkit.job(request.job_id).latest.state.value == "cancelled")
        assert (
            "cancelled by an operator (django admin ops)" in jobkit.job(request.job_id).latest.error
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
