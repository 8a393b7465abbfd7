"""Tests of ``load_settings`` and ``with_plugin_sections``: where each value comes from, and the
message of every value that is refused (it names the setting, its source and what was expected)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import attrs
import pytest

from jobkit.errors import SettingsError
from jobkit.records import FlowLimit, LimitScope
from jobkit.settings import Settings, flag, load_settings, with_plugin_sections

QUEUE_NAMES = "one or more queue names of letters, digits and _.:- (at most 128 characters each)"
IDENTIFIER = (
    "a lower-case SQL identifier (letters, digits and _, at most 54 characters: "
    "with _requests added it must fit PostgreSQL's 63)"
)
URL = "a URL such as postgresql://user@host:5432/dbname"
POSITIVE = "a number greater than 0"
NOT_NEGATIVE = "a number of seconds, 0 or more"
STRINGS = "a list of strings (comma-separated in an environment variable)"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def raises_exactly(message: str) -> pytest.RaisesExc:
    return pytest.raises(SettingsError, match=f"^{re.escape(message)}$")


# Where values come from -------------------------------------------------------------------------


def test_defaults_apply_when_nothing_is_configured(tmp_path):
    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings == Settings()
    assert settings.config_file is None
    assert settings.schema == "jobkit"
    assert settings.worker_queues == ["default"]
    assert settings.results_retention == 604800


def test_jobkit_toml_overrides_the_defaults(tmp_path):
    path = write(tmp_path, "jobkit.toml", 'schema = "from_file"\nimports = ["app.jobs"]\n')

    settings = load_settings(environ={}, cwd=tmp_path)

    assert (settings.schema, settings.imports) == ("from_file", ["app.jobs"])
    assert settings.config_file == str(path)


def test_tool_jobkit_table_of_pyproject_is_read(tmp_path):
    path = write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "app"\n\n[tool.jobkit]\nschema = "from_pyproject"\n',
    )

    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings.schema == "from_pyproject"
    assert settings.config_file == str(path)


def test_pyproject_without_a_tool_jobkit_table_is_not_a_config_file(tmp_path):
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n\n[tool.ruff]\nline-length = 99\n')

    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings == Settings()
    assert settings.config_file is None


def test_jobkit_toml_wins_over_pyproject_and_the_two_are_not_merged(tmp_path):
    jobkit_toml = write(tmp_path, "jobkit.toml", 'schema = "from_jobkit_toml"\n')
    write(
        tmp_path,
        "pyproject.toml",
        '[tool.jobkit]\nschema = "from_pyproject"\nimports = ["app.jobs"]\n',
    )

    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings.schema == "from_jobkit_toml"
    assert settings.imports == []
    assert settings.config_file == str(jobkit_toml)


def test_environment_overrides_the_file(tmp_path):
    write(tmp_path, "jobkit.toml", 'schema = "from_file"\nresults_retention = 60\n')

    settings = load_settings(environ={"JOBKIT_SCHEMA": "from_env"}, cwd=tmp_path)

    assert settings.schema == "from_env"
    assert settings.results_retention == 60


def test_overrides_win_over_the_environment_and_the_file(tmp_path):
    write(tmp_path, "jobkit.toml", "worker_max_processes = 2\n")
    environ = {"JOBKIT_WORKER_MAX_PROCESSES": "3"}

    settings = load_settings(
        {"worker_max_processes": flag(4, "--max-processes"), "schema": "from_argument"},
        environ=environ,
        cwd=tmp_path,
    )

    assert settings.worker_max_processes == 4
    assert settings.schema == "from_argument"


@pytest.mark.parametrize("unset", [None, flag(None, "--max-processes")])
def test_none_overrides_are_ignored(tmp_path, unset):
    write(tmp_path, "jobkit.toml", "worker_max_processes = 2\n")

    settings = load_settings({"worker_max_processes": unset}, environ={}, cwd=tmp_path)

    assert settings.worker_max_processes == 2


def test_an_unknown_override_is_an_error(tmp_path):
    with raises_exactly("unknown setting 'worker_max_procs'"):
        load_settings({"worker_max_procs": 4}, environ={}, cwd=tmp_path)


def test_environment_variables_that_configure_tooling_are_not_settings(tmp_path):
    environ = {
        "JOBKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "JOBKIT_TEST_DATABASE_URL": "postgresql://localhost/test",
        "JOBKIT_TRACE_PLUGINS": "1",
    }

    assert load_settings(environ=environ, cwd=tmp_path) == Settings()


def test_without_arguments_the_process_environment_and_directory_are_read(tmp_path, monkeypatch):
    write(tmp_path, "jobkit.toml", "worker_max_processes = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOBKIT_SCHEMA", "from_os_environ")

    settings = load_settings()

    assert settings.schema == "from_os_environ"
    assert settings.worker_max_processes == 2


# Finding the config file -----------------------------------------------------------------------


def project_with_subfolder(tmp_path: Path) -> tuple[Path, Path]:
    """A project directory and a folder two levels under it."""
    project = tmp_path / "project"
    subfolder = project / "scripts" / "nightly"
    subfolder.mkdir(parents=True)
    return project, subfolder


@pytest.mark.parametrize(
    ("name", "text"),
    [("jobkit.toml", 'schema = "app"\n'), ("pyproject.toml", '[tool.jobkit]\nschema = "app"\n')],
)
def test_the_config_file_is_found_walking_up_from_a_subfolder(tmp_path, name, text):
    project, subfolder = project_with_subfolder(tmp_path)
    path = write(project, name, text)

    settings = load_settings(environ={}, cwd=subfolder)

    assert settings.schema == "app"
    assert settings.config_file == str(path)


def test_a_pyproject_without_tool_jobkit_on_the_way_up_is_passed_over(tmp_path):
    """A package of a monorepo has a pyproject.toml of its own; the project's settings are
    further up."""
    project, subfolder = project_with_subfolder(tmp_path)
    path = write(project, "pyproject.toml", '[tool.jobkit]\nschema = "app"\n')
    write(subfolder.parent, "pyproject.toml", '[project]\nname = "nightly"\n')

    settings = load_settings(environ={}, cwd=subfolder)

    assert settings.config_file == str(path)


def test_the_nearest_config_file_wins_and_files_are_not_merged(tmp_path):
    project, subfolder = project_with_subfolder(tmp_path)
    write(project, "jobkit.toml", 'schema = "outer"\nimports = ["app.jobs"]\n')
    nearer = write(subfolder.parent, "pyproject.toml", '[tool.jobkit]\nschema = "inner"\n')

    settings = load_settings(environ={}, cwd=subfolder)

    assert (settings.schema, settings.imports) == ("inner", [])
    assert settings.config_file == str(nearer)


def test_jobkit_config_names_the_file_relative_to_the_current_directory(tmp_path):
    """Any file name but pyproject.toml is read as a jobkit.toml is; a nearer file is ignored."""
    project, subfolder = project_with_subfolder(tmp_path)
    write(subfolder, "jobkit.toml", 'schema = "nearer"\n')
    named = write(project, "jobkit.production.toml", 'schema = "production"\n')

    settings = load_settings(
        environ={"JOBKIT_CONFIG": "../../jobkit.production.toml"}, cwd=subfolder
    )

    assert settings.schema == "production"
    assert settings.config_file == str(named)


def test_jobkit_config_naming_a_pyproject_reads_its_tool_jobkit_table(tmp_path):
    named = write(tmp_path, "pyproject.toml", '[tool.jobkit]\nschema = "app"\n')

    settings = load_settings(environ={"JOBKIT_CONFIG": str(named)}, cwd=tmp_path / "..")

    assert settings.schema == "app"


def test_jobkit_config_naming_no_file_is_an_error(tmp_path):
    with raises_exactly(
        f"JOBKIT_CONFIG (or jobkit --config) names {tmp_path / 'jobkit.tmol'}, which is not a "
        f"file; name a jobkit.toml, or a pyproject.toml with a [tool.jobkit] table"
    ):
        load_settings(environ={"JOBKIT_CONFIG": "jobkit.tmol"}, cwd=tmp_path)


def test_jobkit_config_naming_a_pyproject_without_tool_jobkit_is_an_error(tmp_path):
    named = write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n')

    with raises_exactly(
        f"{named} has no [tool.jobkit] table: add one, or name another file in JOBKIT_CONFIG"
    ):
        load_settings(environ={"JOBKIT_CONFIG": str(named)}, cwd=tmp_path)


def test_an_empty_jobkit_config_looks_for_the_file(tmp_path):
    path = write(tmp_path, "jobkit.toml", 'schema = "app"\n')

    assert load_settings(environ={"JOBKIT_CONFIG": " "}, cwd=tmp_path).config_file == str(path)


def test_invalid_toml_found_on_the_way_up_says_why_it_was_read(tmp_path):
    project, subfolder = project_with_subfolder(tmp_path)
    path = write(project, "pyproject.toml", "[tool.black\n")

    with pytest.raises(SettingsError) as raised:
        load_settings(environ={}, cwd=subfolder)

    assert str(raised.value).startswith(f"{path} is not valid TOML: ")
    assert str(raised.value).endswith(
        f"(jobkit reads each pyproject.toml from {subfolder} up, looking for [tool.jobkit]; "
        f"JOBKIT_CONFIG names the config file instead)"
    )


def test_plugin_sections_come_from_the_file_found_up_the_tree(tmp_path):
    project, subfolder = project_with_subfolder(tmp_path)
    write(project, "jobkit.toml", '[redis_lock]\nurl = "redis://project"\n')

    settings = with_sections(subfolder)

    assert settings.section("redis_lock").url == "redis://project"


# Paths in the config file are the project's ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ".jobkit"),  # the default
        ('embedded_dir = "var/jobkit"\n', "var/jobkit"),
        ('embedded_dir = "../shared"\n', "../shared"),
    ],
)
def test_a_relative_embedded_dir_is_the_project_directorys(tmp_path, text, expected):
    """A script run from a subfolder uses the project's embedded database, not a new one."""
    project, subfolder = project_with_subfolder(tmp_path)
    write(project, "jobkit.toml", text)

    settings = load_settings(environ={}, cwd=subfolder)

    assert settings.embedded_dir == str(project / expected)


