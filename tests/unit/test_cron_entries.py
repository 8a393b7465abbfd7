"""Tests of schedule entries: the forms the ``schedule`` setting takes, job classes' ``schedule``
attribute, plugins' entries and parsers, and the start-up error for each kind of bad entry."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

import testapp.jobs  # noqa: F401 - registers the test jobs
from jobkit import Job, Schedule, ScheduleError, hookimpl
from jobkit.builtin.cron import COMMAND_JOB_NAME, ScheduledCommand, load_entries
from jobkit.registry import JobRegistry
from jobkit.runtime import Runtime
from jobkit.settings import Settings
from testapp.schedule_plugin import EverySeconds


def runtime_for(*plugins: object, **settings: Any) -> Runtime:
    runtime = Runtime.from_settings(Settings(**settings), load_entrypoints=False)
    for plugin in plugins:
        runtime.pm.register(plugin)
    return runtime


def entries(*schedule: Any, plugins: tuple[object, ...] = (), **settings: Any) -> list:
    return load_entries(runtime_for(*plugins, schedule=list(schedule), **settings))


def error_of(*schedule: Any, **settings: Any) -> str:
    with pytest.raises(ScheduleError) as raised:
        entries(*schedule, **settings)
    return str(raised.value)


# The forms of an entry --------------------------------------------------------------------------


def test_a_pair_names_a_registered_job_and_a_cron_schedule():
    [entry] = entries(["testapp.jobs.Noop", "0 9 * * *"])

    assert entry.job == "testapp.jobs.Noop"
    assert entry.schedule == Schedule.from_cron("0 9 * * *")
    assert entry.timezone == "UTC"
    assert entry.key == "testapp.jobs.Noop 0 9 * * *"
    assert entry.catch_up == "none"
    assert entry.origin == "schedule setting, entry 1"


def test_a_table_takes_options_and_its_key_says_what_it_runs():
    [entry] = entries(
        {
            "job": "testapp.jobs.Noop",
            "schedule": "@daily",
            "kwargs": {"number": 7},
            "queue": "reports",
            "priority": 5,
            "retries": 2,
            "timezone": "Europe/Berlin",
            "catch_up": "latest",
        }
    )

    assert entry.key == 'testapp.jobs.Noop @daily Europe/Berlin {"number": 7}'
    assert entry.enqueue_options() == {"queue": "reports", "priority": 5, "retries": 2}
    assert entry.catch_up == "latest"
    assert entry.make_job(runtime_for().registry).number == 7
    assert entry.schedule.next(datetime.datetime(2026, 7, 1, 12, tzinfo=datetime.UTC)) == (
        datetime.datetime(2026, 7, 1, 22, tzinfo=datetime.UTC)  # midnight in Berlin, CEST
    )


def test_an_explicit_key_is_kept():
    [entry] = entries(
        {
            "job": "testapp.jobs.Noop",
            "schedule": "* * * * *",
            "key": "tally-every-minute",
            "kwargs": {"number": 1},
        }
    )

    assert entry.key == "tally-every-minute"


def test_the_timezone_setting_is_the_default_zone():
    [entry] = entries(["testapp.jobs.Noop", "0 9 * * *"], timezone="America/New_York")

    assert entry.timezone == "America/New_York"
    assert entry.key == "testapp.jobs.Noop 0 9 * * * America/New_York"
    assert entry.schedule.next(datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)) == (
        datetime.datetime(2026, 1, 5, 14, tzinfo=datetime.UTC)
    )


def test_a_schedule_object_keeps_its_own_zone():
    schedule = Schedule(minute=30, hour=2, timezone="Europe/London")
    [entry] = entries(("testapp.jobs.Noop", schedule), timezone="Asia/Tokyo")

    assert entry.schedule is schedule
    assert entry.timezone == "Europe/London"


def test_a_cmd_entry_runs_its_command_through_the_built_in_job():
    runtime = runtime_for(schedule=[["cmd:./scripts/cleanup --all", "@hourly"]])
    [entry] = load_entries(runtime)

    job = entry.make_job(runtime.registry)
    assert isinstance(job, ScheduledCommand)
    assert job.command == "./scripts/cleanup --all"
    assert runtime.registry.get(COMMAND_JOB_NAME) is ScheduledCommand
    assert entry.key == "cmd:./scripts/cleanup --all @hourly"


def test_a_job_class_schedule_attribute_is_an_entry():
    runtime = runtime_for()
    runtime.registry = JobRegistry()

    class Daily(Job):
        schedule = Schedule.from_cron("0 6 * * *", timezone="Europe/Paris")

        def default_queue(self) -> str:
            return "reports"

        def run(self) -> None:
            pass

    class Hourly(Job):
        schedule = "0 * * * *"

        def run(self) -> None:
            pass

    runtime.registry.register(Daily, "reports.Daily")
    runtime.registry.register(Hourly, "reports.Hourly")
    found = {entry.job: entry for entry in load_entries(runtime)}

    assert found["reports.Daily"].timezone == "Europe/Paris"
    assert found["reports.Daily"].origin == "job class reports.Daily"
    assert found["reports.Hourly"].schedule == Schedule.from_cron("0 * * * *")
    assert found["reports.Hourly"].queue is None  # the job's default_queue() applies


def test_plugins_add_entries_and_parse_their_own_schedule_text():
    class Contributes:
        @hookimpl
        def jobkit_add_schedules(self, settings):
            return [
                ("testapp.jobs.Noop", "every 30 seconds"),
                {"job": "testapp.jobs.Noop", "schedule": "5 * * * *"},
            ]

    import testapp.schedule_plugin

    found = entries(
        ["testapp.jobs.Noop", "*/5 * * * *"], plugins=(Contributes(), testapp.schedule_plugin)
    )

    assert [entry.origin for entry in found] == [
        "schedule setting, entry 1",
        "a plugin's jobkit_add_schedules, entry 1",
        "a plugin's jobkit_add_schedules, entry 2",
    ]
    assert isinstance(found[1].schedule, EverySeconds)
    assert found[1].key == "testapp.jobs.Noop every 30 seconds"
    assert isinstance(found[2].schedule, Schedule)


def test_no_entries_anywhere_is_fine():
    assert entries() == []


# Bad entries: each stops the worker naming the entry, its text and the problem -----------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            ["testapp.jobs.Noop", "0 25 * * *"],
            r"schedule setting, entry 2 \(\[\"testapp.jobs.Noop\", \"0 25 \* \* \*\"\]\): "
            r".*hour.*25",
        ),
        (["testapp.jobs.Noop", "0 0 30 2 *"], r"can never fire"),
        (["testapp.jobs.Noop", "@fortnightly"], r"unknown macro '@fortnightly'"),
        (["testapp.jobs.Noop", "0 9 * *"], r"5 fields"),
        (
            ["app.Missing", "0 9 * * *"],
            r"no job is registered as 'app.Missing' \(registered: .*testapp.jobs.Noop",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "0 9 * * *", "timezone": "Mars/Olympus"},
            r"unknown timezone 'Mars/Olympus'",
        ),
        (["testapp.jobs.Noop"], r"a pair is \[job, schedule\], got 1 items"),
        ("testapp.jobs.Noop 0 9 * * *", r"an entry is a \[job, schedule\] pair or a table"),
        ({"job": "testapp.jobs.Noop"}, r"schedule is missing"),
        ({"job": "testapp.jobs.Noop", "schedule": "@daily", "every": 3}, r"unknown option 'every'"),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "catch_up": "all"},
            r"catch_up must be 'none' or 'latest'",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "kwargs": {"nope": 1}},
            r"cannot be made from kwargs.*nope",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "kwargs": {"number": object()}},
            r"parameter .number. is annotated int but was given object",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "queue": "no spaces"},
            r"queue must be a name",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "priority": "high"},
            r"priority must be an integer",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "retries": -1},
            r"retries must be between 0",
        ),
        (
            {"job": "testapp.jobs.Noop", "schedule": "@daily", "key": ""},
            r"key must be a non-empty string",
        ),
        ({"job": "cmd:  ", "schedule": "@daily"}, r"needs a shell command"),
        (
            {"job": "cmd:true", "schedule": "@daily", "kwargs": {"a": 1}},
            r"a cmd: entry takes no kwargs",
        ),
        ({"job": "", "schedule": "@daily"}, r"job must be a non-empty string"),
        ({"job": "testapp.jobs.Noop", "schedule": 15}, r"schedule must be a non-empty string"),
        (
            {"job": "testapp.jobs.Noop", "schedule": Schedule(minute=0), "timezone": "UTC"},
            r"a Schedule object has its own time zone",
        ),
    ],
)
def test_a_bad_entry_is_a_start_up_error(entry, message):
    assert re.search(message, error_of(["testapp.jobs.Noop", "@hourly"], entry))


def test_the_error_names_the_position_of_the_bad_entry():
    message = error_of(["testapp.jobs.Noop", "@hourly"], ["testapp.jobs.Noop", "61 * * * *"])

    assert message.startswith('schedule setting, entry 2 (["testapp.jobs.Noop", "61 * * * *"]): ')


def test_a_tables_text_is_shown_as_written():
    message = error_of({"job": "testapp.jobs.Noop", "schedule": "0 9 * * *", "timezone": "Nowhere"})

    assert message.startswith(
        "schedule setting, entry 1 (job=testapp.jobs.Noop, schedule=0 9 * * *, timezone=Nowhere): "
    )


def test_two_entries_with_one_key_are_an_error():
    message = error_of(
        {
            "job": "testapp.jobs.Noop",
            "schedule": "@daily",
            "key": "nightly",
            "kwargs": {"number": 2},
        },
        {"job": "testapp.jobs.Noop", "schedule": "@hourly", "key": "nightly"},
    )

    assert "schedule setting, entry 2" in message
    assert "has the key 'nightly' of schedule setting, entry 1" in message


def test_text_no_plugin_reads_is_an_error():
    message = error_of(["testapp.jobs.Noop", "0 9 * * *"], disable_plugins=["jobkit.builtin.cron"])

    assert message.endswith(": no plugin reads the schedule '0 9 * * *'")


def test_a_plugins_parser_errors_name_the_entry():
    import testapp.schedule_plugin

    with pytest.raises(ScheduleError, match=r"entry 1 .*'every now and then': write 'every N"):
        entries(["testapp.jobs.Noop", "every now and then"], plugins=(testapp.schedule_plugin,))
