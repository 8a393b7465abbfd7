"""The dashboard in a real browser (Playwright driving Debian's Chromium), on the real database
and, where jobs must run, a real ``jobkit worker`` subprocess. Each test waits for conditions
(the page's text, the database's rows), never for a length of time."""

from __future__ import annotations

import re

import pytest
from dashboard_jobs import Fail, Flaky, Report, Sleep, Succeed
from playwright.sync_api import expect

from jobkit import AttemptState, Group
from jobkit.operations import Operations
from jobkit.testing import run_jobs, wait_for

EVIL = "<script>alert(1)</script>"
WAIT = 30_000  # ms: how long a page may take to show what the test expects


def latest_state(runtime, job_id) -> AttemptState:
    return runtime.store.job_attempts(job_id)[-1].state


def cell(page, queue: str, column: str):
    return page.locator(f'#overview-queues tr[data-queue="{queue}"] td.{column}')


def test_the_overview_shows_the_counts_and_keeps_them_live(page, runtime, screenshot):
    for number in range(3):
        Succeed(number).run_in_worker(queue="emails")
    for number in range(2):
        Succeed(number).run_in_worker(queue="reports", delay=3600)
    for message in ("smtp timeout", "bad address"):
        Fail(message).run_in_worker(queue="billing")
    run_jobs(runtime, queues=["billing"])

    page.goto("/")
    expect(cell(page, "emails", "pending")).to_have_text("3")
    expect(cell(page, "reports", "scheduled")).to_have_text("2")
    expect(cell(page, "billing", "failed")).to_have_text("2")
    expect(page.locator("#total-pending")).to_have_text("3")
    expect(page.locator("#total-failed")).to_have_text("2")
    screenshot("overview")

    page.evaluate("window.stillHere = true")  # gone if the page reloaded instead of refreshing
    Succeed(4).run_in_worker(queue="emails")
    expect(cell(page, "emails", "pending")).to_have_text("4", timeout=WAIT)  # refreshed itself
    expect(page.locator("#total-pending")).to_have_text("4")
    assert page.evaluate("window.stillHere") is True


def test_the_jobs_list_filters(page, runtime, screenshot):
    for number in range(3):
        Succeed(number).run_in_worker(queue="emails")
    Fail("smtp timeout").run_in_worker(queue="billing")
    Fail("card declined").run_in_worker(queue="billing")
    Fail("smtp timeout").run_in_worker(queue="emails")
    run_jobs(runtime)

    page.goto("/jobs")
    expect(page.locator("#total")).to_have_text(re.compile(r"^6 attempts match"))
    page.check('input[name="status"][value="errored"]')
    page.fill('input[name="queue"]', "billing")
    page.click("#apply-filters")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    assert "status=errored" in page.url and "queue=billing" in page.url
    expect(page.locator("#jobs tbody")).not_to_contain_text("dashboard.Succeed")

    page.fill('input[name="queue"]', "")
    page.fill('input[name="error"]', "SMTP")
    page.click("#apply-filters")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    expect(page.locator("#jobs tbody")).not_to_contain_text("card declined")
    screenshot("jobs")

    page.goto("/jobs?limit=2")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    seen = set(page.locator(".job-link").all_inner_texts())
    page.click("#next-page")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    assert not seen & set(page.locator(".job-link").all_inner_texts())


def test_a_failed_job_shows_its_traceback_and_a_retry_succeeds(
    page, runtime, start_worker, screenshot
):
    job_id = Flaky("invoice-7").run_in_worker(queue="default").job_id
    start_worker("default", runtime=runtime)
    wait_for(lambda: latest_state(runtime, job_id) == AttemptState.ERRORED)

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-state")).to_have_text("errored")
    traceback = page.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("RuntimeError: flaky invoice-7 failed its first attempt")
    expect(page.locator("#parameters")).to_contain_text('"invoice-7"')

    page.click("#retry")
    expect(page.locator("#flash")).to_contain_text("retried as")
    expect(page.locator("#job-state")).to_have_text("successful", timeout=WAIT)
    expect(page.locator("article.attempt")).to_have_count(2)
    screenshot("job")
    attempts = runtime.store.job_attempts(job_id)
    assert [attempt.state for attempt in attempts] == [
        AttemptState.ERRORED,
        AttemptState.SUCCESSFUL,
    ]
    assert attempts[-1].source.startswith("retried by dashboard anonymous@127.0.0.1")


