"""Security promises, against real ``jobkit`` processes and the test database: a row never
reaches a shell, no password reaches any output, and modules lying in the current directory
never shadow installed ones."""

from __future__ import annotations

import json
import re
import signal
import uuid

import pytest

from jobkit import Status
from testapp.jobs import Record, ledger
from testapp.secret_jobs import QuoteDatabaseUrl

pytestmark = pytest.mark.acceptance


# A row never reaches a shell -------------------------------------------------------------------


def test_a_row_runs_no_command_but_those_of_the_workers_own_schedule(
    run_cli, start_worker, jobkit_runtime, jobkit_settings, ledger_ready, db, tmp_path, wait_until
):
    configured_log, owned = tmp_path / "configured.log", tmp_path / "owned"
    env = {
        "JOBKIT_PLUGINS": "testapp.schedule_plugin",
        "JOBKIT_SCHEDULE": json.dumps(
            [{"job": f"cmd:echo ran >> {configured_log}", "schedule": "every 2 seconds"}]
        ),
    }
    # Whoever can write a row, or run `jobkit enqueue`, names the built-in job with a command.
    enqueued = run_cli(
        "enqueue", "jobkit.ScheduledCommand", "--args", json.dumps([f"touch {owned}"]), env=env
    )
    job_id = uuid.uuid4()
    db.query(
        "INSERT INTO {schema}.requests (id, job_id, job_name, parameters, queue, retries) "
        "VALUES (%(id)s, %(id)s, 'jobkit.ScheduledCommand', %(parameters)s, 'default', 3)",
        {"id": job_id, "parameters": json.dumps({"args": [f"touch {owned}"], "kwargs": {}})},
    )
    jobkit_runtime.enqueue(Record("after the row"))

    worker = start_worker("--max-processes", "1", env=env)
    wait_until(
        lambda: configured_log.exists() and ledger(jobkit_settings),
        30,
        message="the configured command and the job after the row ran",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()

    assert not owned.exists()
    assert enqueued.returncode == 1, enqueued.stdout
    assert "Traceback" not in enqueued.stderr, enqueued.stderr
    assert enqueued.stderr.startswith(
        f"Error: jobkit.ScheduledCommand runs only the cmd: entries of this process's schedule, "
        f"and none has the key 'touch {owned}'"
    ), enqueued.stderr
    rows_with_the_command = db.query(
        " UNION ALL ".join(
            f"SELECT job_id FROM {{schema}}.{table} WHERE parameters #>> '{{{{args,0}}}}' = %s"
            for table in ("requests", "processes", "results")
        ),
        [f"touch {owned}"] * 3,
    )
    assert rows_with_the_command == [(job_id,)]  # the inserted row's result; `enqueue` added none
    [(status, error_type, error, retry)] = db.query(
        "SELECT status, error_type, error, retry_request_id FROM {schema}.results "
        "WHERE job_id = %s",
        [job_id],
    )
    assert (status, error_type, retry) == ("ERRORED", "jobkit.errors.ParameterError", None)
    assert f"none has the key 'touch {owned}'" in error
    assert configured_log.read_text().startswith("ran\n")
    assert [(key, phase) for key, phase, _, _ in ledger(jobkit_settings)] == [
        ("after the row", "start"),
        ("after the row", "end"),
    ]


# No password in any output ---------------------------------------------------------------------

PASSWORD = "Sekr1t-pw"


def test_a_password_in_the_database_url_reaches_no_output(
    run_cli, start_worker, wait_until, jobkit_runtime, jobkit_settings, db, make_role
):
    url = make_role(password=PASSWORD)
    masked = url.replace(PASSWORD, "***")
    request = jobkit_runtime.enqueue(QuoteDatabaseUrl())
    env = {
        "JOBKIT_DATABASE_URL": url,
        "JOBKIT_IMPORTS": "testapp.jobs,testapp.secret_jobs",
        "JOBKIT_WORKER_STATS_EVERY": "0.2",
        "JOBKIT_OTEL_SDK": "environment",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
    }

    worker = start_worker("--max-processes", "1", env=env)
    wait_until(lambda: jobkit_runtime.get_result(request.id), message="the job's result")
    wait_until(lambda: "worker stats" in worker.output(), message="a stats line")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()
    stats = run_cli("stats", env=env)
    stats_json = run_cli("stats", "--json", env=env)

    result = jobkit_runtime.get_result(request.id)
    assert result.status is Status.ERRORED
    assert result.error.endswith(f"RuntimeError: could not use {masked}\n")
    [[logged_error]] = db.query("SELECT error FROM {schema}.results")
    output = worker.output()
    assert PASSWORD not in logged_error + output + stats.stdout + stats.stderr + stats_json.stdout
    assert "worker stats" in output and " started: " in output
    assert f"connecting to {masked}" in output  # the job's own log line
    assert re.search(
        rf"QuoteDatabaseUrl {request.job_id} \(attempt 1 of 1\) ERRORED in [\d.]+ s, "
        rf"waited [\d.]+ s: RuntimeError",
        output,
    ), output
    assert f'"description": "RuntimeError: could not use {masked}"' in output  # the span
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats_json.stdout)["errored"] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"postgres//app:{PASSWORD}@db.example/app",
            "Error: setting database_url (from JOBKIT_DATABASE_URL) must be a URL such as "
            "postgresql://user@host:5432/dbname, got 'postgres//app:***@db.example/app'",
        ),
        (
            f"host=db.example user=app password={PASSWORD}",
            "Error: setting database_url (from JOBKIT_DATABASE_URL) must be a URL such as "
            "postgresql://user@host:5432/dbname, got 'host=db.example user=app password=***'",
        ),
        (
            f"postgresql://app:{PASSWORD} x@db.example/app",
            "Error: the database_url setting (e.g. JOBKIT_DATABASE_URL) is not a URL PostgreSQL "
            'can read: unexpected spaces found in "***", use percent-encoded spaces (%20) '
            "instead; percent-encode spaces, '@', ':' and '/' in the user name and password",
        ),
    ],
)
@pytest.mark.parametrize("command", ["stats", "worker"])
def test_a_malformed_database_url_is_refused_without_its_password(run_cli, command, url, message):
    result = run_cli(command, env={"JOBKIT_DATABASE_URL": url})

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert result.stderr.startswith(message), result.stderr


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
