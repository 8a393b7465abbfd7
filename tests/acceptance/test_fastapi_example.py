"""examples/fastapi_app for real: the app under uvicorn and a ``jobkit worker``, both as
subprocesses on the test database. An order and its job are committed together, read back
with the job's output once the worker ran it, and rolled back together."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.acceptance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def app_schema(jobkit_settings) -> Iterator[str]:
    """A schema of its own for the app's table; dropped afterwards."""
    schema = f"fastapi_example_{secrets.token_hex(4)}"
    yield schema
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
def example_env(subprocess_env, jobkit_settings, app_schema) -> dict[str, str]:
    return dict(
        subprocess_env,
        DATABASE_URL=jobkit_settings.database_url,
        APP_SCHEMA=app_schema,
        JOBKIT_IMPORTS="fastapi_app.jobs",
        PYTHONPATH=str(EXAMPLES),
    )


@pytest.fixture
def app_url(example_env, tmp_path, wait_until) -> Iterator[str]:
    """The example app served by uvicorn on a free port; stopped with SIGTERM at the end, which
    it must survive without a traceback (its lifespan closes jobkit's async pool)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastapi_app.app:app", "--port", str(port)],
            env=example_env,
            cwd=EXAMPLES,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, log_path.read_text()
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/orders/0").status_code == 404
        return False

    try:
        wait_until(answers, 30)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then ends by the signal it was sent.
        assert server.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    assert "Application shutdown complete" in output, output


def test_an_order_and_its_job_commit_together_and_the_result_is_read_back(
    jobkit_runtime, app_url, start_worker, example_env, db, wait_until
):
    start_worker(
        env={name: example_env[name] for name in ("DATABASE_URL", "APP_SCHEMA")}
        | {
            "JOBKIT_IMPORTS": "fastapi_app.jobs",
            "PYTHONPATH": str(EXAMPLES),
        }
    )
    created = httpx.post(f"{app_url}/orders", json={"item": "tea", "quantity": 2})
    assert created.status_code == 201, created.text
    order_id, job_id = created.json()["order_id"], created.json()["job_id"]

    def confirmed() -> dict | None:
        order = httpx.get(f"{app_url}/orders/{order_id}").json()
        return order if order["job"]["status"] != "waiting" else None

    order = wait_until(confirmed, 30)
    assert order == {
        "order_id": order_id,
        "item": "tea",
        "quantity": 2,
        "status": "confirmed",
        "job": {
            "id": job_id,
            "status": "SUCCESSFUL",
            "output": {"order_id": order_id, "confirmed": "2 x tea"},
        },
    }

    # The stock check fails after the enqueue: the order and its job roll back together.
    refused = httpx.post(f"{app_url}/orders", json={"item": "tea", "quantity": 11})
    assert refused.status_code == 409, refused.text
    confirmations = ("job_name = %s", ("fastapi_app.ConfirmOrder",))
    assert db.count("requests", *confirmations) + db.count("processes", *confirmations) == 0
    assert db.count("results", *confirmations) == 1
    orders = sql.Identifier(example_env["APP_SCHEMA"], "orders")
    with psycopg.connect(db.url, autocommit=True) as connection:
        rows = connection.execute(sql.SQL("SELECT id FROM {}").format(orders)).fetchall()
    assert rows == [(order_id,)]


def test_bad_input_is_refused_with_a_clear_error(jobkit_runtime, app_url, db):
    response = httpx.post(f"{app_url}/orders", json={"item": "tea", "quantity": 0})
    assert response.status_code == 422
    assert "greater than 0" in response.text
    assert httpx.get(f"{app_url}/orders/12345").json() == {"detail": "no order 12345"}
    assert db.count("requests", "job_name = %s", ("fastapi_app.ConfirmOrder",)) == 0
