"""The ``jobkit`` command line, run as a subprocess against the test database."""

from __future__ import annotations

import datetime
import getpass
import json
import re
import secrets
import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from jobkit.records import STAT_KEYS, Completion, Outcome, Status, WorkerInfo
from jobkit.testing.inline import run_jobs
from testapp.jobs import Defer, Fail, Noop, Record, ledger

MIGRATIONS = Path(__file__).parents[2] / "src/jobkit/builtin/postgres/sql/migrations"

pytestmark = pytest.mark.acceptance

JOB_NAMES = [
    "jobkit.ScheduledCommand",
    "testapp.Lifecycle",
    "testapp.Record",
    "testapp.Tally",
    "testapp.jobs.Collect",
    "testapp.jobs.Defer",
    "testapp.jobs.Fail",
    "testapp.jobs.ImportCats",
    "testapp.jobs.Increment",
    "testapp.jobs.Noop",
    "testapp.jobs.Returns",
    "testapp.jobs.Square",
    "testapp.jobs.Typed",
]
BUILTINS = {
    "jobkit.builtin.postgres": "jobkit_store",
    "jobkit.builtin.serializers": "jobkit_serializer",
    "jobkit.builtin.locks": "jobkit_enqueue_lock",
    "jobkit.builtin.embedded": "jobkit_database_url",
    "jobkit.builtin.cron": "jobkit_parse_schedule",
    "jobkit.builtin.logcontext": "jobkit_run_job",
    "jobkit.builtin.otel": "jobkit_run_job",
}
LOG_JOBS = {"JOBKIT_IMPORTS": "testapp.log_jobs"}
"""The imports setting of ``testapp.LogLine``, a job that logs a line."""


@pytest.fixture
def fresh_schema(jobkit_settings):
    """The name of a schema nobody has migrated; dropped after the test if it was made."""
    name = f"jobkit_fresh_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def schema_tables(db, schema):
    rows = db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
    )
    return {row[0] for row in rows}


def assert_clean_error(result, *fragments, exit_code=1):
    """A failed command: the exit code, one ``Error:`` message with every fragment, no traceback."""
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Error:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# migrate --------------------------------------------------------------------------------------


def test_migrate_applies_the_migrations_then_reports_up_to_date(run_cli, db, fresh_schema):
    first = run_cli("migrate", env={"JOBKIT_SCHEMA": fresh_schema})
    assert first.returncode == 0, first.stderr
    migrations = sorted(path.stem for path in MIGRATIONS.glob("*.sql"))
    assert first.stdout == (
        f"applied {len(migrations)} migrations to schema {fresh_schema}: {', '.join(migrations)}\n"
    )
    tables = {"requests", "processes", "results", "workers", "migrations", "schedule_ticks"}
    assert tables <= schema_tables(db, fresh_schema)

    second = run_cli("migrate", env={"JOBKIT_SCHEMA": fresh_schema})
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"schema {fresh_schema} is up to date"


