"""The container image recipe and the compose file: jobkit as the process Docker signals (no
shell in between), a stop grace longer than jobkit's, migrations before workers, and the
dashboard behind a token."""

from __future__ import annotations

from deployfiles import (
    DEFAULTS,
    GRACE_MARGIN,
    compose,
    dockerfile_environment,
    dockerfile_exec_form,
    dockerfile_instructions,
    seconds,
    shutdown_timeout,
)


def test_the_image_runs_a_worker_as_a_user_and_stops_it_with_sigterm():
    instructions = dict(dockerfile_instructions())
    assert instructions["FROM"].startswith("python:3.")
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    assert instructions["USER"] not in ("root", "0")
    assert dockerfile_exec_form("CMD") == ["jobkit", "worker"]
    check = dockerfile_exec_form("HEALTHCHECK")
    assert check[:3] == ["jobkit", "workers", "--check"]
    assert float(dockerfile_environment()["JOBKIT_SHUTDOWN_TIMEOUT"]) == DEFAULTS.shutdown_timeout


def test_compose_gives_the_worker_longer_than_its_grace_period_to_stop():
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "worker", "dashboard"}
    worker = services["worker"]
    assert worker["command"][:2] == ["jobkit", "worker"]
    grace = shutdown_timeout(worker["command"], worker["environment"])
    stop = seconds(worker["stop_grace_period"])
    assert stop > DEFAULTS.shutdown_timeout
    assert stop >= grace + GRACE_MARGIN
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["restart"] == "on-failure"
    assert worker["init"] is True  # reaps what a job's subprocesses leave behind
    assert worker["healthcheck"]["test"][1:4] == ["jobkit", "workers", "--check"]


def test_compose_migrates_before_the_worker_and_dashboard_start():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["jobkit", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "dashboard"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    for name in ("migrate", "worker", "dashboard"):
        url = services[name]["environment"]["JOBKIT_DATABASE_URL"]
        assert url.startswith("postgresql://") and "@postgres:5432/" in url


def test_compose_postgres_has_autovacuum_on_and_room_for_the_connections():
    postgres = compose()["services"]["postgres"]
    settings = dict(
        postgres["command"][i + 1].split("=", 1)
        for i, word in enumerate(postgres["command"])
        if word == "-c"
    )
    assert settings["autovacuum"] == "on"
    # docs/deployment.md: a worker holds 4 connections (up to 12 when its side duties pile up),
    # the dashboard up to 10, each probe 1; leave room to scale the workers.
    assert int(settings["max_connections"]) >= 10 * 12 + 10 + 10


def test_compose_dashboard_listens_beyond_loopback_only_with_a_token():
    dashboard = compose()["services"]["dashboard"]
    command = dashboard["command"]
    assert command[:2] == ["jobkit", "dashboard"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert dashboard["environment"]["JOBKIT_DASHBOARD_TOKEN"]
    assert all(port.startswith("127.0.0.1:") for port in dashboard["ports"])
    # The image's HEALTHCHECK looks for a worker, which the dashboard's container has none of.
    assert dashboard["healthcheck"] == {"disable": True}