def test_an_absolute_embedded_dir_in_the_file_is_kept(tmp_path):
    project, subfolder = project_with_subfolder(tmp_path)
    write(project, "jobkit.toml", f'embedded_dir = "{tmp_path / "data"}"\n')

    assert load_settings(environ={}, cwd=subfolder).embedded_dir == str(tmp_path / "data")


@pytest.mark.parametrize(
    "source",
    [{"environ": {"JOBKIT_EMBEDDED_DIR": "mine"}}, {"overrides": {"embedded_dir": "mine"}}],
)
def test_a_relative_embedded_dir_from_the_environment_is_the_current_directorys(tmp_path, source):
    """A path typed in a shell or a flag is relative to where it was typed, as usual."""
    project, subfolder = project_with_subfolder(tmp_path)
    write(project, "jobkit.toml", 'embedded_dir = "var/jobkit"\n')

    settings = load_settings(
        source.get("overrides"), environ=source.get("environ", {}), cwd=subfolder
    )

    assert settings.embedded_dir == "mine"


def test_without_a_config_file_embedded_dir_is_left_to_the_current_directory(tmp_path):
    assert load_settings(environ={}, cwd=tmp_path).embedded_dir == ".jobkit"


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("0", False), ("true", True)])
def test_the_embedded_fallback_can_be_turned_off(tmp_path, text, expected):
    assert load_settings(environ={"JOBKIT_EMBEDDED": text}, cwd=tmp_path).embedded is expected


