"""What the files tell jobkit: every JOBKIT_* variable is a setting jobkit reads, with a value it
accepts; and every health check they run passes for a real live worker and fails once it
stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
from deployfiles import (
    compose,
    dockerfile_environment,
    kubernetes,
    kubernetes_environment,
    probe_commands,
    seconds,
    unit_command,
    unit_directives,
)

from jobkit import Settings
from jobkit.testing import settings_environ

JOBKIT = str(Path(sys.executable).with_name("jobkit"))


def environments() -> dict[str, dict[str, str]]:
    """The literal environment each file gives jobkit, by where it is."""
    found = {"Dockerfile": dockerfile_environment()}
    for name, service in compose()["services"].items():
        if name != "postgres":
            found[f"compose {name}"] = {
                key: str(value) for key, value in service["environment"].items()
            }
    for kind, manifest in kubernetes().items():
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            found[f"Kubernetes {kind} {container['name']}"] = kubernetes_environment(container)
    return found


def test_every_jobkit_variable_names_a_setting(jobkit_runtime_factory, monkeypatch):
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    runtime = jobkit_runtime_factory()  # with every installed plugin's settings section
    known = {f"JOBKIT_{field.name.upper()}" for field in attrs.fields(Settings)}
    for section, values in runtime.settings.sections.items():
        known |= {
            f"JOBKIT_{section.upper()}_{field.name.upper()}" for field in attrs.fields(type(values))
        }
    for where, environment in environments().items():
        unknown = {name for name in environment if name.startswith("JOBKIT_")} - known
        assert not unknown, f"{where}: {unknown} are no settings (is the plugin installed?)"


def test_jobkit_accepts_every_value_the_files_set(tmp_path):
    """``jobkit list`` reads the settings (and imports the imports setting's modules) as a
    worker does at start-up, and stops with the setting's name on a bad value."""
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "jobs.py").write_text('"""Stands for the app the files name."""\n')
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JOBKIT_", "OTEL_"))
    }
    for where, environment in environments().items():
        done = subprocess.run(
            [JOBKIT, "list"],
            env={**base, **environment, "JOBKIT_DISABLE_PLUGIN_AUTOLOAD": "1"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{where}: {done.stderr}"


def run_probe(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert command[0] == "jobkit"
    return subprocess.run(
        [JOBKIT, *command[1:]], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_health_checks_pass_for_a_live_worker_and_fail_once_it_stopped(
    jobkit_runtime, jobkit_settings
):
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("JOBKIT_")},
        **settings_environ(jobkit_settings),
        "JOBKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "JOBKIT_WORKER_MAX_PROCESSES": "1",
    }
    # The worker exactly as the systemd unit starts it, with this environment's jobkit.
    worker = subprocess.Popen(
        [JOBKIT, *unit_command()[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while run_probe(["jobkit", "workers", "--check"], env).returncode != 0:
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "the worker did not register within 60 s"
            time.sleep(0.2)
        for where, command in probe_commands().items():
            done = run_probe(command, env)
            assert done.returncode == 0, f"{where}: {done.stderr}"
            assert done.stdout.startswith("ok: worker ") and f"(pid {worker.pid}," in done.stdout

        os.killpg(worker.pid, signal.SIGTERM)  # as systemd's KillMode=control-group does
        stop = seconds(unit_directives()["Service"]["TimeoutStopSec"])
        assert worker.wait(timeout=stop) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        worker.stderr.close()

    for where, command in probe_commands().items():
        done = run_probe(command, env)
        assert done.returncode == 1, f"{where}: {done.stdout}"
        assert done.stderr.startswith("unhealthy: no worker of host "), f"{where}: {done.stderr}"
