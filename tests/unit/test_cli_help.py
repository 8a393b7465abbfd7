"""Tests of the ``jobkit`` command line that need no database: help, and arguments refused before
any command reaches the store (the commands that use the database are tested elsewhere)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import unitplugins
from jobkit.cli import cli
from jobkit.runtime import set_runtime

COMMANDS = [
    "cancel",
    "clear",
    "delete",
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
    "run-now",
    "schedule",
    "show",
    "stats",
    "worker",
    "workers",
    "workflow",
]
JOBS = {"JOBKIT_IMPORTS": "unitplugins.jobs"}
"""The imports setting that registers ``unitplugins.Greet`` and ``unitplugins.Wave``."""


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
            ["worker", "--async-concurrency", "0"],
            "Error: Invalid value for '--async-concurrency': must be greater than 0, got 0",
        ),
        (
            ["worker", "--async-concurrency", "many"],
            "Error: Invalid value for '--async-concurrency': 'many' is not a valid integer.",
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
            ["enqueue", "unitplugins.Greet", "--kwargs", '{"nmae": "Ada"}'],
            "Error: Invalid value for --args/--kwargs: Greet cannot be made from these "
            "parameters: it has a value for 'nmae', which is not a parameter of __init__; "
            "Greet.__init__ is (self, name: str = 'world')",
        ),
        (
            ["run", "unitplugins.Greet", "--args", '["Ada", "Lovelace"]'],
            "Error: Invalid value for --args/--kwargs: Greet cannot be made from these "
            "parameters: it has 2 positional arguments, and __init__ takes 1; "
            "Greet.__init__ is (self, name: str = 'world')",
        ),
        (
            ["enqueue", "unitplugins.Greet", "--kwargs", '{"name": 7}'],
            "Error: Invalid value for --args/--kwargs: Greet parameter 'name' cannot be read as "
            "str from 7: expected str, got int 7",
        ),
        (
            ["enqueue", "unitplugins.Greet", "--delay", "-1"],
            "Error: Invalid value: unitplugins.Greet: delay cannot be negative, got -1.0",
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
        "Error: no job is registered under the name 'app.Missing'; jobkit imported "
        "unitplugins.jobs (the imports and discover_jobs settings; `jobkit list` shows what is "
        "registered)\n"
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


def test_list_shows_the_first_paragraph_of_a_docstring_whole(invoke):
    result = invoke("list", env=JOBS)

    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "unitplugins.Wave\n"
        "    Waves at everyone in the room, one person after another, for as long as it\n"
        "    takes: its first sentence runs over two lines.\n"
    )


def test_a_module_of_imports_that_fails_shows_where_it_failed(invoke):
    result = invoke("list", env={"JOBKIT_IMPORTS": "unitplugins.name_error"})

    assert result.exit_code == 1
    path = Path(unitplugins.__file__).parent / "name_error.py"
    # Python's own traceback lines, without the lines of carets (which versions draw apart).
    assert [line for line in result.output.splitlines() if line.strip(" ^~")] == [
        "Error: setting imports lists 'unitplugins.name_error', which failed to import:",
        f'  File "{path}", line 12, in <module>',
        "    class Misspelt(Job):",
        f'  File "{path}", line 13, in Misspelt',
        "    greeting = default_greeting()",
        f'  File "{path}", line 8, in default_greeting',
        "    return greeting  # noqa: F821 - the mistake the tests show",
        "NameError: name 'greeting' is not defined",
    ]


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


def test_plugins_hook_lists_the_plugins_in_the_order_they_are_asked_and_marks_the_winner(
    invoke, install
):
    install("jobkit-alpha-lock", "1.0", {"alpha": "unitplugins.locks:alpha"})
    install("jobkit-beta-lock", "2.0", {"beta": "unitplugins.locks:beta"})

    result = invoke("plugins", "--hook", "jobkit_enqueue_lock")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "jobkit_enqueue_lock: plugins are asked in this order; the first answer that is not "
        "None is used\n"
        "beta (jobkit-beta-lock 2.0)\n"
        "    jobkit_enqueue_lock  [asked first: wins unless it answers None]\n"
        "alpha (jobkit-alpha-lock 1.0)\n"
        "    jobkit_enqueue_lock  [asked only if beta answers None]\n"
    )


def test_plugins_hook_of_a_hook_every_plugin_answers_says_so(invoke):
    result = invoke("plugins", "--all", "--hook", "jobkit_add_worker_services")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "jobkit_add_worker_services: every plugin is called, in this order\n"
        "jobkit.builtin.otel (builtin)\n"
        "    jobkit_add_worker_services\n"
        "jobkit.builtin.cron (builtin)\n"
        "    jobkit_add_worker_services\n"
    )


def test_plugins_lists_a_plugin_that_fails_to_load_as_broken_with_its_error(invoke, install):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})

    result = invoke("plugins")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "broken (jobkit-broken 0.1) [broken]\n"
        "    plugin 'broken' from jobkit-broken 0.1 failed to load "
        "(unitplugins.broken_on_import): RuntimeError('this plugin is broken'); uninstall it or "
        "add it to disable_plugins\n"
        "fake (jobkit-fake 1.2.3)\n"
        "    jobkit_job_finished\n"
    )
    listed = {info["name"]: info for info in json.loads(invoke("plugins", "--json").output)}
    assert listed["broken"]["broken"].startswith("plugin 'broken' from jobkit-broken 0.1 failed")
    assert listed["fake"]["broken"] is None


def test_plugins_lists_a_broken_plugin_whose_settings_section_is_in_the_config_file(
    invoke, tmp_path
):
    # The section is undeclared only because the plugin that declares it failed to load.
    (tmp_path / "jobkit.toml").write_text(
        'plugins = ["unitplugins.broken_on_import"]\n\n[broken]\nurl = "redis://cache"\n'
    )

    result = invoke("plugins")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "unitplugins.broken_on_import (setting) [broken]\n"
        "    setting plugins names 'unitplugins.broken_on_import', which cannot be imported: "
        "this plugin is broken\n"
    )


def test_other_commands_stop_at_a_plugin_that_fails_to_load(invoke):
    result = invoke("list", env={"JOBKIT_PLUGINS": "unitplugins.broken_on_import"})

    assert result.exit_code == 1
    assert result.output == (
        "Error: setting plugins names 'unitplugins.broken_on_import', which cannot be "
        "imported: this plugin is broken\n"
    )


def test_reload_without_watchfiles_says_which_extra_to_install(invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles fails
    monkeypatch.setattr("jobkit.cli.configure_logging", lambda *args: None)
    monkeypatch.delitem(sys.modules, "jobkit.reloader", raising=False)

    result = invoke("worker", "--reload")

    assert result.exit_code == 1, result.output
    assert error_line(result.output) == (
        "Error: --reload needs watchfiles: pip install 'jobkit[reload]'"
    )