# Environment variables are text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "text", "setting", "expected"),
    [
        ("JOBKIT_IMPORTS", "a.b, c", "imports", ["a.b", "c"]),
        ("JOBKIT_IMPORTS", "  app.jobs  ", "imports", ["app.jobs"]),
        ("JOBKIT_IMPORTS", "", "imports", []),
        ("JOBKIT_WORKER_QUEUES", " emails ,default,, ", "worker_queues", ["emails", "default"]),
        (
            "JOBKIT_DISABLE_PLUGINS",
            "jobkit.builtin.embedded",
            "disable_plugins",
            ["jobkit.builtin.embedded"],
        ),
        ("JOBKIT_WORKER_MAX_PROCESSES", "", "worker_max_processes", None),
        ("JOBKIT_WORKER_MAX_PROCESSES", "  ", "worker_max_processes", None),
        ("JOBKIT_WORKER_MAX_PROCESSES", " 4 ", "worker_max_processes", 4),
        ("JOBKIT_WORKER_MAX_JOBS_PER_PROCESS", "1000", "worker_max_jobs_per_process", 1000),
        ("JOBKIT_WORKER_ASYNC_CONCURRENCY", " 500 ", "worker_async_concurrency", 500),
        ("JOBKIT_RESULTS_RETENTION", "0", "results_retention", 0),
        ("JOBKIT_HEARTBEAT_INTERVAL", "2.5", "heartbeat_interval", 2.5),
        ("JOBKIT_WORKER_STATS_EVERY", "0", "worker_stats_every", 0.0),
        ("JOBKIT_DATABASE_URL", "", "database_url", None),
        ("JOBKIT_LOG_FORMAT", "json", "log_format", "json"),
        (
            "JOBKIT_DATABASE_URL",
            "postgresql://u@h:5432/db",
            "database_url",
            "postgresql://u@h:5432/db",
        ),
    ],
)
def test_environment_values_are_parsed(tmp_path, variable, text, setting, expected):
    settings = load_settings(environ={variable: text}, cwd=tmp_path)

    assert getattr(settings, setting) == expected


def test_numbers_from_the_environment_have_the_setting_type(tmp_path):
    settings = load_settings(
        environ={"JOBKIT_WORKER_MAX_PROCESSES": "4", "JOBKIT_HEARTBEAT_INTERVAL": "5"},
        cwd=tmp_path,
    )

    assert type(settings.worker_max_processes) is int
    assert type(settings.heartbeat_interval) is float


