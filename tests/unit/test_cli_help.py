"""Tests of the ``jobkit`` command line that need no database: help, and arguments refused before
any command reaches the store (the commands that use the database are tested elsewhere)."""

from __future__ import annotations

import importlib.metadata
import json
import os

import pytest
from click.testing import CliRunner

from jobkit.cli import cli
from jobkit.runtime import set_runtime

COMMANDS = [
    "cancel",
    "clear",
    "enqueue",
    "jobs",
    "list",
    "migrate",
    "pause",
    "plugins",
    "purge",
    "resume",
    "retry",
    "run",
    "schedule",
    "show",
    "stats",
    "worker",
    "workers",
]
JOBS = {"JOBKIT_IMPORTS": "unitplugins.jobs"}
"""The imports setting that registers ``unitplugins.Greet``."""


@pytest.fixture
def invoke(tmp_path, monkeypatch):
    """Run ``jobkit`` in an empty directory, with no JOBKIT_* setting from the environment, and
    give back the process's runtime as it was (commands make their own current)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("JOBKIT_") and name != "JOBKIT_DISABLE_PLUGIN_AUTOLOAD":
            monkeypatch.delenv(name)
    previous = set_runtime(None)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None):
        return runner.invoke(cli, list(args), prog_name="jobkit", env=env, input=input)

    yield invoke
    set_runtime(previous)


def error_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_help_lists_the_core_commands(invoke):
    result = invoke("--help")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: jobkit [OPTIONS] COMMAND [ARGS]...")
    section = result.output.split("Commands:\n", 1)[1]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    assert listed == COMMANDS


def test_version(invoke):
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.output == f"jobkit, version {importlib.metadata.version('jobkit')}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(invoke, command):
    result = invoke(command, "--help")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: jobkit {command} [OPTIONS]")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["worker", "--max-processes", "0"],
            "Error: Invalid value for '--max-processes': must be greater than 0, got 0",
        ),
        (
            ["worker", "--max-jobs-per-process", "0"],
            "Error: Invalid value for '--max-jobs-per-process': must be greater than 0, got 0",
        ),
        (
            ["worker", "--max-pending-per-process", "-1"],
            "Error: Invalid value for '--max-pending-per-process': must be greater than 0, got -1",
        ),
        (
            ["worker", "--max-processes", "two"],
            "Error: Invalid value for '--max-processes': 'two' is not a valid integer.",
        ),
        (
            ["worker", "--stats-every", "often"],
            "Error: Invalid value for '--stats-every': 'often' is not a valid float.",
        ),
        (
            ["run", "unitplugins.Greet", "--args", "{}"],
            "Error: Invalid value for --args: must be a JSON array, got {}",
        ),
        (
            ["run", "unitplugins.Greet", "--kwargs", "[]"],
            "Error: Invalid value for --kwargs: must be a JSON object, got []",
        ),
        (
            ["run", "unitplugins.Greet", "--args", "notjson"],
            "Error: Invalid value for --args: not valid JSON: "
            "Expecting value: line 1 column 1 (char 0)",
        ),
        (
            ["enqueue", "unitplugins.Greet", "--args", '"Ada"'],
            'Error: Invalid value for --args: must be a JSON array, got "Ada"',
        ),
        (
            ["enqueue", "unitplugins.Greet", "--delay", "-1"],
            "Error: Invalid value: unitplugins.Greet: a delay cannot be negative, got -1.0",
        ),
        (
            ["enqueue", "unitplugins.Greet", "--queue", "x'; DROP TABLE"],
            "Error: Invalid value: unitplugins.Greet: queue must be a name of letters, digits "
            'and _.:- (at most 128 characters), got "x\'; DROP TABLE"',
        ),
        (
            ["enqueue", "unitplugins.Greet", "--priority", "high"],
            "Error: Invalid value for '--priority': 'high' is not a valid integer.",
        ),
        (
            ["clear", "--older-than", "-1"],
            "Error: Invalid value: --older-than must be 0 or more, got -1.0",
        ),
        (
            ["plugins", "--hook", "jobkit_job_finsihed"],
            "Error: Invalid value for --hook: no hook is named 'jobkit_job_finsihed'",
        ),
        (["run"], "Error: Missing argument 'NAME'."),
    ],
)
def test_bad_arguments_exit_with_2_and_say_what_is_wrong(invoke, args, message):
    result = invoke(*args, env=JOBS)

    assert result.exit_code == 2, result.output
    assert error_line(result.output) == message
    assert result.output.startswith(f"Usage: jobkit {args[0]} [OPTIONS]")


def test_a_log_level_outside_the_choices_is_refused(invoke):
    result = invoke("worker", "--log-level", "LOUD")

    assert result.exit_code == 2
    line = error_line(result.output)
    assert line.startswith("Error: Invalid value for '--log-level': 'LOUD' is not one of ")
    assert all(level in line.lower() for level in ("'debug'", "'info'", "'warning'", "'error'"))


def test_run_of_an_unregistered_name_says_so_and_where_jobs_come_from(invoke):
    result = invoke("run", "app.Missing", env=JOBS)

    assert result.exit_code == 1
    assert result.output == (
        "Error: no job is registered under the name 'app.Missing'; the imports setting lists "
        "unitplugins.jobs (`jobkit list` shows what is registered)\n"
    )


def test_bad_json_is_reported_before_the_name_is_looked_up(invoke):
    result = invoke("run", "app.Missing", "--args", "notjson", env=JOBS)

    assert result.exit_code == 2
    assert "Invalid value for --args: not valid JSON" in result.output


def test_run_runs_the_job_in_this_process(invoke):
    result = invoke("run", "unitplugins.Greet", "--args", '["Ada"]', env=JOBS)

    assert result.exit_code == 0, result.output
    assert result.output == "hello, Ada\nunitplugins.Greet SUCCESSFUL\n"


def test_list_shows_the_registered_jobs_with_their_summary(invoke):
    result = invoke("list", env=JOBS)

    assert result.exit_code == 0, result.output
    assert "unitplugins.Greet\n    Says hello.\n" in result.output


def test_a_bad_setting_is_one_clear_line(invoke):
    result = invoke("list", env={"JOBKIT_SCHEMA": "Bad-Schema"})

    assert result.exit_code == 1
    assert result.output == (
        "Error: setting schema (from JOBKIT_SCHEMA) must be a lower-case SQL identifier "
        "(letters, digits and _, at most 54 characters: with _requests added it must fit "
        "PostgreSQL's 63), got 'Bad-Schema'\n"
    )


def test_purge_without_yes_asks_first_and_stops_on_no(invoke):
    result = invoke("purge", input="n\n")

    assert result.exit_code == 1
    assert "Delete every job in schema jobkit, including running ones? [y/N]: n" in result.output
    assert result.output.endswith("Aborted!\n")


def test_plugins_all_json_lists_the_kernel_and_builtins(invoke):
    result = invoke("plugins", "--all", "--json")

    assert result.exit_code == 0, result.output
    listed = [(info["name"], info["source"], info["blocked"]) for info in json.loads(result.output)]
    assert listed == [
        ("jobkit.core", "core", False),
        ("jobkit.builtin.cron", "builtin", False),
        ("jobkit.builtin.embedded", "builtin", False),
        ("jobkit.builtin.locks", "builtin", False),
        ("jobkit.builtin.logcontext", "builtin", False),
        ("jobkit.builtin.otel", "builtin", False),
        ("jobkit.builtin.postgres", "builtin", False),
        ("jobkit.builtin.serializers", "builtin", False),
    ]


def test_plugins_without_all_hides_builtins_but_shows_blocked_ones(invoke):
    result = invoke("plugins", env={"JOBKIT_DISABLE_PLUGINS": "jobkit.builtin.embedded"})

    assert result.exit_code == 0, result.output
    assert result.output == "jobkit.builtin.embedded (builtin) [blocked]\n"