def test_migrate_sql_prints_the_migrations_without_applying_them(
    run_cli, db, jobkit_settings, fresh_schema
):
    result = run_cli("migrate", "--sql", env={"JOBKIT_SCHEMA": fresh_schema})
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" in result.stdout
    assert f'"{fresh_schema}".requests' in result.stdout
    assert schema_tables(db, fresh_schema) == set()

    # The printed script is what a team applies its own way, psql here (statement by statement,
    # as CREATE INDEX CONCURRENTLY needs): afterwards jobkit agrees.
    applied = subprocess.run(
        ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", jobkit_settings.database_url],
        input=result.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    again = run_cli("migrate", env={"JOBKIT_SCHEMA": fresh_schema})
    assert again.stdout.strip() == f"schema {fresh_schema} is up to date"


def test_migrate_sql_needs_no_database(run_cli, fresh_schema):
    """The script is written offline: the same, word for word, for a database out of reach."""
    env = {"JOBKIT_SCHEMA": fresh_schema}
    reachable = run_cli("migrate", "--sql", env=env)
    unreachable = run_cli(
        "migrate",
        "--sql",
        env={**env, "JOBKIT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"},
    )
    assert unreachable.returncode == 0, unreachable.stderr
    assert unreachable.stdout == reachable.stdout
    assert "INSERT INTO" in unreachable.stdout and "'initial'" in unreachable.stdout


def test_migrate_sql_without_a_database_url_says_to_set_one(run_cli, tmp_path):
    result = run_cli("migrate", "--sql", cwd=tmp_path, env={"JOBKIT_DATABASE_URL": None})
    assert_clean_error(
        result, "migrate --sql", "database_url", "set JOBKIT_DATABASE_URL=postgresql://"
    )
    assert not (tmp_path / ".jobkit").exists()  # no embedded database was started


# list -----------------------------------------------------------------------------------------


def test_list_shows_each_registered_job_with_its_first_docstring_paragraph(run_cli):
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    summaries: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if line.startswith("    "):
            summaries[list(summaries)[-1]].append(line.strip())
        else:
            summaries[line] = []
    assert list(summaries) == JOB_NAMES
    assert summaries["testapp.Record"] == [
        "Writes start and end rows to the ledger, sleeping in between."
    ]
    assert summaries["testapp.jobs.Noop"] == ["Does nothing; for throughput."]
    assert " ".join(summaries["testapp.Tally"]) == (
        "Writes one 'start' row to the ledger over a connection kept for the process: a cheap "
        "execution count for tests that run thousands of jobs."
    )


def test_list_without_imports_says_how_to_register_jobs(run_cli):
    result = run_cli("list", env={"JOBKIT_IMPORTS": None})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "jobkit.ScheduledCommand"
    assert "no jobs of yours are registered" in result.stdout
    assert "imports setting" in result.stdout


# run ------------------------------------------------------------------------------------------


def test_run_runs_the_job_now_in_the_command_and_stores_nothing(
    run_cli, jobkit_runtime, jobkit_settings, ledger_ready, db
):
    result = run_cli("run", "testapp.Record", "--args", '["k"]')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "testapp.Record SUCCESSFUL"
    assert [(key, phase) for key, phase, _, _ in ledger(jobkit_settings)] == [
        ("k", "start"),
        ("k", "end"),
    ]
    assert db.count("requests") == db.count("processes") == db.count("results") == 0


def test_run_of_a_failing_job_prints_its_traceback_and_error_type(run_cli):
    result = run_cli("run", "testapp.jobs.Fail", "--kwargs", '{"message": "it broke"}')
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: it broke" in result.stderr
    assert "testapp.jobs.Fail ERRORED (ValueError)" in result.stderr


def test_run_of_an_unknown_job_names_it(run_cli):
    result = run_cli("run", "testapp.NoSuchJob")
    assert_clean_error(result, "'testapp.NoSuchJob'", "no job is registered")


def test_run_shows_the_jobs_info_lines_unless_told_a_higher_level(run_cli):
    shown = run_cli("run", "testapp.LogLine", "--kwargs", '{"key": "run"}', env=LOG_JOBS)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "testapp.LogLine SUCCESSFUL\n"
    assert re.search(
        r" INFO testapp\.log_jobs \[job=testapp\.LogLine id=\S+ attempt=1\]: run says hello$",
        shown.stderr,
        re.MULTILINE,
    ), shown.stderr

    quiet = run_cli(
        "run",
        "testapp.LogLine",
        "--kwargs",
        '{"key": "run"}',
        "--log-level",
        "warning",
        env=LOG_JOBS,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


def test_run_logs_json_lines_when_asked(run_cli):
    done = run_cli(
        "run", "testapp.LogLine", "--kwargs", '{"key": "run"}', "--log-format", "json", env=LOG_JOBS
    )
    assert done.returncode == 0, done.stderr
    [entry] = [json.loads(line) for line in done.stderr.splitlines()]
    assert entry["message"] == "run says hello"
    assert entry["job"] == "testapp.LogLine" and entry["attempt"] == 1


# enqueue --------------------------------------------------------------------------------------


def test_enqueue_prints_the_request_id_and_stores_the_options(run_cli, jobkit_runtime, db):
    result = run_cli(
        "enqueue",
        "testapp.Record",
        "--args",
        '["k"]',
        "--kwargs",
        '{"seconds": 0.5}',
        "--queue",
        "reports",
        "--delay",
        "60",
        "--priority",
        "7",
    )
    assert result.returncode == 0, result.stderr
    request_id = uuid.UUID(result.stdout.strip())

    rows = db.query(
        "SELECT job_name, parameters, queue, priority, "
        "extract(epoch FROM start_at - created_at)::float8, source "
        "FROM {schema}.requests WHERE id = %s",
        [request_id],
    )
    assert len(rows) == 1
    job_name, parameters, queue, priority, delay, source = rows[0]
    assert source == f"cli {getpass.getuser()}@{socket.gethostname()}"
    assert job_name == "testapp.Record"
    assert parameters == {"args": ["k"], "kwargs": {"seconds": 0.5}}
    assert (queue, priority) == ("reports", 7)
    assert delay == pytest.approx(60, abs=1)
    assert db.count("requests") == 1


def test_enqueue_takes_retries_concurrency_key_and_timeout_as_run_in_worker_does(
    run_cli, jobkit_runtime, db
):
    options = ["--retries", "3", "--concurrency-key", "report-7", "--timeout", "90"]
    result = run_cli("enqueue", "testapp.jobs.Noop", *options)
    assert result.returncode == 0, result.stderr
    rows = db.query(
        "SELECT retries, concurrency_key, timeout FROM {schema}.requests WHERE id = %s",
        [uuid.UUID(result.stdout.strip())],
    )
    assert rows == [(3, "report-7", 90.0)]

    again = run_cli("enqueue", "testapp.jobs.Noop", "--concurrency-key", "report-7")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "testapp.jobs.Noop was not enqueued: should_enqueue() declined it"
    )
    assert db.count("requests") == 1


@pytest.mark.parametrize(
    ("options", "messages"),
    [
        (["--retries", "-1"], ["retries must be between 0 and 2147483647, got -1"]),
        (["--retries", "two"], ["--retries", "'two' is not a valid integer"]),
        (["--timeout", "0"], ["timeout must be more than 0 seconds, got 0"]),
        (["--timeout", "nan"], ["timeout must be a number of seconds or a timedelta, got nan"]),
        (["--concurrency-key", "k" * 1001], ["concurrency_key is 1001 bytes long"]),
    ],
    ids=["negative-retries", "retries-not-a-number", "zero-timeout", "nan-timeout", "long-key"],
)
def test_enqueue_refuses_what_run_in_worker_refuses(run_cli, jobkit_runtime, db, options, messages):
    result = run_cli("enqueue", "testapp.jobs.Noop", *options)
    assert_clean_error(result, *messages, exit_code=2)
    assert db.count("requests") == 0


def test_enqueue_without_options_uses_the_job_defaults(run_cli, jobkit_runtime, db):
    result = run_cli("enqueue", "testapp.jobs.Noop")
    assert result.returncode == 0, result.stderr
    rows = db.query(
        "SELECT parameters, queue, priority, start_at <= now() FROM {schema}.requests "
        "WHERE id = %s",
        [uuid.UUID(result.stdout.strip())],
    )
    assert rows == [({"args": [], "kwargs": {}}, "default", 0, True)]


@pytest.mark.parametrize(
    ("options", "messages"),
    [
        (["--args", '["k"'], ["--args", "not valid JSON"]),
        (["--args", '{"key": "k"}'], ["--args", "must be a JSON array"]),
        (["--kwargs", '["k"]'], ["--kwargs", "must be a JSON object"]),
    ],
    ids=["not-json", "args-not-array", "kwargs-not-object"],
)
def test_enqueue_with_bad_parameter_json_is_a_usage_error(
    run_cli, jobkit_runtime, db, options, messages
):
    result = run_cli("enqueue", "testapp.Record", *options)
    assert_clean_error(result, *messages, exit_code=2)
    assert db.count("requests") == 0


def test_enqueue_with_parameters_that_do_not_fit_the_job_is_refused(run_cli, jobkit_runtime, db):
    result = run_cli("enqueue", "testapp.Record", "--kwargs", '{"colour": "red"}')
    assert_clean_error(
        result,
        "Invalid value for --args/--kwargs: Record cannot be made from these parameters: it has "
        "a value for 'colour', which is not a parameter of __init__",
        exit_code=2,
    )
    assert db.count("requests") == 0


def test_enqueue_of_an_unknown_job_names_it(run_cli, jobkit_runtime, db):
    result = run_cli("enqueue", "testapp.NoSuchJob")
    assert_clean_error(result, "'testapp.NoSuchJob'", "no job is registered")
    assert db.count("requests") == 0


# stats ----------------------------------------------------------------------------------------


def counts(**nonzero):
    return {key: nonzero.get(key, 0) for key in STAT_KEYS}


def stats_of(queue):
    """A queue's counts in ``stats --json`` (its age and paused flag are checked apart)."""
    return {key: queue[key] for key in STAT_KEYS}


WAITED = 90.0
"""Seconds the ready requests of ``jobs_in_every_stage`` have been ready."""


@pytest.fixture
def jobs_in_every_stage(jobkit_runtime, ledger_ready, db, wait_until):
    """Jobs in each stage and status, in four queues, and two workers (one stale); returns the
    counts they should give (the ages are checked apart: they grow while the test runs)."""
    runtime = jobkit_runtime
    # Results: 4 SUCCESSFUL (3 Noop, the deferred job's second run), 2 ERRORED, 1 DEFERRED.
    runtime.enqueue_many([Noop(1), Noop(2), Noop(3)], queue="done")
    runtime.enqueue_many([Fail(), Fail()], queue="done")
    runtime.enqueue(Defer("deferred-once", times=1), queue="done")
    run_jobs(runtime, queues=["done"])
    # Requests: 2 ready for WAITED seconds, 1 scheduled in an hour.
    runtime.enqueue_many([Noop(4), Noop(5)], queue="waiting")
    runtime.enqueue(Noop(6), queue="waiting", delay=3600)
    db.query(
        "UPDATE {schema}.requests SET start_at = now() - make_interval(secs => %s) "
        "WHERE queue = 'waiting' AND start_at <= now()",
        (WAITED,),
    )
    # A process: claimed by a worker, not finished.
    runtime.enqueue(Record("claimed"), queue="claimed")
    assert runtime.store.claim(worker_id=uuid.uuid4(), queues=["claimed"], limit=1)
    # LOST and CANCELLED results, as a worker writes them.
    runtime.enqueue_many([Noop(7), Noop(8)], queue="aborted")
    worker_id = uuid.uuid4()
    lost, cancelled = runtime.store.claim(worker_id=worker_id, queues=["aborted"], limit=2)
    now = datetime.datetime.now(datetime.UTC)
    runtime.store.finish(
        worker_id=worker_id,
        completions=[
            Completion(
                process=process,
                outcome=Outcome(status=status, error="gone"),
                started_at=None,
                ended_at=now,
            )
            for process, status in ((lost, Status.LOST), (cancelled, Status.CANCELLED))
        ],
    )
    # Workers: one beating, one silent for longer than the heartbeat_timeout of 5 s. The rule
    # counts the database's start as a beat, so a test server that started moments ago (the
    # embedded one, early in a session) must first have run for longer than that.
    wait_until(lambda: db.value("SELECT now() - pg_postmaster_start_time() > interval '6 s'"), 10)
    for _ in range(2):
        silent = runtime.store.register_worker(
            WorkerInfo(id=uuid.uuid4(), hostname="cli", pid=1, queues=["default"])
        )
    db.query(
        "UPDATE {schema}.workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
        (silent.id,),
    )
    queues = {
        "aborted": counts(lost=1, cancelled=1),
        "claimed": counts(running=1),
        "done": counts(successful=4, errored=2, deferred=1),
        "waiting": counts(pending=2, scheduled=1),
    }
    total = {key: sum(queue[key] for queue in queues.values()) for key in STAT_KEYS}
    return {**total, "workers_active": 1, "workers_stale": 1, "queues": queues}


def assert_waited(age):
    """The age of the waiting queue's ready requests: WAITED, plus the time the test took."""
    assert WAITED <= age < WAITED + 300


def test_stats_json_counts_each_stage_in_total_and_per_queue(run_cli, jobs_in_every_stage):
    result = run_cli("stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data.pop("paused") is False
    assert data.pop("pipelines") == {}
    assert not any(queue.pop("paused") for queue in data["queues"].values())
    ages = {name: queue.pop("oldest_pending_age") for name, queue in data["queues"].items()}
    assert_waited(ages.pop("waiting"))
    assert ages == {"aborted": 0.0, "claimed": 0.0, "done": 0.0}
    assert_waited(data.pop("oldest_pending_age"))
    assert data == jobs_in_every_stage


def test_stats_table_has_a_row_per_queue_and_a_total(run_cli, jobs_in_every_stage):
    result = run_cli("stats")
    assert result.returncode == 0, result.stderr
    table_text, workers_line = result.stdout.rstrip("\n").split("\n\n")
    header, *rows = (line.split() for line in table_text.splitlines())
    assert header == ["queue", *STAT_KEYS, "oldest_pending_age"]
    table = {row[0]: dict(zip(STAT_KEYS, map(int, row[1:-1]), strict=True)) for row in rows}
    ages = {row[0]: float(row[-1]) for row in rows}
    expected = dict(jobs_in_every_stage)
    queues = expected.pop("queues")
    total = {key: expected[key] for key in STAT_KEYS}
    assert table == {**queues, "total": total}
    assert [row[0] for row in rows] == [*sorted(queues), "total"]
    assert_waited(ages["waiting"])
    assert ages["total"] == ages["waiting"]
    assert ages["done"] == 0.0
    assert workers_line == (
        "workers: 1 active, 1 stale (stale: no heartbeat for more than 5 s, the "
        "heartbeat_timeout setting)"
    )


def test_stats_of_named_queues_show_only_those_and_their_total(run_cli, jobs_in_every_stage):
    result = run_cli("stats", "--json", "done", "claimed", "idle")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    queues = {
        name: counts(**{k: v for k, v in queue.items() if k in STAT_KEYS and v})
        for name, queue in data["queues"].items()
    }
    expected = jobs_in_every_stage["queues"]
    assert queues == {"claimed": expected["claimed"], "done": expected["done"], "idle": counts()}
    assert {key: data[key] for key in STAT_KEYS} == counts(
        running=1, successful=4, errored=2, deferred=1
    )
    assert data["oldest_pending_age"] == 0.0  # the waiting queue is not among them

    table = run_cli("stats", "waiting")
    assert table.returncode == 0, table.stderr
    names = [line.split()[0] for line in table.stdout.split("\n\n")[0].splitlines()]
    assert names == ["queue", "waiting", "total"]


def test_stats_show_the_paused_queues(run_cli, jobs_in_every_stage):
    assert run_cli("pause", "waiting", "idle").returncode == 0

    table = run_cli("stats")
    assert table.stdout.rstrip("\n").splitlines()[-1] == (
        "paused: idle, waiting (no worker claims from them until `jobkit resume`)"
    )
    data = json.loads(run_cli("stats", "--json").stdout)
    assert {name for name, queue in data["queues"].items() if queue["paused"]} == {
        "idle",
        "waiting",
    }
    assert data["paused"] is True
    named = json.loads(run_cli("stats", "--json", "done").stdout)
    assert list(named["queues"]) == ["done"] and named["paused"] is False


def test_stats_of_a_bad_queue_name_is_a_usage_error(run_cli, jobkit_runtime):
    result = run_cli("stats", "no such queue")
    assert_clean_error(result, "QUEUE", "a queue name is letters, digits and _.:-", exit_code=2)


def test_stats_of_empty_tables_are_zero(run_cli, jobkit_runtime):
    result = run_cli("stats", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        **counts(),
        "oldest_pending_age": 0.0,
        "paused": False,
        "workers_active": 0,
        "workers_stale": 0,
        "queues": {},
        "pipelines": {},
    }


# clear and purge ------------------------------------------------------------------------------


def test_clear_deletes_results_older_than_the_given_seconds(run_cli, jobkit_runtime, db):
    jobkit_runtime.enqueue_many([Noop(1), Noop(2), Noop(3)])
    run_jobs(jobkit_runtime)
    jobkit_runtime.enqueue(Noop(4))

    kept = run_cli("clear")  # the default retention is a week
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "deleted 0 results older than 604800 seconds"
    assert db.count("results") == 3

    cleared = run_cli("clear", "--older-than", "0")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip() == "deleted 3 results older than 0 seconds"
    assert db.count("results") == 0
    assert db.count("requests") == 1


def test_purge_asks_first_and_deletes_nothing_when_told_no(run_cli, jobkit_runtime, db):
    jobkit_runtime.enqueue_many([Noop(1), Noop(2)])
    run_jobs(jobkit_runtime)
    jobkit_runtime.enqueue(Noop(3))

    declined = run_cli("purge", input="n\n")
    assert declined.returncode == 1, (declined.stdout, declined.stderr)
    assert "Delete every job in schema" in declined.stdout
    assert "Aborted" in declined.stderr
    assert (db.count("requests"), db.count("results")) == (1, 2)

    purged = run_cli("purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "deleted 3 rows"
    assert db.count("requests") == db.count("processes") == db.count("results") == 0


# plugins --------------------------------------------------------------------------------------


def test_plugins_all_json_lists_the_builtins_and_the_kernel_with_their_hooks(run_cli):
    result = run_cli("plugins", "--all", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {info["name"]: info for info in json.loads(result.stdout)}
    assert set(plugins) == {*BUILTINS, "jobkit.core"}
    for name, hook in BUILTINS.items():
        assert plugins[name]["source"] == "builtin"
        assert hook in plugins[name]["hooks"]
        assert plugins[name]["blocked"] is False
    assert plugins["jobkit.core"]["source"] == "core"
    assert {"jobkit_enqueue", "jobkit_run_job"} <= set(plugins["jobkit.core"]["hooks"])


def test_plugins_hook_filters_to_the_plugins_implementing_it(run_cli):
    result = run_cli("plugins", "--all", "--hook", "jobkit_store", "--json")
    assert result.returncode == 0, result.stderr
    assert [info["name"] for info in json.loads(result.stdout)] == ["jobkit.builtin.postgres"]


def test_plugins_hook_that_does_not_exist_is_a_usage_error(run_cli):
    result = run_cli("plugins", "--hook", "nope")
    assert_clean_error(result, "--hook", "no hook is named 'nope'", exit_code=2)


def test_plugins_without_third_party_plugins_says_so(run_cli):
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no plugins installed (--all shows the built-in ones)"


def test_a_plugin_that_fails_to_load_is_listed_as_broken_and_stops_a_worker(run_cli):
    broken = {"JOBKIT_PLUGINS": "unitplugins.broken_on_import"}
    message = (
        "setting plugins names 'unitplugins.broken_on_import', which cannot be imported: "
        "this plugin is broken"
    )

    listed = run_cli("plugins", env=broken)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"unitplugins.broken_on_import (setting) [broken]\n    {message}\n"

    worker = run_cli("worker", "--burst", env=broken)
    assert_clean_error(worker, message)


# The config file ------------------------------------------------------------------------------

PROJECT_JOBS = """
from jobkit import Job, register_job


@register_job(name="projectjobs.Hello")
class Hello(Job):
    \"\"\"Greets, from a module at the project's root.\"\"\"

    def run(self):
        pass
"""


@pytest.fixture
def project(tmp_path):
    """A project with its config file and its job module at its root, and a subfolder."""
    root = tmp_path / "project"
    (root / "scripts" / "nightly").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n[tool.jobkit]\nimports = ["projectjobs"]\n'
    )
    (root / "projectjobs.py").write_text(PROJECT_JOBS)
    return root


def test_commands_run_from_a_subfolder_use_the_projects_config_and_modules(
    run_cli, start_worker, jobkit_runtime, db, project
):
    """The config file is found up the tree, and its imports from the project's directory, in
    the command, the worker and its pool children alike."""
    subfolder = project / "scripts" / "nightly"
    no_imports: dict[str, str | None] = {"JOBKIT_IMPORTS": None}

    enqueued = run_cli("enqueue", "projectjobs.Hello", cwd=subfolder, env=no_imports)
    assert enqueued.returncode == 0, enqueued.stderr
    worker = start_worker("--burst", "--max-processes", "1", cwd=subfolder, env=no_imports)

    assert worker.wait_for_exit() == 0, worker.output()
    result = jobkit_runtime.get_result(uuid.UUID(enqueued.stdout.strip()))
    assert result is not None and result.status is Status.SUCCESSFUL, worker.output()
    assert result.job_name == "projectjobs.Hello"


@pytest.mark.parametrize("how", ["--config", "JOBKIT_CONFIG"])
def test_the_config_file_can_be_named_from_anywhere(run_cli, tmp_path, project, how):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = "../project/pyproject.toml"
    env: dict[str, str | None] = {"JOBKIT_IMPORTS": None}
    if how == "JOBKIT_CONFIG":
        env["JOBKIT_CONFIG"] = config
    arguments = ["--config", config] if how == "--config" else []

    result = run_cli(*arguments, "list", cwd=elsewhere, env=env)

    assert result.returncode == 0, result.stderr
    assert "projectjobs.Hello" in result.stdout.splitlines()


def test_a_config_flag_naming_no_file_is_a_usage_error(run_cli, tmp_path):
    result = run_cli("--config", "jobkit.tmol", "list", cwd=tmp_path)
    assert_clean_error(result, "--config", "'jobkit.tmol' does not exist", exit_code=2)


def test_with_the_embedded_fallback_off_no_database_url_says_how_to_set_one(run_cli, tmp_path):
    """A producer in production must not enqueue into a new embedded database nobody reads."""
    config = tmp_path / "jobkit.toml"
    config.write_text("embedded = false\n")

    result = run_cli(
        "enqueue", "testapp.jobs.Noop", cwd=tmp_path, env={"JOBKIT_DATABASE_URL": None}
    )

    assert_clean_error(
        result,
        "no database is configured, and the embedded setting is false",
        "set JOBKIT_DATABASE_URL=postgresql://user@host:5432/dbname",
        f"or database_url in {config}",
    )
    assert not (tmp_path / ".jobkit").exists()


# Bad settings and a missing database ----------------------------------------------------------


@pytest.mark.parametrize("command", [["worker", "--burst"], ["stats"], ["migrate"]])
def test_a_bad_setting_value_names_the_setting_its_source_and_what_was_expected(run_cli, command):
    result = run_cli(*command, env={"JOBKIT_HEARTBEAT_TIMEOUT": "abc"})
    assert_clean_error(
        result, "setting heartbeat_timeout", "JOBKIT_HEARTBEAT_TIMEOUT", "must be a number", "'abc'"
    )


BAD_SETTING = {"JOBKIT_HEARTBEAT_TIMEOUT": "abc"}
SETTINGS_ERROR = (
    "setting heartbeat_timeout (from JOBKIT_HEARTBEAT_TIMEOUT) must be a number, got 'abc'"
)


def test_a_plugins_command_under_a_bad_setting_shows_the_settings_error(run_cli):
    done = run_cli("schedule", env=BAD_SETTING)

    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"Error: {SETTINGS_ERROR}\n"), done.stderr
    assert "No such command" not in done.stderr
    assert "'schedule' is not one of jobkit's own commands" in done.stderr


def test_help_under_a_bad_setting_says_which_error_hides_the_plugins_commands(run_cli):
    done = run_cli("--help", env=BAD_SETTING)

    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert f"Commands of plugins (not loaded): {SETTINGS_ERROR}: fix this" in text, done.stdout


def test_worker_with_an_import_that_fails_names_the_module(run_cli, jobkit_runtime, db):
    result = run_cli("worker", "--burst", env={"JOBKIT_IMPORTS": "nope.missing"})
    assert_clean_error(result, "setting imports", "'nope.missing'", "No module named 'nope'")
    assert db.count("workers") == 0


@pytest.mark.parametrize(
    ("file_name", "text"),
    [("jobkit.toml", "bogus_key = 1\n"), ("pyproject.toml", "[tool.jobkit]\nbogus_key = 1\n")],
)
def test_an_unknown_key_in_the_config_file_is_refused(run_cli, tmp_path, file_name, text):
    (tmp_path / file_name).write_text(text)
    result = run_cli("worker", "--burst", cwd=tmp_path)
    assert_clean_error(
        result, "unknown setting 'bogus_key'", str(tmp_path / file_name), "known settings:"
    )


def test_a_database_that_does_not_answer_is_a_clear_error(run_cli):
    result = run_cli(
        "worker",
        "--burst",
        env={"JOBKIT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"},
    )
    assert_clean_error(result, "cannot connect to PostgreSQL at 127.0.0.1:1, database 'test'")
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--burst"],
        ["stats"],
        ["enqueue", "testapp.jobs.Noop"],
        ["clear", "--older-than", "0"],
        ["purge", "--yes"],
    ],
    ids=lambda command: command[0],
)
def test_an_unmigrated_schema_says_to_run_migrate(run_cli, db, fresh_schema, command):
    result = run_cli(*command, env={"JOBKIT_SCHEMA": fresh_schema})
    assert_clean_error(result, fresh_schema, "run `jobkit migrate`")
    assert schema_tables(db, fresh_schema) == set()