# Every bad value names the setting, its source and what was expected ---------------------------


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (
            "JOBKIT_HEARTBEAT_TIMEOUT",
            "abc",
            "setting heartbeat_timeout (from JOBKIT_HEARTBEAT_TIMEOUT) must be a number, got 'abc'",
        ),
        (
            "JOBKIT_WORKER_MAX_PROCESSES",
            "many",
            "setting worker_max_processes (from JOBKIT_WORKER_MAX_PROCESSES) must be an integer "
            "or empty, got 'many'",
        ),
        (
            "JOBKIT_WORKER_MAX_PROCESSES",
            "2.5",
            "setting worker_max_processes (from JOBKIT_WORKER_MAX_PROCESSES) must be an integer "
            "or empty, got '2.5'",
        ),
        (
            "JOBKIT_WORKER_MAX_PROCESSES",
            "0",
            "setting worker_max_processes (from JOBKIT_WORKER_MAX_PROCESSES) must be "
            f"{POSITIVE}, got 0",
        ),
        (
            "JOBKIT_WORKER_MAX_PENDING_PER_PROCESS",
            "-1",
            "setting worker_max_pending_per_process (from JOBKIT_WORKER_MAX_PENDING_PER_PROCESS) "
            f"must be {POSITIVE}, got -1",
        ),
        (
            "JOBKIT_WORKER_ASYNC_CONCURRENCY",
            "0",
            "setting worker_async_concurrency (from JOBKIT_WORKER_ASYNC_CONCURRENCY) must be "
            f"{POSITIVE}, got 0",
        ),
        (
            "JOBKIT_WORKER_ASYNC_CONCURRENCY",
            "many",
            "setting worker_async_concurrency (from JOBKIT_WORKER_ASYNC_CONCURRENCY) must be an "
            "integer, got 'many'",
        ),
        (
            "JOBKIT_WORKER_MAX_PENDING_PER_PROCESS",
            "",
            "setting worker_max_pending_per_process (from JOBKIT_WORKER_MAX_PENDING_PER_PROCESS) "
            "must be an integer, got ''",
        ),
        (
            "JOBKIT_RESULTS_RETENTION",
            "-1",
            f"setting results_retention (from JOBKIT_RESULTS_RETENTION) must be {NOT_NEGATIVE}, "
            "got -1",
        ),
        (
            "JOBKIT_WORKER_STATS_EVERY",
            "-0.5",
            f"setting worker_stats_every (from JOBKIT_WORKER_STATS_EVERY) must be {NOT_NEGATIVE}, "
            "got -0.5",
        ),
        (
            "JOBKIT_HEARTBEAT_INTERVAL",
            "0",
            f"setting heartbeat_interval (from JOBKIT_HEARTBEAT_INTERVAL) must be {POSITIVE}, "
            "got 0.0",
        ),
        (
            "JOBKIT_WORKER_POLL_INTERVAL",
            "nan",
            f"setting worker_poll_interval (from JOBKIT_WORKER_POLL_INTERVAL) must be {POSITIVE}, "
            "got nan",
        ),
        (
            "JOBKIT_SCHEMA",
            "Jobs",
            f"setting schema (from JOBKIT_SCHEMA) must be {IDENTIFIER}, got 'Jobs'",
        ),
        (
            "JOBKIT_SCHEMA",
            "job-kit",
            f"setting schema (from JOBKIT_SCHEMA) must be {IDENTIFIER}, got 'job-kit'",
        ),
        (
            "JOBKIT_SCHEMA",
            "1jobs",
            f"setting schema (from JOBKIT_SCHEMA) must be {IDENTIFIER}, got '1jobs'",
        ),
        (
            "JOBKIT_SCHEMA",
            "a" * 55,
            f"setting schema (from JOBKIT_SCHEMA) must be {IDENTIFIER}, got '{'a' * 55}'",
        ),
        (
            "JOBKIT_SCHEMA",
            "",
            f"setting schema (from JOBKIT_SCHEMA) must be {IDENTIFIER}, got ''",
        ),
        (
            "JOBKIT_WORKER_QUEUES",
            "",
            f"setting worker_queues (from JOBKIT_WORKER_QUEUES) must be {QUEUE_NAMES}, got []",
        ),
        (
            "JOBKIT_WORKER_QUEUES",
            "emails, bad queue",
            f"setting worker_queues (from JOBKIT_WORKER_QUEUES) must be {QUEUE_NAMES}, "
            "got ['emails', 'bad queue']",
        ),
        (
            "JOBKIT_DATABASE_URL",
            "localhost:5432/db",
            f"setting database_url (from JOBKIT_DATABASE_URL) must be {URL}, "
            "got 'localhost:5432/db'",
        ),
        (
            "JOBKIT_DATABASE_URL",
            "postgres:/app:s3c ret@db/app",
            f"setting database_url (from JOBKIT_DATABASE_URL) must be {URL}, "
            "got 'postgres:/app:***@db/app'",
        ),
        (
            "JOBKIT_DATABASE_URL",
            "host=db password=s3cret",
            f"setting database_url (from JOBKIT_DATABASE_URL) must be {URL}, "
            "got 'host=db password=***'",
        ),
        (
            "JOBKIT_LOG_FORMAT",
            "xml",
            "setting log_format (from JOBKIT_LOG_FORMAT) must be 'text' or 'json', got 'xml'",
        ),
    ],
)
def test_bad_environment_values_are_refused(tmp_path, variable, text, message):
    with raises_exactly(message):
        load_settings(environ={variable: text}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "heartbeat_interval = true",
            "setting heartbeat_interval (from {path}) must be a number, got True",
        ),
        (
            "worker_max_processes = false",
            "setting worker_max_processes (from {path}) must be an integer or empty, got False",
        ),
        (
            "worker_max_processes = 2.5",
            "setting worker_max_processes (from {path}) must be an integer or empty, got 2.5",
        ),
        (
            'results_retention = "a week"',
            "setting results_retention (from {path}) must be an integer, got 'a week'",
        ),
        (
            "results_retention = -60",
            f"setting results_retention (from {{path}}) must be {NOT_NEGATIVE}, got -60",
        ),
        (
            "heartbeat_interval = [60]",
            "setting heartbeat_interval (from {path}) must be a number, got [60]",
        ),
        ("schema = 5", "setting schema (from {path}) must be a string, got 5"),
        ('schema = "Public"', f"setting schema (from {{path}}) must be {IDENTIFIER}, got 'Public'"),
        ("imports = [1]", f"setting imports (from {{path}}) must be {STRINGS}, got [1]"),
        (
            "worker_queues = []",
            f"setting worker_queues (from {{path}}) must be {QUEUE_NAMES}, got []",
        ),
        (
            'worker_queues = ["default", "x\'; DROP TABLE"]',
            f"setting worker_queues (from {{path}}) must be {QUEUE_NAMES}, "
            "got ['default', \"x'; DROP TABLE\"]",
        ),
        (
            f'worker_queues = ["{"q" * 129}"]',
            f"setting worker_queues (from {{path}}) must be {QUEUE_NAMES}, got ['{'q' * 129}']",
        ),
        (
            'database_url = "not a url"',
            f"setting database_url (from {{path}}) must be {URL}, got 'not a url'",
        ),
        (
            "database_url = 5432",
            "setting database_url (from {path}) must be a string or empty, got 5432",
        ),
    ],
)
def test_bad_file_values_are_refused(tmp_path, line, message):
    path = write(tmp_path, "jobkit.toml", line + "\n")

    with raises_exactly(message.format(path=path)):
        load_settings(environ={}, cwd=tmp_path)