def test_cancelling_a_running_job_stops_it(page, runtime, start_worker, screenshot):
    job_id = Sleep(120).run_in_worker(queue="default").job_id
    start_worker("default", runtime=runtime)
    wait_for(lambda: latest_state(runtime, job_id) == AttemptState.RUNNING)

    page.goto("/workers")
    expect(page.locator("#workers tbody tr")).to_have_count(1)
    expect(page.locator("#workers")).to_contain_text("dashboard.Sleep")
    screenshot("workers")

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-state")).to_have_text("running")
    page.click("#cancel")
    expect(page.locator("#flash")).to_contain_text("asked worker")
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=WAIT)
    (attempt,) = runtime.store.job_attempts(job_id)
    assert attempt.state == AttemptState.CANCELLED and attempt.ended_at is not None
    # The worker agrees: it runs nothing now, and the job's attempt ended long before its 120 s.
    assert wait_for(lambda: [w for w in Operations(runtime).workers() if not w.running])
    assert (attempt.ended_at - attempt.started_at).total_seconds() < 60


def test_a_paused_queue_is_left_alone_until_resumed(page, runtime, start_worker, screenshot):
    page.goto("/queues")
    page.fill('#pause-by-name input[name="queue"]', "slow")
    page.click('#pause-by-name button[value="pause"]')
    expect(page.locator("#flash")).to_have_text("paused slow")

    held = Succeed(1).run_in_worker(queue="slow").job_id
    ran = Succeed(2).run_in_worker(queue="default").job_id
    start_worker("slow", "default", runtime=runtime)
    wait_for(lambda: latest_state(runtime, ran) == AttemptState.SUCCESSFUL)
    assert latest_state(runtime, held) == AttemptState.PENDING  # claimed after it: left alone

    page.goto("/queues")
    row = page.locator('#queues tr[data-queue="slow"]')
    expect(row).to_contain_text("paused")
    screenshot("queues")
    row.locator('button[value="resume"]').click()
    expect(page.locator("#flash")).to_have_text("resumed slow")
    wait_for(lambda: latest_state(runtime, held) == AttemptState.SUCCESSFUL)


def test_bulk_actions_confirm_how_many(page, runtime, screenshot):
    for message in ("one", "two", "three"):
        Fail(message).run_in_worker(queue="billing")
    ended = Succeed(9).run_in_worker(queue="done").job_id
    run_jobs(runtime)
    waiting = [Succeed(number).run_in_worker(queue="emails").job_id for number in range(2)]

    page.goto("/jobs?status=failed")
    page.click('button[value="retry:matching"]')
    expect(page.locator("#confirm-question")).to_have_text(
        "Retry 3 failed jobs matching this filter?"
    )
    screenshot("confirm")
    page.click("#confirm-button")
    expect(page.locator("#flash")).to_have_text("retried 3 of 3 jobs")
    assert runtime.store.stats().queues["billing"].pending == 3

    page.goto("/jobs?queue=emails")
    page.check(f'input[name="job_id"][value="{waiting[0]}"]')
    page.click('button[value="retry:selected"]')  # it waits: nothing to retry
    expect(page.locator("#confirm-question")).to_have_text(
        "None of the 1 selected job can be retried: it waits or runs already."
    )
    expect(page.locator("#confirm-button")).to_have_count(0)

    page.goto("/jobs")
    page.check(f'input[name="job_id"][value="{waiting[0]}"]')
    page.check(f'input[name="job_id"][value="{ended}"]')  # a job that ended: left alone
    page.click('button[value="cancel:selected"]')
    expect(page.locator("#confirm-question")).to_have_text("Cancel 1 of the 2 selected jobs?")
    expect(page.locator("#left-alone")).to_have_text("1 of them is left alone: it ended already.")
    page.click("#confirm-button")
    expect(page.locator("#flash")).to_contain_text("cancelled 1 of 2 jobs; left alone: 1: nothing")
    assert latest_state(runtime, waiting[0]) == AttemptState.CANCELLED
    assert latest_state(runtime, waiting[1]) == AttemptState.PENDING


