"""The discover_jobs setting: ``Runtime.import_jobs`` imports the ``jobs`` modules of the listed
packages (``pkg.jobs`` and ``pkg.<subpackage>.jobs``, as plain finds ``app/jobs.py`` and
``app/<pkg>/jobs.py``), tried on small package trees written for each test."""

from __future__ import annotations

import datetime
import re
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobkit.errors import SettingsError
from jobkit.records import JobProcess, Status
from jobkit.runtime import Runtime
from jobkit.settings import Settings, load_settings

Tree = Callable[[dict[str, str]], str]

NOT_TO_IMPORT = 'raise RuntimeError("discovery imported a package it had no reason to")\n'


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tree]:
    """``package({"jobs.py": "...", "sub/__init__.py": ""})`` writes a package of a new name
    (with its ``__init__.py``) on ``sys.path`` and returns that name; its modules are forgotten
    after the test."""
    monkeypatch.chdir(tmp_path)  # no jobkit.toml or pyproject.toml of the checkout
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(files: dict[str, str]) -> str:
        name = f"discovered_{secrets.token_hex(4)}"
        names.append(name)
        for path, text in {"__init__.py": "", **files}.items():
            file = tmp_path / name / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
        return name

    yield write
    for module in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[module]


def import_jobs(**settings: list[str]) -> Runtime:
    runtime = Runtime.from_settings(Settings(**settings), load_entrypoints=False)
    runtime.import_jobs()
    return runtime


def test_the_jobs_modules_of_a_package_and_its_subpackages_are_imported(package):
    name = package(
        {
            "jobs.py": "",
            "billing/__init__.py": "",
            "billing/jobs/__init__.py": "",  # a jobs package is imported as a package
            "emails/__init__.py": "",
            "emails/jobs.py": "",
            "emails/templates.py": NOT_TO_IMPORT,
            "untouched/__init__.py": NOT_TO_IMPORT,  # no jobs module: not even looked into
            "untouched/deeper/__init__.py": "",
            "untouched/deeper/jobs.py": NOT_TO_IMPORT,  # two levels down: list its package
            "notes.txt": "",
        }
    )

    runtime = import_jobs(discover_jobs=[name])

    assert runtime.job_modules == [f"{name}.jobs", f"{name}.billing.jobs", f"{name}.emails.jobs"]
    assert all(module in sys.modules for module in runtime.job_modules)
    assert f"{name}.untouched" not in sys.modules


def test_imports_come_first_and_a_module_found_twice_is_imported_once(package):
    name = package({"jobs.py": "", "extra.py": ""})

    runtime = import_jobs(imports=[f"{name}.extra", f"{name}.jobs"], discover_jobs=[name])

    assert runtime.job_modules == [f"{name}.extra", f"{name}.jobs"]


def test_a_package_without_a_jobs_module_is_an_error_that_says_what_was_looked_for(package):
    name = package({"tasks.py": "", "sub/__init__.py": "", "sub/tasks.py": ""})

    message = (
        f"setting discover_jobs lists {name!r}, which has no jobs module: neither {name}.jobs nor "
        f"{name}.<subpackage>.jobs exists; list the modules that define your jobs in the imports "
        f"setting instead"
    )
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        import_jobs(discover_jobs=[name])


def test_a_jobs_module_that_fails_to_import_is_named(package):
    name = package({"emails/__init__.py": "", "emails/jobs.py": "1 / 0\n"})

    with pytest.raises(SettingsError) as raised:
        import_jobs(discover_jobs=[name])
    lines = str(raised.value).splitlines()
    assert lines[0] == (
        f"setting discover_jobs found '{name}.emails.jobs' in {name!r}, which failed to import:"
    )
    assert lines[1].strip().startswith('File "') and "emails/jobs.py" in lines[1]
    assert "1 / 0" in lines[2]
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_a_package_that_cannot_be_imported_is_named(package):
    message = (
        "setting discover_jobs lists 'no_such_package_here', which failed to import:\n"
        "ModuleNotFoundError: No module named 'no_such_package_here'"
    )
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        import_jobs(discover_jobs=["no_such_package_here"])


def test_a_module_is_not_a_package_to_discover_in(package):
    name = package({"jobs.py": ""})

    message = (
        f"setting discover_jobs lists '{name}.jobs', a module, not a package: list it in the "
        f"imports setting instead"
    )
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        import_jobs(discover_jobs=[f"{name}.jobs"])


def test_discover_jobs_is_read_from_the_environment_comma_separated(tmp_path):
    settings = load_settings(environ={"JOBKIT_DISCOVER_JOBS": "myapp, otherapp"}, cwd=tmp_path)

    assert settings.discover_jobs == ["myapp", "otherapp"]


def test_a_job_no_module_registered_is_errored_naming_the_discovered_modules(package):
    name = package({"jobs.py": ""})
    runtime = import_jobs(discover_jobs=[name])
    now = datetime.datetime.now(datetime.UTC)
    process = JobProcess(
        job_name="app.Missing",
        parameters='{"args": [], "kwargs": {}}',
        worker_id=uuid.UUID(int=0),
        claimed_at=now,
        start_at=now,
        created_at=now,
    )

    outcome = runtime.run_attempt(process)

    assert outcome.status is Status.ERRORED
    assert f"this worker imported {name}.jobs (the imports and discover_jobs settings)" in (
        outcome.error
    )
