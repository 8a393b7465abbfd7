"""Serving the dashboard: the ``jobkit dashboard`` command as a subprocess, and the app mounted
under a prefix in another Starlette application."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import urllib.request

from dashboard_jobs import Succeed
from jobkit_dashboard import create_app
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conftest import free_port, jobkit_command
from jobkit.testing import wait_for


def test_jobkit_dashboard_serves_and_says_where(worker_env, runtime):
    Succeed().run_in_worker(queue="emails")
    env = dict(worker_env)
    env.pop("JOBKIT_DISABLE_PLUGIN_AUTOLOAD")
    port = free_port()
    process = subprocess.Popen(
        [*jobkit_command(), "dashboard", "--port", str(port), "--read-only"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == (
            f"Serving the jobkit dashboard on http://127.0.0.1:{port} (read-only; Ctrl-C to stop)\n"
        )

        def overview() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                return ""

        html = wait_for(overview, message="the dashboard to answer")
        assert 'data-queue="emails"' in html
        assert "read-only" in html

        # DNS rebinding: a page of another domain pointed at 127.0.0.1 is not answered.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/", headers={"Host": f"attacker.example:{port}"})
        assert connection.getresponse().status == 400
        connection.close()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)


def test_the_app_mounts_under_a_prefix(runtime):
    Succeed().run_in_worker(queue="emails")
    outer = Starlette(routes=[Mount("/ops/jobs", app=create_app(runtime))])
    with TestClient(outer, base_url="http://127.0.0.1") as client:
        page = client.get("/ops/jobs/queues")
        assert page.status_code == 200
        assert 'href="/ops/jobs/static/dashboard.css"' in page.text
        assert 'action="/ops/jobs/queues"' in page.text
        assert client.get("/ops/jobs/static/dashboard.js").status_code == 200
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        done = client.post(
            "/ops/jobs/queues",
            data={"queue": "emails", "action": "pause", "csrf_token": token},
            follow_redirects=False,
        )
        assert (done.status_code, done.headers["location"]) == (303, "/ops/jobs/queues")
        assert "paused emails" in client.get("/ops/jobs/queues").text
