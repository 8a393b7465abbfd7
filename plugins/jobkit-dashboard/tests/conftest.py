"""Fixtures for the dashboard's tests, written as an outside author would: jobkit's pytest
plugin (``jobkit_runtime_factory``, ``jobkit_settings``) for the database, a real ``jobkit
worker`` subprocess, the dashboard served by uvicorn in a thread, and Playwright driving
Debian's Chromium (``/usr/bin/chromium``; Playwright's own browser download is not used)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dashboard_jobs  # noqa: F401 - registers the test jobs in this process
import pytest
import uvicorn
from jobkit_dashboard import create_app

from jobkit.testing import settings_environ, wait_for

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("JOBKIT_DASHBOARD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = HERE.parent / "docs"
DOC_SCREENSHOTS = ("overview", "job")
"""The screenshots the README shows: copied into docs/ when JOBKIT_DASHBOARD_SAVE_SCREENSHOTS=1."""


@pytest.fixture
def runtime(jobkit_runtime_factory, monkeypatch):
    """A runtime on the test schema (empty tables) with its plugins from the installed entry
    points, this one among them."""
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return jobkit_runtime_factory()


@pytest.fixture
def worker_env(jobkit_settings) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBKIT_")}
    env.update(settings_environ(jobkit_settings))
    env.update(
        JOBKIT_IMPORTS="dashboard_jobs",
        JOBKIT_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONPATH=os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def jobkit_command() -> list[str]:
    script = Path(sys.executable).with_name("jobkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobkit"]


@pytest.fixture
def start_worker(worker_env, tmp_path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start_worker(*queues)`` starts ``jobkit worker -q ...`` in a process group of its own
    and waits until it has registered; every group started is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*queues: str, runtime: Any) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started) + 1}.log").open("wb")
        before = {worker.id for worker in runtime.store.workers()}
        args = [arg for queue in queues for arg in ("-q", queue)]
        process = subprocess.Popen(
            [*jobkit_command(), "worker", "--max-processes", "2", *args],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(process)
        wait_for(
            lambda: (
                {worker.id for worker in runtime.store.workers()} - before
                or process.poll() is not None
            ),
            message="the worker to register",
        )
        assert process.poll() is None, (tmp_path / "worker-1.log").read_text()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """The dashboard served by uvicorn in a thread of the test process."""

    def __init__(self, app: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for(lambda: self.server.started, message="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served(runtime) -> Iterator[Served]:
    with Served(create_app(runtime, refresh=1.0)) as serving:
        yield serving


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            f"(or set JOBKIT_DASHBOARD_CHROMIUM)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser, served, tmp_path) -> Iterator[Any]:
    """A fresh browser page on the served dashboard. Any dialog (``alert``) fails the test;
    any request to a host other than the dashboard's is refused and recorded."""
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 800})
    outside: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(served.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()
    assert dialogs == [], f"a dialog fired: {dialogs}"
    assert outside == [], f"the page asked for outside resources: {outside}"


@pytest.fixture
def screenshot(page, tmp_path) -> Callable[[str], Path]:
    """``screenshot(name)`` saves the page under the test's tmp_path (and returns the path)."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("JOBKIT_DASHBOARD_SAVE_SCREENSHOTS") and name in DOC_SCREENSHOTS:
            SCREENSHOTS.mkdir(exist_ok=True)
            shutil.copy(path, SCREENSHOTS / path.name)
        return path

    return take