def test_bad_values_in_pyproject_name_that_file(tmp_path):
    path = write(tmp_path, "pyproject.toml", "[tool.jobkit]\nworker_max_processes = 0\n")

    with raises_exactly(f"setting worker_max_processes (from {path}) must be {POSITIVE}, got 0"):
        load_settings(environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"worker_max_processes": flag(0, "--max-processes")},
            f"setting worker_max_processes (from --max-processes) must be {POSITIVE}, got 0",
        ),
        (
            {"worker_max_pending_per_process": flag(-1, "--max-pending-per-process")},
            "setting worker_max_pending_per_process (from --max-pending-per-process) must be "
            f"{POSITIVE}, got -1",
        ),
        (
            {"worker_async_concurrency": flag(0, "--async-concurrency")},
            "setting worker_async_concurrency (from --async-concurrency) must be "
            f"{POSITIVE}, got 0",
        ),
        (
            {"worker_stats_every": flag(True, "--stats-every")},
            "setting worker_stats_every (from --stats-every) must be a number, got True",
        ),
        (
            {"worker_queues": flag(["emails", ""], "--queue")},
            f"setting worker_queues (from --queue) must be {QUEUE_NAMES}, got ['emails', '']",
        ),
        (
            {"worker_queues": flag([], "--queue")},
            f"setting worker_queues (from --queue) must be {QUEUE_NAMES}, got []",
        ),
        (
            {"worker_stats_every": -5},
            f"setting worker_stats_every (from the worker_stats_every argument) must be "
            f"{NOT_NEGATIVE}, got -5.0",
        ),
    ],
)
def test_bad_overrides_are_refused(tmp_path, overrides, message):
    with raises_exactly(message):
        load_settings(overrides, environ={}, cwd=tmp_path)


def test_an_unknown_key_in_the_file_is_refused_with_the_known_settings(tmp_path):
    path = write(tmp_path, "jobkit.toml", 'databse_url = "postgresql://localhost/app"\n')

    with pytest.raises(SettingsError) as raised:
        load_settings(environ={}, cwd=tmp_path)

    message = str(raised.value)
    prefix = f"unknown setting 'databse_url' in {path}; known settings: "
    assert message.startswith(prefix)
    listed = message.removeprefix(prefix).split(", ")
    settable = [f.name for f in attrs.fields(Settings) if f.name not in ("sections", "config_file")]
    assert listed == settable


@pytest.mark.parametrize("name", ["jobkit.toml", "pyproject.toml"])
def test_invalid_toml_is_refused_naming_the_file(tmp_path, name):
    path = write(tmp_path, name, "[tool.jobkit\nschema = \n")

    with pytest.raises(SettingsError, match=f"^{re.escape(str(path))} is not valid TOML: "):
        load_settings(environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("file_text", "environ", "message"),
    [
        (
            "heartbeat_interval = 300\n",
            {},
            "setting heartbeat_timeout (300) must be greater than heartbeat_interval (300.0); "
            "check {path}",
        ),
        (
            "heartbeat_interval = 30\n",
            {"JOBKIT_HEARTBEAT_TIMEOUT": "20"},
            "setting heartbeat_timeout (20.0) must be greater than heartbeat_interval (30.0); "
            "check JOBKIT_HEARTBEAT_TIMEOUT",
        ),
        (
            "",
            {"JOBKIT_HEARTBEAT_INTERVAL": "400"},
            "setting heartbeat_timeout (300) must be greater than heartbeat_interval (400.0); "
            "check JOBKIT_HEARTBEAT_INTERVAL",
        ),
    ],
)
def test_heartbeat_timeout_must_exceed_the_interval(tmp_path, file_text, environ, message):
    path = write(tmp_path, "jobkit.toml", file_text)

    with raises_exactly(message.format(path=path)):
        load_settings(environ=environ, cwd=tmp_path)


def test_a_heartbeat_timeout_above_the_interval_is_accepted(tmp_path):
    settings = load_settings(
        environ={"JOBKIT_HEARTBEAT_INTERVAL": "10", "JOBKIT_HEARTBEAT_TIMEOUT": "10.5"},
        cwd=tmp_path,
    )

    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (10.0, 10.5)


# Plugins' sections ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RedisLockSettings:
    url: str = "redis://localhost:6379/0"
    timeout: float = attrs.field(default=10.0)

    @timeout.validator
    def _positive(self, attribute: attrs.Attribute, value: float) -> None:
        if value <= 0:
            raise ValueError(f"timeout must be greater than 0, got {value}")


@attrs.frozen(kw_only=True)
class DashboardSettings:
    port: int = 8000


DECLARED = [{"redis_lock": RedisLockSettings}]


