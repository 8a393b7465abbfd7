"""jobkit ships ``py.typed``, so a type checker run on an app checks its calls into jobkit: the
mistakes its signatures rule out are caught before the app runs (``mypy --strict``, as a user
would run it, on a small app module)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

APP = """
import datetime

from jobkit import Job, JobState, Stage, Status, enqueue_many, get_result, job_state, register_job


@register_job
class WelcomeUserJob(Job):
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    def run(self) -> None:
        print(self.user_id)

    def default_queue(self) -> str:
        return "emails"


@register_job(name="cleanup")
class CleanupJob(Job):
    def run(self) -> None:
        pass


def enqueue() -> None:
    request = WelcomeUserJob(42).run_in_worker(priority=10, delay=datetime.timedelta(seconds=5))
    if request is not None:
        result = get_result(request.id)
        if result is not None and result.status is Status.ERRORED:
            print(result.error)
        state: JobState = job_state(request.id)
        if state.stage is Stage.FINISHED and state.result is not None:
            print(state.result.status)
    enqueue_many([WelcomeUserJob(1), CleanupJob()], queue="emails")
"""


def mypy_strict(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(source))
    cache = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache, "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_jobkit_ships_its_py_typed_marker():
    assert resources.files("jobkit").joinpath("py.typed").is_file()


def test_an_app_using_jobkit_passes_mypy_strict(tmp_path):
    checked = mypy_strict(tmp_path, APP)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_mypy_strict_catches_a_wrong_argument_type_in_an_app(tmp_path):
    checked = mypy_strict(tmp_path, APP + '\nWelcomeUserJob(42).run_in_worker(priority="high")\n')

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'Argument "priority" to "run_in_worker" of "Job" has incompatible type "str"' in (
        checked.stdout
    )
    assert "Found 1 error" in checked.stdout
