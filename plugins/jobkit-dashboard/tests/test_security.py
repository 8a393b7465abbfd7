"""The dashboard's security rules and pages through Starlette's TestClient (httpx): tokens,
CSRF, read-only mode, escaping, headers, secrets, and the command's refusal to bind a public
address without a token."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import attrs
import pytest
from dashboard_jobs import Fail, Report, Succeed
from jobkit_dashboard import create_app
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conftest import jobkit_command
from jobkit.records import JobFilter, WorkerInfo
from jobkit.testing import run_jobs, wait_for

EVIL = "<script>alert(1)</script>"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found[1]


@pytest.fixture
def client(runtime):
    with TestClient(create_app(runtime), base_url="http://127.0.0.1") as client:
        yield client


def test_the_plugin_loads_from_its_entry_point_with_its_settings(
    jobkit_runtime_factory, monkeypatch
):
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("JOBKIT_DASHBOARD_TOKEN", "s3cret")
    monkeypatch.setenv("JOBKIT_DASHBOARD_READ_ONLY", "true")
    runtime = jobkit_runtime_factory()
    assert runtime.pm.has_plugin("dashboard")
    section = runtime.settings.section("dashboard")
    assert (section.token, section.read_only, section.port) == ("s3cret", True, 8480)
    app = create_app(runtime)
    assert (app.state.dashboard.token, app.state.dashboard.read_only) == ("s3cret", True)


def test_every_page_renders_with_security_headers(client, runtime):
    Fail("nope").run_in_worker(queue="mail")
    run_jobs(runtime)
    for path in [
        "/",
        "/jobs",
        "/jobs?status=failed",
        "/queues",
        "/workers",
        "/schedules",
        "/plugins",
    ]:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert "jobkit_dashboard_csrf" in client.cookies


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(client, runtime):
    Succeed().run_in_worker(queue="mail")
    page = client.get("/queues")
    token = csrf_of(page.text)

    missing = client.post("/queues", data={"queue": "mail", "action": "pause"})
    wrong = client.post(
        "/queues", data={"queue": "mail", "action": "pause", "csrf_token": "0" * 64}
    )
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "CSRF token is missing or wrong" in wrong.text
    assert runtime.store.paused_queues() == []

    cross_site = client.post(
        "/queues",
        data={"queue": "mail", "action": "pause", "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert runtime.store.paused_queues() == []

    right = client.post(
        "/queues",
        data={"queue": "mail", "action": "pause", "csrf_token": token},
        follow_redirects=False,
    )
    assert right.status_code == 303
    assert [pause.queue for pause in runtime.store.paused_queues()] == ["mail"]
    assert "paused mail" in client.get("/queues").text
    (pause,) = runtime.store.paused_queues()
    assert pause.source == "dashboard anonymous@testclient"


def test_a_token_from_another_browser_does_not_pass(runtime):
    app = create_app(runtime)
    with TestClient(app) as alice, TestClient(app) as mallory:
        alice.get("/queues")
        token = csrf_of(mallory.get("/queues").text)
        refused = alice.post("/queues", data={"queue": "x", "action": "pause", "csrf_token": token})
    assert refused.status_code == 403


def test_read_only_hides_actions_and_refuses_posts(runtime):
    Fail("no").run_in_worker(queue="mail")
    (result,) = run_jobs(runtime)
    with TestClient(create_app(runtime, read_only=True)) as client:
        job_page = client.get(f"/jobs/{result.job_id}")
        queues = client.get("/queues")
        listing = client.get("/jobs")
        assert job_page.status_code == 200
        for page in (job_page, queues, listing):
            assert "read-only" in page.text
            assert 'method="post"' not in page.text
        assert "Retry" not in job_page.text
        for path, data in [
            (f"/jobs/{result.job_id}/retry", {}),
            ("/queues", {"queue": "mail", "action": "pause"}),
            ("/jobs/bulk", {"do": "retry:matching"}),
        ]:
            response = client.post(path, data=data)
            assert response.status_code == 403, path
            assert "read-only" in response.text
        assert client.get("/jobs/confirm?do=retry:matching").status_code == 403
    assert len(runtime.store.job_attempts(result.job_id)) == 1


def test_a_token_is_required_when_set(runtime):
    with TestClient(create_app(runtime, token="s3cret")) as client:
        assert client.get("/").status_code == 401
        assert client.get("/").headers["www-authenticate"].startswith("Basic")
        assert client.get("/", auth=("admin", "wrong")).status_code == 401
        assert client.get("/static/dashboard.css").status_code == 401
        assert client.get("/", auth=("admin", "s3cret")).status_code == 200
        bearer = client.get("/", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200


def test_what_comes_from_the_database_is_escaped(client, runtime):
    Fail(EVIL).run_in_worker(queue="mail")
    (result,) = run_jobs(runtime)
    for path in [f"/jobs/{result.job_id}", "/jobs"]:
        html = client.get(path).text
        assert EVIL not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_database_password_is_never_shown(runtime, monkeypatch):
    runtime.store.stats()  # the store connects with the real URL; the pages show the settings'
    url = "postgresql://jobkit:hunter2@db.internal:5432/jobs?sslmode=require&password=hunter3"
    monkeypatch.setattr(runtime, "settings", attrs.evolve(runtime.settings, database_url=url))
    Fail("boom").run_in_worker(queue="mail")
    (result,) = run_jobs(runtime)
    with TestClient(create_app(runtime)) as client:
        for path in ["/", "/jobs", f"/jobs/{result.job_id}", "/queues", "/workers", "/plugins"]:
            html = client.get(path).text
            assert "hunter2" not in html and "hunter3" not in html, path
            assert "jobkit:***@db.internal" in html


def test_an_unknown_job_is_a_404(client):
    assert client.get("/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/jobs/not-a-uuid").status_code == 404


def test_a_bad_filter_says_what_is_wrong(client):
    response = client.get("/jobs?since=yesterday")
    assert response.status_code == 400
    assert "neither a duration" in response.text


def test_the_command_refuses_a_public_address_without_a_token(worker_env):
    env = dict(worker_env)
    env.pop("JOBKIT_DISABLE_PLUGIN_AUTOLOAD")
    refused = subprocess.run(
        [*jobkit_command(), "dashboard", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without authentication" in refused.stderr


def test_failed_counts_move_to_the_background_when_counting_is_slow(runtime, monkeypatch):
    from jobkit_dashboard.app import FailedCounts

    monkeypatch.setattr(FailedCounts, "SYNC_BUDGET", 0.0)  # as if every count were slow
    monkeypatch.setattr(FailedCounts, "MAX_AGE", 0.0)
    Fail("one").run_in_worker(queue="mail")
    run_jobs(runtime)
    with TestClient(create_app(runtime)) as client:  # the app counts when it starts
        counts = client.app.state.dashboard.failed_counts
        wait_for(lambda: counts.counts is not None and not counts.counting, message="warm-up")
        first = client.get("/").text  # the counts made at the start, and their age
        assert 'id="failed-as-of"' in first
        assert re.search(r'id="total-failed">1<', first)
        Fail("two").run_in_worker(queue="mail")
        run_jobs(runtime)
        wait_for(lambda: re.search(r'id="total-failed">2<', client.get("/").text))


def test_the_plugins_page_says_who_answers_each_hook(client):
    html = client.get("/plugins").text
    row = re.search(r'<tr data-plugin="dashboard">.*?</tr>', html, re.S)
    assert row and "jobkit-dashboard 0.1.0" in row[0] and "jobkit_add_commands" in row[0]
    store = re.search(r'<tr data-hook="jobkit_store">.*?</tr>', html, re.S)
    assert store and "firstresult" in store[0] and "jobkit.builtin.postgres" in store[0]


def test_cancel_all_matching_takes_each_waiting_job_once(client, runtime):
    waiting = [Succeed(number).run_in_worker(queue="mail").job_id for number in range(3)]
    other = Succeed().run_in_worker(queue="other").job_id
    confirm = client.get("/jobs/confirm?do=cancel:matching&queue=mail&limit=2")
    assert "Cancel 3 waiting or running jobs matching this filter?" in confirm.text
    done = client.post(
        "/jobs/bulk",
        data={"do": "cancel:matching", "queue": "mail", "csrf_token": csrf_of(confirm.text)},
    )
    assert "cancelled 3 of 3 jobs" in done.text
    states = {job_id: runtime.store.job_attempts(job_id)[-1].state.value for job_id in waiting}
    assert set(states.values()) == {"cancelled"}
    assert runtime.store.job_attempts(other)[-1].state.value == "pending"


def test_run_now_and_delete_from_the_job_page(client, runtime):
    later = Succeed(1).run_in_worker(delay=3600)
    assert later is not None
    page = client.get(f"/jobs/{later.job_id}").text
    assert 'id="run-now"' in page and 'id="delete"' in page
    ran = client.post(f"/jobs/{later.job_id}/run-now", data={"csrf_token": csrf_of(page)})
    assert "starts now (it was scheduled for" in ran.text
    assert runtime.store.job_attempts(later.job_id)[-1].state.value == "pending"
    again = client.post(f"/jobs/{later.job_id}/run-now", data={"csrf_token": csrf_of(page)})
    assert "it is pending already" in again.text
    assert 'id="run-now"' not in again.text  # only a scheduled job has the button

    confirm = client.get(f"/jobs/confirm?do=delete:selected&job_id={later.job_id}")
    assert "Delete the 1 selected job?" in confirm.text
    assert "this cannot be undone" in confirm.text
    deleted = client.post(
        "/jobs/bulk",
        data={"do": "delete:selected", "job_id": str(later.job_id), "csrf_token": csrf_of(page)},
    )
    assert "deleted 1 of 1 job" in deleted.text
    assert runtime.store.job_attempts(later.job_id) == []
    assert client.get(f"/jobs/{later.job_id}").status_code == 404


def test_delete_leaves_a_running_job_alone_and_says_so(client, runtime):
    running = Succeed(2).run_in_worker(queue="busy")
    done = Fail().run_in_worker(queue="busy")
    assert running is not None and done is not None
    worker = runtime.store.register_worker(
        WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=["busy"])
    )
    runtime.store.claim(worker_id=worker.id, queues=["busy"], limit=1)  # the first: running
    page = client.get(f"/jobs/{running.job_id}").text
    assert 'id="delete"' not in page
    ids = [str(running.job_id), str(done.job_id)]
    confirm = client.get("/jobs/confirm", params={"do": "delete:selected", "job_id": ids})
    assert "Delete 1 of the 2 selected jobs?" in confirm.text
    assert "1 of them is left alone: it runs now" in confirm.text
    deleted = client.post(
        "/jobs/bulk",
        data={"do": "delete:selected", "job_id": ids, "csrf_token": csrf_of(confirm.text)},
    )
    assert "deleted 1 of 2 jobs; left alone: 1: it runs now (…)" in deleted.text
    assert [a.state.value for a in runtime.store.job_attempts(running.job_id)] == ["running"]
    assert runtime.store.job_attempts(done.job_id) == []


def test_delete_all_matching_takes_each_job_once_and_counts_jobs(client, runtime):
    flaky = [Fail(str(n)).run_in_worker(queue="mail", retries=1) for n in range(3)]
    run_jobs(runtime)  # each Fail: an errored attempt and its retry, so six attempts of three jobs
    other = Succeed().run_in_worker(queue="other")
    assert all(job is not None for job in flaky) and other is not None
    mail = runtime.store.list_attempts(filter=JobFilter(queues=("mail",)), limit=100)
    assert len(mail) == 6
    confirm = client.get("/jobs/confirm?do=delete:matching&queue=mail")
    assert "Delete 3 jobs matching this filter, for good?" in confirm.text
    done = client.post(
        "/jobs/bulk",
        data={"do": "delete:matching", "queue": "mail", "csrf_token": csrf_of(confirm.text)},
    )
    assert "deleted 3 of 3 jobs" in done.text
    assert all(runtime.store.job_attempts(job.job_id) == [] for job in flaky if job)
    assert runtime.store.job_attempts(other.job_id)[-1].state.value == "pending"


def test_the_overview_draws_throughput_and_failure_rate_as_inline_svg(client, runtime):
    for number in range(3):
        Succeed(number).run_in_worker()
    Fail(EVIL).run_in_worker()
    run_jobs(runtime)
    client.app.state.dashboard.day_chart.make()  # the app made one when it started, with no jobs
    html = client.get("/").text
    hour = re.search(r'<figure class="chart" id="chart-hour">.*?</figure>', html, re.S)
    day = re.search(r'<figure class="chart" id="chart-day">.*?</figure>', html, re.S)
    assert hour and day
    for figure in (hour[0], day[0]):
        assert re.search(r'class="chart-total">4<.*class="chart-failed">1<', figure, re.S)
        assert 'class="chart-rate">25.0%<' in figure
        assert figure.count('class="bar-successful"') == 1  # one bucket holds them all
        assert figure.count('class="bar-failed"') == 1
        assert "ended (1 errored, 3 successful), 25.0% failed</title>" in figure
        assert "<polyline" in figure and "<script" not in figure
    assert hour[0].count('<g class="bar">') == 60 and day[0].count('<g class="bar">') == 24
    assert "http" not in hour[0]  # nothing fetched from anywhere


def test_the_app_makes_the_day_chart_when_it_starts_and_no_page_waits_for_it(runtime):
    Succeed().run_in_worker()
    run_jobs(runtime)
    started = create_app(runtime)
    with TestClient(started, base_url="http://127.0.0.1"):  # runs the app's lifespan
        wait_for(lambda: started.state.dashboard.day_chart.chart, message="the day's chart")
        assert started.state.dashboard.day_chart.chart.total == 1

    # Mounted in another app, it gets no lifespan: the first overview starts the chart and says
    # so, a later one shows it.
    mounted = create_app(runtime)
    outer = Starlette(routes=[Mount("/jobs", app=mounted)])
    with TestClient(outer, base_url="http://127.0.0.1") as client:
        first = client.get("/jobs/").text
        assert "Last day, by hour: being made; it shows on the next refresh." in first
        wait_for(lambda: 'id="chart-day"><figcaption>Last day' not in client.get("/jobs/").text)
        later = re.search(r'id="chart-day">.*?</figure>', client.get("/jobs/").text, re.S)
        assert later and 'class="chart-total">1<' in later[0]


def test_the_schedules_page_shows_each_entry_its_ticks_and_a_wrong_one(
    jobkit_runtime_factory, monkeypatch
):
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    entry = {"job": "dashboard.Succeed", "schedule": "*/5 * * * *", "queue": "mail", "key": "k"}
    runtime = jobkit_runtime_factory(schedule=[entry, ["dashboard.Fail", "@daily"]])
    with TestClient(create_app(runtime), base_url="http://127.0.0.1") as client:
        html = client.get("/schedules").text
    row = re.search(r'<tr data-schedule="k">.*?</tr>', html, re.S)
    assert row and "dashboard.Succeed" in row[0] and "*/5 * * * *" in row[0]
    assert "queue=mail" in row[0] and "never" in row[0]
    assert row[0].count("<br>") == 2  # the next three firings
    assert html.count("<tr data-schedule=") == 2

    wrong = jobkit_runtime_factory(schedule=[["dashboard.Succeed", "61 * * * *"]])
    with TestClient(create_app(wrong), base_url="http://127.0.0.1") as client:
        page = client.get("/schedules")
    assert page.status_code == 200
    assert 'class="problem"' in page.text and "schedule setting, entry 1" in page.text

    empty = jobkit_runtime_factory()
    with TestClient(create_app(empty), base_url="http://127.0.0.1") as client:
        assert "No schedule entry" in client.get("/schedules").text


def test_a_job_page_shows_the_trace_id_the_otel_plugin_stored(client, runtime):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    job = Succeed(1)
    traced = runtime.build_request(job)
    traced.headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}  # as the OTel plugin
    [request] = runtime.enqueue_requests([job], [traced], None)
    page = client.get(f"/jobs/{request.job_id}")
    assert page.status_code == 200
    assert f'<code class="trace-id">{trace_id}</code>' in page.text
    plain = runtime.enqueue(Succeed(2))
    assert 'class="trace-id"' not in client.get(f"/jobs/{plain.job_id}").text


def test_a_first_page_counts_failed_jobs_within_its_budget(runtime, monkeypatch):
    from jobkit_dashboard.app import FailedCounts

    monkeypatch.setattr(FailedCounts, "SYNC_BUDGET", 0.0)  # time for one queue only
    for queue in ("alpha", "beta", "gamma"):
        Fail(queue).run_in_worker(queue=queue)
    run_jobs(runtime)
    with TestClient(create_app(runtime)) as client:
        first = client.get("/").text
        assert 'id="failed-as-of"' in first  # the other queues: counted in the background
        assert first.count('class="n failed"') == 3
        wait_for(lambda: re.search(r'id="total-failed">3<', client.get("/").text))


def test_a_job_page_shows_its_output_as_escaped_pretty_json(client, runtime):
    request = runtime.enqueue(Report({"sent": 3, "note": "<script>alert(1)</script>"}))
    plain = runtime.enqueue(Report(None))
    run_jobs(runtime)
    page = client.get(f"/jobs/{request.job_id}").text
    assert '<pre class="output">{\n  &#34;note&#34;: &#34;&lt;script&gt;' in page
    assert "&#34;sent&#34;: 3\n}</pre>" in page
    assert 'class="output"' not in client.get(f"/jobs/{plain.job_id}").text