def with_sections(tmp_path: Path, environ: dict[str, str] | None = None, declared=DECLARED):
    environ = environ or {}
    settings = load_settings(environ=environ, cwd=tmp_path)
    return with_plugin_sections(settings, declared, environ=environ)


def test_a_declared_section_has_its_defaults_without_configuration(tmp_path):
    settings = with_sections(tmp_path)

    assert settings.section("redis_lock") == RedisLockSettings()


def test_sections_of_several_plugins_are_read(tmp_path):
    write(tmp_path, "jobkit.toml", "[dashboard]\nport = 9000\n")

    settings = with_sections(
        tmp_path, declared=[{"redis_lock": RedisLockSettings}, {"dashboard": DashboardSettings}]
    )

    assert settings.section("redis_lock") == RedisLockSettings()
    assert settings.section("dashboard") == DashboardSettings(port=9000)


def test_a_section_is_read_from_its_table_in_jobkit_toml(tmp_path):
    write(
        tmp_path,
        "jobkit.toml",
        'schema = "app"\n\n[redis_lock]\nurl = "redis://cache:6379/1"\ntimeout = 2\n',
    )

    settings = with_sections(tmp_path)

    assert settings.section("redis_lock") == RedisLockSettings(
        url="redis://cache:6379/1", timeout=2
    )
    assert settings.schema == "app"


def test_a_section_is_read_from_its_tool_jobkit_table_in_pyproject(tmp_path):
    write(
        tmp_path,
        "pyproject.toml",
        '[tool.jobkit]\nschema = "app"\n\n[tool.jobkit.redis_lock]\nurl = "redis://cache/2"\n',
    )

    settings = with_sections(tmp_path)

    assert settings.section("redis_lock") == RedisLockSettings(url="redis://cache/2")
    assert settings.schema == "app"


def test_environment_overrides_a_section_value_from_the_file(tmp_path):
    write(tmp_path, "jobkit.toml", '[redis_lock]\nurl = "redis://file"\ntimeout = 3\n')

    settings = with_sections(tmp_path, {"JOBKIT_REDIS_LOCK_URL": "redis://env"})

    assert settings.section("redis_lock") == RedisLockSettings(url="redis://env", timeout=3)


def test_a_section_value_from_the_environment_is_parsed(tmp_path):
    settings = with_sections(tmp_path, {"JOBKIT_REDIS_LOCK_TIMEOUT": " 0.25 "})

    assert settings.section("redis_lock").timeout == 0.25


def test_a_bad_section_value_in_the_file_names_setting_table_and_file(tmp_path):
    path = write(tmp_path, "jobkit.toml", '[redis_lock]\ntimeout = "soon"\n')

    with raises_exactly(
        f"setting redis_lock.timeout (from [redis_lock] in {path}) must be a number, got 'soon'"
    ):
        with_sections(tmp_path)


def test_a_bad_section_value_in_the_environment_names_the_variable(tmp_path):
    write(tmp_path, "jobkit.toml", "[redis_lock]\ntimeout = 1\n")

    with raises_exactly(
        "setting redis_lock.timeout (from JOBKIT_REDIS_LOCK_TIMEOUT) must be a number, got 'x'"
    ):
        with_sections(tmp_path, {"JOBKIT_REDIS_LOCK_TIMEOUT": "x"})


def test_a_section_value_the_section_class_refuses_names_the_section(tmp_path):
    write(tmp_path, "jobkit.toml", "[redis_lock]\ntimeout = 0\n")

    with raises_exactly("settings section redis_lock: timeout must be greater than 0, got 0.0"):
        with_sections(tmp_path)


@attrs.frozen(kw_only=True)
class MirrorSettings:
    url: str = attrs.field(
        default="redis://localhost:6379/0", validator=attrs.validators.matches_re(r"rediss?://")
    )


def test_a_section_value_the_section_class_refuses_is_shown_without_its_password(tmp_path):
    path = write(tmp_path, "jobkit.toml", '[mirror]\nurl = "http://:s3cret@cache:6379/0"\n')

    with raises_exactly(
        f"setting mirror.url (from [mirror] in {path}): 'url' must match regex "
        f"'rediss?://' ('http://:***@cache:6379/0' doesn't)"
    ):
        with_sections(tmp_path, declared=[{"mirror": MirrorSettings}])


def test_an_unknown_key_in_a_section_is_refused_with_the_section_fields(tmp_path):
    path = write(tmp_path, "jobkit.toml", '[redis_lock]\nurl = "redis://x"\nttl = 5\n')

    with raises_exactly(
        f"unknown setting redis_lock.ttl in {path}; section redis_lock has: url, timeout"
    ):
        with_sections(tmp_path)


@pytest.mark.parametrize(
    ("declared", "listed"),
    [(DECLARED, "redis_lock"), ([], "none")],
)
def test_a_section_table_no_plugin_declared_is_refused(tmp_path, declared, listed):
    path = write(tmp_path, "jobkit.toml", "[redis_lokc]\nurl = 'redis://x'\n")

    with raises_exactly(
        f"settings section [redis_lokc] in {path} is not declared by any plugin; "
        f"declared sections: {listed}"
    ):
        with_sections(tmp_path, declared=declared)


