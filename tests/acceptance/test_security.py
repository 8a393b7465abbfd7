"""Security promises, against real ``jobkit`` processes and the test database: modules lying in
the current directory never shadow installed ones."""

from __future__ import annotations

import pytest

from testapp.jobs import ledger

pytestmark = pytest.mark.acceptance


# The current directory on sys.path -------------------------------------------------------------

SHADOWS = ("psycopg_pool", "click", "threading")
"""Installed and standard-library modules that a file in the current directory could shadow:
click is imported by the command line, psycopg_pool by the store, threading while a pool child
boots."""

PROJECT_JOBS = """
from jobkit import Job, register_job
from testapp.jobs import record


@register_job(name="cwdjobs.FromTheCurrentDirectory")
class FromTheCurrentDirectory(Job):
    def run(self):
        record(self, "cwdjobs", "ran")
"""


def test_modules_in_the_current_directory_never_shadow_installed_ones(
    run_cli, start_worker, jobkit_runtime, jobkit_settings, ledger_ready, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    for name in SHADOWS:
        (project / f"{name}.py").write_text(
            f"import pathlib\npathlib.Path(__file__).with_suffix('.imported').touch()\n"
            f"raise ImportError('{name} was imported from the current directory')\n"
        )
    (project / "cwdjobs.py").write_text(PROJECT_JOBS)
    env = {"JOBKIT_IMPORTS": "cwdjobs"}

    enqueued = run_cli("enqueue", "cwdjobs.FromTheCurrentDirectory", cwd=project, env=env)
    stats = run_cli("stats", cwd=project, env=env)
    worker = start_worker("--burst", "--max-processes", "2", cwd=project, env=env)
    exit_code = worker.wait_for_exit()

    assert sorted(path.name for path in project.glob("*.imported")) == []
    assert enqueued.returncode == 0, enqueued.stderr
    assert stats.returncode == 0, stats.stderr
    assert exit_code == 0, worker.output()
    # The imports setting still finds the project's own module there, in the pool children too.
    assert [(key, phase) for key, phase, _, _ in ledger(jobkit_settings)] == [("cwdjobs", "ran")]
