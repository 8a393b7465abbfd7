"""Tests of ``redact_credentials``: every form a password takes in a URL or conninfo string is
masked, and text without one is left as it was."""

from __future__ import annotations

import logging
import time

import pytest

from jobkit import Settings, redact_credentials
from jobkit.processes import LOG_FORMAT, CredentialsMaskedFormatter
from jobkit.records import Outcome, Status


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgres://app:p%40ss:w0rd@db/app", "postgres://app:***@db/app"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgres//app:s3cret@db/app", "postgres//app:***@db/app"),
        ("postgres:/app:s3cret@db/app", "postgres:/app:***@db/app"),
        ("host=db user=app password=s3cret", "host=db user=app password=***"),
        ("host=db password = 's3 cret\\'s' user=app", "host=db password = *** user=app"),
        ("postgresql://app@db/app?password=s3cret&sslmode=require",
         "postgresql://app@db/app?password=***&sslmode=require"),
        ("PGPASSWORD=s3cret sslpassword=s3cret", "PGPASSWORD=*** sslpassword=***"),
        ('cannot reach "postgresql://app:s3cret@db/app": refused',
         'cannot reach "postgresql://app:***@db/app": refused'),
    ],
)  # fmt: skip
def test_a_password_is_masked_in_every_form(text, masked):
    assert redact_credentials(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app@db:5432/app",
        "postgresql://db:5432/app",
        "postgresql://[::1]:5432/app",
        "schedule:cmd:./cleanup --all @hourly@2026-01-01T00:00:00+00:00",
        "ValueError: expected int, got str 'abc'",
    ],
)
def test_text_without_a_password_is_left_as_it_was(text):
    assert redact_credentials(text) == text


@pytest.mark.parametrize("text", ["x" * 50_000 + ":y", "a:" * 25_000, "password" * 6_000 + "="])
def test_masking_takes_time_linear_in_the_text(text):
    # Every error a job raises is masked: a long one without spaces must not take seconds.
    start = time.perf_counter()
    redact_credentials(text)
    assert time.perf_counter() - start < 1.0


def test_a_huge_error_without_a_password_costs_no_pattern_search():
    # A job's error can be hundreds of megabytes before it is cut to error_max_length.
    text = "Traceback:\n  outcome = run(job)\nValueError: " + "x" * 50_000_000
    start = time.perf_counter()
    assert redact_credentials(text) is text
    assert time.perf_counter() - start < 1.0


def test_the_password_of_a_source_is_masked_wherever_its_pieces_appear():
    url = "postgresql://app:s3c ret%zz@db/app"

    assert redact_credentials('unexpected spaces found in "s3c ret%zz"', url) == (
        'unexpected spaces found in "***"'
    )
    assert redact_credentials('invalid percent-encoded token: "%zz"', url) == (
        'invalid percent-encoded token: "***"'
    )
    assert redact_credentials('no user "app" on host "db"', url) == 'no user "app" on host "db"'


def test_settings_show_the_database_url_without_its_password():
    settings = Settings(database_url="postgresql://app:s3cret@db/app")

    assert "database_url='postgresql://app:***@db/app'" in repr(settings)
    assert settings.database_url == "postgresql://app:s3cret@db/app"


def test_an_outcome_keeps_its_error_without_passwords():
    outcome = Outcome(status=Status.ERRORED, error="could not use postgresql://app:s3cret@db/app")

    assert outcome.error == "could not use postgresql://app:***@db/app"


def test_the_worker_log_format_masks_passwords_in_messages_and_tracebacks():
    formatter = CredentialsMaskedFormatter(LOG_FORMAT, defaults={"jobkit_context": ""})
    try:
        raise RuntimeError("redis://:s3cret@cache:6379/0 is down")
    except RuntimeError as error:
        record = logging.LogRecord(
            "jobkit", logging.ERROR, __file__, 1, "using %s", ("host=db password=s3cret",),
            (type(error), error, error.__traceback__),
        )  # fmt: skip

    line = formatter.format(record)

    assert "s3cret" not in line
    assert "using host=db password=***" in line
    assert "RuntimeError: redis://:***@cache:6379/0 is down" in line