def test_an_undeclared_section_table_does_not_stop_the_core_settings_loading(tmp_path):
    # load_settings leaves tables to with_plugin_sections, which knows the plugins' sections.
    write(tmp_path, "jobkit.toml", 'schema = "app"\n\n[redis_lock]\nurl = "redis://x"\n')

    assert load_settings(environ={}, cwd=tmp_path).schema == "app"


def test_plugin_sections_keep_the_core_settings(tmp_path):
    settings = load_settings({"schema": "app"}, environ={}, cwd=tmp_path)

    resolved = with_plugin_sections(settings, DECLARED, environ={})

    assert resolved.schema == "app"
    assert resolved.sections == {"redis_lock": RedisLockSettings()}


def test_a_missing_section_is_an_error_that_says_why(tmp_path):
    settings = with_sections(tmp_path)

    with raises_exactly(
        "no settings section 'missing': is the plugin that declares it installed and not in "
        "disable_plugins?"
    ):
        settings.section("missing")


def test_an_unknown_jobkit_variable_is_reported_as_a_likely_typo(tmp_path, caplog):
    settings = load_settings(environ={}, cwd=tmp_path)
    environ = {
        "JOBKIT_HEARTBEAT_INTERVALL": "5",
        "JOBKIT_TEST_DATABASE_URL": "x",
        "JOBKIT_CONFIG": "",
    }
    with_plugin_sections(settings, [], environ=environ)
    assert [record.getMessage() for record in caplog.records] == [
        "JOBKIT_HEARTBEAT_INTERVALL is not a jobkit setting and is ignored (a typo?)"
    ]


def test_plain_jobs_variables_are_reported_once_with_the_jobkit_names_to_use(tmp_path, caplog):
    settings = load_settings(environ={}, cwd=tmp_path)
    environ = {
        "JOBS_HEARTBEAT_TIMEOUT": "600",
        "PLAIN_JOBS_WORKER_MAX_PROCESSES": "4",
        "JOBS_WORKER_STATS_EVERY": "0",
        "JOBS_EXTRA": "1",
        "JOBSITE": "unrelated",
    }
    resolved = with_plugin_sections(settings, [], environ=environ)

    assert [record.getMessage() for record in caplog.records] == [
        "plain.jobs' settings are ignored: jobkit reads JOBKIT_* variables; set "
        "JOBKIT_HEARTBEAT_TIMEOUT instead of JOBS_HEARTBEAT_TIMEOUT, JOBKIT_WORKER_STATS_EVERY "
        "instead of JOBS_WORKER_STATS_EVERY, JOBKIT_WORKER_MAX_PROCESSES instead of "
        "PLAIN_JOBS_WORKER_MAX_PROCESSES; JOBS_EXTRA has no jobkit equivalent (docs/settings.md "
        "lists the settings)"
    ]
    assert caplog.records[0].levelname == "WARNING"
    assert resolved.heartbeat_timeout == Settings().heartbeat_timeout


@pytest.mark.parametrize(
    "name",
    [
        "JOBS_RESULTS_RETENTION",
        "JOBS_HEARTBEAT_INTERVAL",
        "JOBS_HEARTBEAT_TIMEOUT",
        "JOBS_MIDDLEWARE",
        "JOBS_SCHEDULE",
        "JOBS_WORKER_MAX_PROCESSES",
        "JOBS_WORKER_MAX_JOBS_PER_PROCESS",
        "JOBS_WORKER_MAX_PENDING_PER_PROCESS",
        "JOBS_WORKER_STATS_EVERY",
    ],
)
def test_every_plain_jobs_setting_has_its_jobkit_variable(tmp_path, caplog, name):
    settings = load_settings(environ={}, cwd=tmp_path)

    with_plugin_sections(settings, [], environ={name: "1"})

    (record,) = caplog.records
    assert record.getMessage().endswith(f"; set JOBKIT_{name[len('JOBS_') :]} instead of {name}")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_seconds_must_be_finite(tmp_path, value):
    with pytest.raises(SettingsError, match="worker_poll_interval"):
        load_settings(environ={"JOBKIT_WORKER_POLL_INTERVAL": value}, cwd=tmp_path)


def test_an_unreadable_config_file_is_refused_naming_it(tmp_path, monkeypatch):
    path = write(tmp_path, "jobkit.toml", 'schema = "app"\n')

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refused)

    with raises_exactly(f"cannot read {path}: Permission denied"):
        load_settings(environ={}, cwd=tmp_path)


# Settings sources (a framework's configuration) -------------------------------------------------


@pytest.fixture
def install_source(tmp_path, monkeypatch):
    """``install_source(body)`` installs a distribution whose ``jobkit.settings_sources`` entry
    point is ``settings_source(environ)`` with ``body``, found by importlib.metadata on
    ``sys.path`` as an installed one is."""

    def install(body: str) -> None:
        site = tmp_path / "site"
        info = site / "framework_source-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: framework-source\n")
        (info / "entry_points.txt").write_text(
            "[jobkit.settings_sources]\nframework = framework_source:settings_source\n"
        )
        (site / "framework_source.py").write_text(f"def settings_source(environ):\n{body}")
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, "framework_source", raising=False)

    yield install
    sys.modules.pop("framework_source", None)