def test_run_now_wakes_a_worker_and_delete_confirms_how_many(
    page, runtime, start_worker, screenshot
):
    later = Succeed(7).run_in_worker(queue="later", delay=86400)
    assert later is not None
    start_worker("later", runtime=runtime)
    page.goto(f"/jobs/{later.job_id}")
    expect(page.locator("#job-state")).to_have_text("scheduled")
    page.click("#run-now")
    expect(page.locator("#flash")).to_contain_text("starts now (it was scheduled for")
    wait_for(lambda: latest_state(runtime, later.job_id) == AttemptState.SUCCESSFUL, 30)
    page.reload()
    expect(page.locator("#run-now")).to_have_count(0)

    page.click("#delete")
    expect(page.locator("#confirm-question")).to_have_text("Delete the 1 selected job?")
    expect(page.locator("#for-good")).to_contain_text("this cannot be undone")
    screenshot("confirm-delete")
    page.click("#confirm-button")
    expect(page.locator("#flash")).to_have_text("deleted 1 of 1 job")
    assert runtime.store.job_attempts(later.job_id) == []

    for message in ("one", "two"):
        Fail(message).run_in_worker(queue="billing")
    run_jobs(runtime)
    page.goto("/jobs?queue=billing")
    page.click('button[value="delete:matching"]')
    expect(page.locator("#confirm-question")).to_have_text(
        "Delete 2 jobs matching this filter, for good?"
    )
    page.click("#confirm-button")
    expect(page.locator("#flash")).to_have_text("deleted 2 of 2 jobs")
    expect(page.locator("#total")).to_have_text("0 attempts match")


@pytest.mark.parametrize("token", ["", "0" * 64])
def test_a_form_without_or_with_a_wrong_csrf_token_is_refused(page, runtime, token):
    Succeed().run_in_worker(queue="emails")
    page.goto("/queues")
    form = page.locator('#queues tr[data-queue="emails"] form')
    if token:
        form.locator('input[name="csrf_token"]').evaluate("(input, v) => input.value = v", token)
    else:
        form.locator('input[name="csrf_token"]').evaluate("input => input.remove()")
    form.locator('button[value="pause"]').click()
    expect(page.locator("#problem")).to_contain_text("CSRF token is missing or wrong")
    assert runtime.store.paused_queues() == []


def test_a_script_in_parameters_and_error_is_shown_as_text(page, runtime):
    Fail(EVIL).run_in_worker(queue="emails")
    (result,) = run_jobs(runtime)
    page.goto(f"/jobs/{result.job_id}")
    expect(page.locator("#parameters")).to_contain_text(EVIL)
    expect(page.locator("pre.traceback")).to_contain_text(f"ValueError: {EVIL}")
    page.goto("/jobs")
    expect(page.locator("#jobs td.error")).to_contain_text(EVIL)
    assert page.dialogs == []  # and the fixture fails the test if one fires later


def test_the_plugins_page(page, screenshot):
    page.goto("/plugins")
    expect(page.locator('#plugins tr[data-plugin="dashboard"]')).to_contain_text("jobkit-dashboard")
    expect(page.locator('#hooks tr[data-hook="jobkit_store"]')).to_contain_text("firstresult")
    screenshot("plugins")


def test_a_workflow_is_followed_live_from_a_member_s_page(page, runtime, start_worker, screenshot):
    flow = Group([Succeed(1), Succeed(2)], then=Report("done")).run_in_worker(queue="flows")
    page.goto(f"/jobs/{flow.requests[0].job_id}")
    page.click("#workflow-link")
    expect(page.locator("#workflow-state")).to_have_text("waiting")
    expect(page.locator("#links td.status")).to_have_text(["not ended", "not ended"])
    expect(page.locator("#links .callback")).to_contain_text("held until the members have ended")

    start_worker("flows", runtime=runtime)
    expect(page.locator("#links td.status")).to_have_text(
        ["SUCCESSFUL", "SUCCESSFUL"], timeout=WAIT
    )  # refreshed in place
    expect(page.locator("#links .callback")).to_contain_text("successful", timeout=WAIT)
    expect(page.locator("#workflow-state")).to_have_text("ended")
    expect(page.locator("#cancel-workflow")).to_have_count(0)
    screenshot("workflow")
