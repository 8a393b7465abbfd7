"""What a newcomer (from plain.jobs or plain.worker, often) runs into in the first hour, run as
they would run it: a script that defines and enqueues a job, a worker that finds the job modules
of a package by itself, and settings given by plain's names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

SCRIPT = """
from pathlib import Path

from jobkit import Job, register_job


@register_job{registration}
class Greet(Job):
    def run(self):
        Path(__file__).with_name("greeted").write_text("yes")


if __name__ == "__main__":
    print(Greet().run_in_worker().id)
"""


def run_script(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path)],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_script_enqueueing_its_own_job_is_refused_with_the_fixes(
    jobkit_runtime, subprocess_env, tmp_path, db
):
    script = tmp_path / "greeter.py"
    script.write_text(textwrap.dedent(SCRIPT.format(registration="")))

    result = run_script(script, subprocess_env)

    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"jobkit.errors.UnknownJobError: Greet is defined in the script being run ({script}), "
        f"which Python names __main__, so it is registered as '__main__.Greet': a name no worker "
        f"knows"
    )
    assert '@register_job(name="Greet"), and list this file\'s module (greeter)' in last
    assert db.count("requests") == 0


def test_a_job_of_a_script_named_with_register_job_runs_in_a_worker(
    jobkit_runtime, subprocess_env, run_cli, tmp_path, db
):
    script = tmp_path / "greeter.py"
    script.write_text(textwrap.dedent(SCRIPT.format(registration='(name="greet")')))

    enqueued = run_script(script, subprocess_env)
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    worker = run_cli("worker", "--burst", env={"JOBKIT_IMPORTS": "greeter"}, cwd=tmp_path)

    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert db.query("SELECT id::text, job_name, status FROM {schema}.results") == [
        (enqueued.stdout.strip(), "greet", "SUCCESSFUL")
    ]
    assert (tmp_path / "greeted").read_text() == "yes"


SHIP_ORDER = """
from pathlib import Path

from jobkit import Job, register_job


@register_job
class ShipOrder(Job):
    def __init__(self, order_id: int):
        self.order_id = order_id

    def run(self):
        (Path(__file__).parents[2] / f"shipped-{self.order_id}").write_text("yes")
"""


def test_a_worker_discovers_the_jobs_modules_of_a_package(jobkit_runtime, run_cli, tmp_path, db):
    for path, text in {
        "discoshop/__init__.py": "",
        "discoshop/orders/__init__.py": "",
        "discoshop/orders/jobs.py": SHIP_ORDER,
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))
    settings = {"JOBKIT_IMPORTS": None, "JOBKIT_DISCOVER_JOBS": "discoshop"}

    listed = run_cli("list", env=settings, cwd=tmp_path)
    enqueued = run_cli(
        "enqueue", "discoshop.orders.jobs.ShipOrder", "--args", "[7]", env=settings, cwd=tmp_path
    )
    worker = run_cli("worker", "--burst", "--max-processes", "1", env=settings, cwd=tmp_path)

    assert "discoshop.orders.jobs.ShipOrder" in listed.stdout.splitlines(), listed.stderr
    assert enqueued.returncode == 0, enqueued.stderr
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert db.query("SELECT id::text, status FROM {schema}.results") == [
        (enqueued.stdout.strip(), "SUCCESSFUL")
    ]
    assert (tmp_path / "shipped-7").read_text() == "yes"