def test_a_settings_source_sits_between_the_file_and_the_environment(tmp_path, install_source):
    install_source(
        "    if 'FRAMEWORK' not in environ:\n        return None\n"
        "    return 'framework.JOBKIT', {'schema': 'from_source', 'results_retention': 5,"
        " 'imports': ['app.jobs']}\n"
    )
    write(tmp_path, "jobkit.toml", 'schema = "from_file"\nresults_retention = 60\n')

    assert load_settings(environ={}, cwd=tmp_path).schema == "from_file"
    settings = load_settings(
        {"imports": flag(["flag.jobs"], "--imports")},
        environ={"FRAMEWORK": "1", "JOBKIT_RESULTS_RETENTION": "7"},
        cwd=tmp_path,
    )
    assert (settings.schema, settings.results_retention) == ("from_source", 7)
    assert settings.imports == ["flag.jobs"]


def test_a_settings_source_is_checked_like_the_file_and_named(tmp_path, install_source):
    install_source("    return 'framework.JOBKIT', environ['VALUES']\n")

    with raises_exactly("setting schema (from framework.JOBKIT) must be a string, got 5"):
        load_settings(environ={"VALUES": {"schema": 5}}, cwd=tmp_path)
    with pytest.raises(SettingsError, match=r"^unknown setting 'shema' in framework\.JOBKIT; "):
        load_settings(environ={"VALUES": {"shema": "x"}}, cwd=tmp_path)
    with pytest.raises(SettingsError, match=r"sets 'otel' to a table.*\[tool.jobkit.otel\]"):
        load_settings(environ={"VALUES": {"otel": {"sdk": "none"}}}, cwd=tmp_path)


def test_a_failing_settings_source_is_named_and_autoload_off_skips_it(tmp_path, install_source):
    install_source("    raise RuntimeError('no framework here')\n")

    with raises_exactly(
        "settings source 'framework' (framework_source:settings_source) failed: "
        "RuntimeError('no framework here')"
    ):
        load_settings(environ={}, cwd=tmp_path)
    settings = load_settings(environ={"JOBKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}, cwd=tmp_path)
    assert settings == Settings()


def test_limits_are_read_from_an_array_of_tables(tmp_path):
    (tmp_path / "jobkit.toml").write_text(
        '[[limits]]\nqueue = "emails"\nmax_running = 2\nmax_starts = 10\nper = 60\n'
        '[[limits]]\njob_name = "app.Report"\nmax_running = 1\n'
        '[[limits]]\nconcurrency_key = "tenant-7"\nmax_starts = 5\nper = 0.5\n'
    )
    limits = load_settings(environ={}, cwd=tmp_path).flow_limits()
    assert limits == [
        FlowLimit(scope=LimitScope.QUEUE, name="emails", max_running=2, max_starts=10, per=60.0),
        FlowLimit(scope=LimitScope.JOB_NAME, name="app.Report", max_running=1),
        FlowLimit(scope=LimitScope.CONCURRENCY_KEY, name="tenant-7", max_starts=5, per=0.5),
    ]
    assert [limit.key for limit in limits] == [
        "queue:emails",
        "job_name:app.Report",
        "concurrency_key:tenant-7",
    ]


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ('"emails"', "must be a list (JSON in an environment variable)"),
        ('["emails"]', "entry 1 is not a table"),
        ('[{"max_running": 1}]', "entry 1 must name exactly one of queue, job_name or"),
        (
            '[{"queue": "a", "job_name": "b", "max_running": 1}]',
            "entry 1 must name exactly one of queue, job_name or concurrency_key",
        ),
        ('[{"queue": "", "max_running": 1}]', "entry 1 must name its queue with a non-empty"),
        ('[{"queue": 3, "max_running": 1}]', "entry 1 must name its queue with a non-empty"),
        ('[{"queue": "a"}]', "entry 1 must set max_running, or max_starts and per"),
        ('[{"queue": "a", "max_running": 0}]', "entry 1 must have max_running as an integer of 1"),
        ('[{"queue": "a", "max_running": 1.5}]', "must have max_running as an integer of 1"),
        ('[{"queue": "a", "max_running": true}]', "must have max_running as an integer of 1"),
        ('[{"queue": "a", "max_starts": 3}]', "entry 1 must set max_starts and per together"),
        ('[{"queue": "a", "max_running": 1, "per": 3}]', "must set max_starts and per together"),
        ('[{"queue": "a", "max_starts": 3, "per": 0}]', "must have per as a number of seconds"),
        ('[{"queue": "a", "max_starts": 3, "per": "1m"}]', "must have per as a number of seconds"),
        ('[{"queue": "a", "max_running": 1, "rate": 3}]', "entry 1 has unknown keys rate; known:"),
        (
            '[{"queue": "a", "max_running": 1}, {"queue": "a", "max_starts": 1, "per": 1}]',
            "entry 2 limits queue:a again: merge the two entries",
        ),
    ],
)
def test_a_bad_limit_is_refused_naming_its_entry_and_source(tmp_path, limits, problem):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"JOBKIT_LIMITS": limits}, cwd=tmp_path)
    assert str(raised.value).startswith("setting limits (from JOBKIT_LIMITS) must be ")
    assert problem in str(raised.value)


def test_a_negative_rate_limit_is_refused(tmp_path):
    with pytest.raises(SettingsError, match=r"setting worker_rate_limit \(from --rate-limit\)"):
        load_settings({"worker_rate_limit": flag(-1, "--rate-limit")}, environ={}, cwd=tmp_path)
    assert load_settings(environ={}, cwd=tmp_path).worker_rate_limit == 0
