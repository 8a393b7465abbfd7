"""The log formats of ``jobkit worker``, its pool children and ``jobkit run``, without a
process: JSON lines with the job's context as keys of their own, and text whose level names
are coloured on a terminal only."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from jobkit.processes import log_formatter

JOB_ID = uuid.UUID("b489f877-956a-4c22-a850-4097f82bed67")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str = "hello", *args: object, level: int = logging.INFO, **attributes):
    made = logging.LogRecord("app.jobs", level, __file__, 1, message, args, None)
    made.__dict__.update(attributes)
    return made


def test_a_json_line_has_time_level_logger_and_message():
    line = log_formatter("json", io.StringIO()).format(record("%s says hello", "ada"))

    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {"level": "INFO", "logger": "app.jobs", "message": "ada says hello"}


def test_a_json_line_carries_the_jobs_context_and_the_attempts_figures_as_keys():
    line = log_formatter("json", io.StringIO()).format(
        record(
            jobkit_job="app.Invoice",
            jobkit_job_id=JOB_ID,
            jobkit_attempt=2,
            jobkit_attempt_id="f6974d3c-ea59-448f-b1ff-ebdcb71a750a",
            jobkit_context=" [job=app.Invoice id=b489f877 attempt=2]",
            jobkit_status="SUCCESSFUL",
            jobkit_duration=0.25,
            jobkit_queue_wait=1.5,
        )
    )

    entry = json.loads(line)
    assert {key: entry[key] for key in entry if key not in ("time", "level", "logger")} == {
        "message": "hello",
        "job": "app.Invoice",
        "job_id": str(JOB_ID),
        "attempt": 2,
        "attempt_id": "f6974d3c-ea59-448f-b1ff-ebdcb71a750a",
        "status": "SUCCESSFUL",
        "duration": 0.25,
        "queue_wait": 1.5,
    }


def test_a_json_line_leaves_out_the_context_outside_a_job():
    empty = dict.fromkeys(("jobkit_job", "jobkit_job_id", "jobkit_attempt"), "")

    entry = json.loads(log_formatter("json", io.StringIO()).format(record(**empty)))

    assert set(entry) == {"time", "level", "logger", "message"}


def test_a_json_line_is_one_line_with_the_traceback_and_no_password():
    try:
        raise RuntimeError("postgresql://app:s3cret@db/app is down")
    except RuntimeError as error:
        failed = logging.LogRecord(
            "jobkit.worker", logging.ERROR, __file__, 1, "using\n%s", ("host=db password=s3cret",),
            (type(error), error, error.__traceback__),
        )  # fmt: skip

    line = log_formatter("json", io.StringIO()).format(failed)

    assert "\n" not in line and "s3cret" not in line
    entry = json.loads(line)
    assert entry["message"] == "using\nhost=db password=***"
    assert entry["exc_info"].startswith("Traceback (most recent call last):\n")
    assert entry["exc_info"].endswith("RuntimeError: postgresql://app:***@db/app is down")


def test_text_on_a_terminal_colours_the_level_name(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    formatter = log_formatter("text", Terminal())
    warning = record(level=logging.WARNING)

    line = formatter.format(warning)

    assert line.endswith(" \x1b[33mWARNING\x1b[0m app.jobs: hello")
    assert warning.levelname == "WARNING"  # other handlers format the same record


@pytest.mark.parametrize(
    ("stream", "no_color"),
    [(io.StringIO(), None), (Terminal(), "1")],
    ids=["not a terminal", "NO_COLOR"],
)
def test_text_is_plain_off_a_terminal_and_with_no_color(monkeypatch, stream, no_color):
    monkeypatch.delenv("NO_COLOR", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)

    line = log_formatter("text", stream).format(record(level=logging.WARNING))

    assert "\x1b" not in line
    assert line.endswith(" WARNING app.jobs: hello")
