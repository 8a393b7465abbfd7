"""Tests of the Job base class and of ``Runtime.build_request``, which turns a job and the
arguments of ``run_in_worker`` into a request (no database: it only needs the serializer)."""

from __future__ import annotations

import datetime
import json
import re
import sys

import pytest

from jobkit.enqueueing import seconds
from jobkit.errors import DeferJob, ParameterError, SettingsError, UnknownJobError
from jobkit.job import Job
from jobkit.registry import JobRegistry
from jobkit.runtime import Runtime, error_type
from jobkit.settings import Settings

UTC = datetime.UTC
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
QUEUE_RULE = "queue must be a name of letters, digits and _.:- (at most 128 characters)"


class Greet(Job):
    def __init__(self, name: str, punctuation: str = "!"):
        self.name = name.upper()
        self.punctuation = punctuation

    def run(self) -> None:
        pass


class Urgent(Job):
    def default_queue(self) -> str:
        return "urgent"

    def default_priority(self) -> int:
        return 10

    def default_retries(self) -> int:
        return 3

    def default_concurrency_key(self) -> str:
        return "only-one"

    def run(self) -> None:
        pass


class BadDefaultQueue(Job):
    def default_queue(self) -> str:
        return "no spaces allowed"


class Widget:
    pass


class Remember(Job):
    def __init__(self, thing, *, count: int = 0):
        self.thing = thing
        self.count = count


class Unregistered(Job):
    pass


class Bare(Job):
    pass


# The Job base class -----------------------------------------------------------------------------


def test_a_job_captures_its_init_arguments_as_given():
    job = Greet("Ada", punctuation="?")

    assert job._init_args == ("Ada",)
    assert job._init_kwargs == {"punctuation": "?"}
    assert job.name == "ADA"


def test_a_job_without_init_captures_nothing():
    job = Bare()

    assert (job._init_args, job._init_kwargs) == ((), {})


@pytest.mark.parametrize(
    ("job", "text"),
    [
        (Greet("Ada"), "Greet('Ada')"),
        (Greet("Ada", punctuation="?"), "Greet('Ada', punctuation='?')"),
        (Remember([1, 2], count=3), "Remember([1, 2], count=3)"),
        (Bare(), "Bare()"),
    ],
)
def test_repr_shows_the_class_and_its_init_arguments(job, text):
    assert repr(job) == text


def test_defaults():
    job = Bare()

    assert job.default_queue() == "default"
    assert job.default_priority() == 0
    assert job.default_retries() == 0
    assert job.default_concurrency_key() == ""
    assert job.calculate_retry_delay(1) == 0
    assert job.job_process is None
    assert job.get_enqueue_lock("key") is None


def test_should_enqueue_without_a_concurrency_key_needs_no_database():
    assert Bare().should_enqueue("") is True


def test_plain_workers_unique_key_is_refused_naming_concurrency_key():
    message = (
        "run_in_worker() got an unexpected keyword argument 'unique_key': plain.worker's "
        "unique_key is concurrency_key in jobkit (as in plain.jobs)"
    )

    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$") as raised:
        Bare().run_in_worker(unique_key="user-42")
    assert isinstance(raised.value, TypeError)


def test_a_job_without_run_says_what_to_define():
    with pytest.raises(NotImplementedError, match=r"^Bare must define run\(\)$"):
        Bare().run()


# build_request ----------------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path, monkeypatch) -> Runtime:
    monkeypatch.chdir(tmp_path)  # no jobkit.toml or pyproject.toml of the checkout
    runtime = Runtime.from_settings(Settings(), load_entrypoints=False)
    runtime.registry = JobRegistry()
    for job_class in (Greet, Urgent, BadDefaultQueue, Remember, Bare):
        runtime.registry.register(job_class, f"tests.{job_class.__name__}")
    return runtime


def test_arguments_left_out_come_from_the_job_defaults(runtime):
    request = runtime.build_request(Bare())

    assert request.job_name == "tests.Bare"
    assert (request.queue, request.priority, request.retries) == ("default", 0, 0)
    assert request.concurrency_key == ""
    assert (request.delay, request.start_at) == (0.0, None)
    assert request.source == ""
    assert request.job_id == request.id


def test_a_class_default_methods_are_used(runtime):
    request = runtime.build_request(Urgent())

    assert (request.queue, request.priority, request.retries) == ("urgent", 10, 3)
    assert request.concurrency_key == "only-one"


def test_arguments_override_the_class_defaults_even_when_falsy(runtime):
    request = runtime.build_request(
        Urgent(), queue="low", priority=0, retries=0, concurrency_key="", source="app.py:12"
    )

    assert (request.queue, request.priority, request.retries) == ("low", 0, 0)
    assert request.concurrency_key == ""
    assert request.source == "app.py:12"


def test_the_parameters_are_the_init_arguments_as_json(runtime):
    request = runtime.build_request(Greet("Ada", punctuation="?"))

    assert json.loads(request.parameters) == {"args": ["Ada"], "kwargs": {"punctuation": "?"}}


def test_each_request_gets_its_own_id(runtime):
    first, second = runtime.build_request(Bare()), runtime.build_request(Bare())

    assert first.id != second.id


@pytest.mark.parametrize(
    ("delay", "seconds_"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (datetime.timedelta(minutes=2), 120.0),
        (datetime.timedelta(0), 0.0),
    ],
)
def test_a_relative_delay_becomes_seconds(runtime, delay, seconds_):
    request = runtime.build_request(Bare(), delay=delay)

    assert request.delay == seconds_
    assert type(request.delay) is float
    assert request.start_at is None


@pytest.mark.parametrize(
    "start_at",
    [
        datetime.datetime(2030, 1, 1, 9, 30, tzinfo=UTC),
        datetime.datetime(2030, 1, 1, 9, 30, tzinfo=PLUS_TWO),
        datetime.datetime(2000, 1, 1, tzinfo=UTC),
    ],
)
def test_an_aware_datetime_delay_is_the_start_time(runtime, start_at):
    request = runtime.build_request(Bare(), delay=start_at)

    assert request.start_at == start_at
    assert request.start_at.utcoffset() == start_at.utcoffset()
    assert request.delay == 0.0


NAIVE = datetime.datetime(2030, 1, 1, 9, 30)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"delay": NAIVE},
            ParameterError,
            "tests.Bare: delay as a datetime must be timezone-aware (e.g. "
            "datetime.now(timezone.utc) + timedelta(minutes=5)), got "
            "datetime.datetime(2030, 1, 1, 9, 30)",
        ),
        ({"delay": -1}, ParameterError, "tests.Bare: delay cannot be negative, got -1"),
        (
            {"delay": datetime.timedelta(seconds=-1)},
            ParameterError,
            "tests.Bare: delay cannot be negative, got -1.0",
        ),
        (
            {"delay": float("nan")},
            ParameterError,
            "tests.Bare: delay must be a number of seconds, a timedelta, or an aware "
            "datetime to start at, got nan",
        ),
        (
            {"delay": float("inf")},
            ParameterError,
            "tests.Bare: delay must be a number of seconds, a timedelta, or an aware "
            "datetime to start at, got inf",
        ),
        (
            {"delay": True},
            ParameterError,
            "tests.Bare: delay must be a number of seconds, a timedelta, or an aware "
            "datetime to start at, got True",
        ),
        (
            {"delay": "60"},
            ParameterError,
            "tests.Bare: delay must be a number of seconds, a timedelta, or an aware "
            "datetime to start at, got '60'",
        ),
        ({"priority": True}, ParameterError, "tests.Bare: priority must be an integer, got True"),
        ({"priority": 1.5}, ParameterError, "tests.Bare: priority must be an integer, got 1.5"),
        ({"priority": "1"}, ParameterError, "tests.Bare: priority must be an integer, got '1'"),
        (
            {"priority": 2**31},
            ParameterError,
            "tests.Bare: priority must be between -2147483648 and 2147483647, got 2147483648",
        ),
        (
            {"priority": -(2**40)},
            ParameterError,
            "tests.Bare: priority must be between -2147483648 and 2147483647, got -1099511627776",
        ),
        (
            {"retries": -1},
            ParameterError,
            "tests.Bare: retries must be between 0 and 2147483647, got -1",
        ),
        ({"retries": False}, ParameterError, "tests.Bare: retries must be an integer, got False"),
        ({"retries": 2.0}, ParameterError, "tests.Bare: retries must be an integer, got 2.0"),
        (
            {"concurrency_key": 42},
            ParameterError,
            "tests.Bare: concurrency_key must be a string without NUL, got 42",
        ),
        (
            {"concurrency_key": "user\x0042"},
            ParameterError,
            "tests.Bare: concurrency_key must be a string without NUL, got 'user\\x0042'",
        ),
        ({"queue": ""}, ParameterError, f"tests.Bare: {QUEUE_RULE}, got ''"),
        ({"queue": "my queue"}, ParameterError, f"tests.Bare: {QUEUE_RULE}, got 'my queue'"),
        ({"queue": "q" * 200}, ParameterError, f"tests.Bare: {QUEUE_RULE}, got '{'q' * 200}'"),
        (
            {"queue": "x'; DROP TABLE"},
            ParameterError,
            f'tests.Bare: {QUEUE_RULE}, got "x\'; DROP TABLE"',
        ),
        ({"queue": 5}, ParameterError, f"tests.Bare: {QUEUE_RULE}, got 5"),
        (
            {"delay": 1e13},
            ParameterError,
            "tests.Bare: delay cannot be longer than 100 years (3155760000 seconds), got "
            "10000000000000.0",
        ),
        (
            {"delay": datetime.timedelta(days=36526)},
            ParameterError,
            "tests.Bare: delay cannot be longer than 100 years (3155760000 seconds), got "
            "3155846400.0",
        ),
        (
            {"delay": datetime.datetime(9999, 12, 31, 23, 59, tzinfo=PLUS_TWO)},
            ParameterError,
            "tests.Bare: delay as a datetime must be within 100 years of now, got "
            "9999-12-31T23:59:00+02:00",
        ),
        (
            {"delay": datetime.datetime(1, 1, 1, tzinfo=UTC)},
            ParameterError,
            "tests.Bare: delay as a datetime must be within 100 years of now, got "
            "0001-01-01T00:00:00+00:00",
        ),
        (
            {"concurrency_key": "caf\udce9"},
            ParameterError,
            "tests.Bare: concurrency_key is not valid Unicode text: it holds a lone surrogate "
            "('\\udce9' at index 3; os.fsdecode makes those of bytes that are not UTF-8), which "
            "PostgreSQL cannot store; got 'caf\\udce9'",
        ),
        (
            {"concurrency_key": "é" * 501},
            ParameterError,
            "tests.Bare: concurrency_key is 1002 bytes long in UTF-8, more than the 1000 its "
            "index can hold; use a shorter key (e.g. a hash of this one), got "
            "'ééééééééééééééééééééééééééééééééééééééééééééééééééééééé...'",
        ),
    ],
)
def test_a_bad_argument_is_refused_naming_the_job(runtime, options, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        runtime.build_request(Bare(), **options)


@pytest.mark.parametrize(
    ("options", "builtin_error"),
    [
        ({"priority": "high"}, TypeError),
        ({"retries": 1.5}, TypeError),
        ({"delay": "60"}, TypeError),
        ({"timeout": "5"}, TypeError),
        ({"concurrency_key": 42}, TypeError),
        ({"queue": 5}, TypeError),
        ({"priority": 2**31}, ValueError),
        ({"delay": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"queue": "my queue"}, ValueError),
    ],
)
def test_a_bad_argument_is_a_parameter_error_and_still_the_builtin_error(
    runtime, options, builtin_error
):
    with pytest.raises(ParameterError) as raised:
        runtime.build_request(Bare(), **options)

    assert isinstance(raised.value, builtin_error)
    assert str(raised.value).startswith(f"tests.Bare: {next(iter(options))} ")


@pytest.mark.parametrize("key", ["k" * 1000, "é" * 500, "😀" * 250, "user-42"])
def test_concurrency_keys_up_to_1000_bytes_are_accepted(runtime, key):
    assert runtime.build_request(Bare(), concurrency_key=key).concurrency_key == key


def test_a_delay_of_100_years_is_accepted(runtime):
    hundred_years = datetime.timedelta(days=36525)
    assert runtime.build_request(Bare(), delay=hundred_years).delay == 3155760000.0
    soon_a_century = datetime.datetime.now(UTC) + hundred_years - datetime.timedelta(days=1)
    assert runtime.build_request(Bare(), delay=soon_a_century).start_at == soon_a_century


@pytest.mark.parametrize("queue", ["q" * 128, "emails", "a.b:c-d_e", "Q1"])
def test_queue_names_within_the_rules_are_accepted(runtime, queue):
    assert runtime.build_request(Bare(), queue=queue).queue == queue


@pytest.mark.parametrize("priority", [-(2**31) + 1, -10, 2**31 - 1])
def test_priorities_in_range_are_accepted(runtime, priority):
    assert runtime.build_request(Bare(), priority=priority).priority == priority


def test_a_bad_default_from_the_class_is_refused_naming_the_job(runtime):
    message = f"tests.BadDefaultQueue: {QUEUE_RULE}, got 'no spaces allowed'"

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        runtime.build_request(BadDefaultQueue())


def test_an_unregistered_job_class_is_refused(runtime):
    message = f"{__name__}.Unregistered is not registered: decorate it with @register_job"

    with pytest.raises(UnknownJobError, match=f"^{re.escape(message)}$"):
        runtime.build_request(Unregistered())


@pytest.mark.parametrize(
    ("script", "where"),
    [
        ("/srv/app/enqueue_now.py", "the script being run (/srv/app/enqueue_now.py)"),
        (None, "the script being run"),  # python -c, an interactive session, pytest-xdist
    ],
)
def test_a_job_of_the_script_being_run_is_refused_with_the_fixes(
    runtime, monkeypatch, script, where
):
    main = sys.modules["__main__"]
    if script is None:
        monkeypatch.delattr(main, "__file__", raising=False)
    else:
        monkeypatch.setattr(main, "__file__", script, raising=False)
    scripted = type("Scripted", (Job,), {"__module__": "__main__"})
    runtime.registry.register(scripted)

    with pytest.raises(UnknownJobError) as raised:
        runtime.build_request(scripted())

    message = str(raised.value)
    assert message.startswith(f"Scripted is defined in {where}, which Python names __main__")
    assert "registered as '__main__.Scripted': a name no worker knows" in message
    assert "list that module in the imports setting" in message
    assert '@register_job(name="Scripted")' in message


def test_a_job_of_the_script_being_run_with_a_name_of_its_own_is_enqueued(runtime):
    scripted = type("Scripted", (Job,), {"__module__": "__main__"})
    runtime.registry.register(scripted, "scripted")

    assert runtime.build_request(scripted()).job_name == "scripted"


def test_an_unserializable_parameter_names_job_parameter_and_type(runtime):
    with pytest.raises(ParameterError) as raised:
        runtime.build_request(Remember(Widget()))

    message = str(raised.value)
    assert message.startswith(
        f"Remember parameter 'thing' has type {__name__}.Widget, which jobkit cannot store as JSON"
    )
    assert "(thing: Widget)" in message


def test_a_parameter_of_the_wrong_type_names_job_parameter_and_types(runtime):
    message = (
        "Remember parameter 'count' is annotated int but was given str ('3'); pass a value of "
        "that type or change the annotation in Remember.__init__"
    )

    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        runtime.build_request(Remember(1, count="3"))


# seconds and error_type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (3, 3.0),
        (0.25, 0.25),
        (datetime.timedelta(hours=1), 3600.0),
        (datetime.timedelta(milliseconds=1500), 1.5),
    ],
)
def test_seconds_of_a_number_or_a_timedelta(value, expected):
    result = seconds(value)

    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, ValueError, "a delay cannot be negative, got -1"),
        (datetime.timedelta(days=-1), ValueError, "a delay cannot be negative, got -86400.0"),
        (float("nan"), TypeError, "a delay must be a number of seconds or a timedelta, got nan"),
        (float("-inf"), TypeError, "a delay must be a number of seconds or a timedelta, got -inf"),
        (True, TypeError, "a delay must be a number of seconds or a timedelta, got True"),
        (None, TypeError, "a delay must be a number of seconds or a timedelta, got None"),
        ("5", TypeError, "a delay must be a number of seconds or a timedelta, got '5'"),
        (
            3155760001,
            ParameterError,
            "a delay cannot be longer than 100 years (3155760000 seconds), got 3155760001",
        ),
    ],
)
def test_seconds_refuses_what_is_not_a_delay(value, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        seconds(value)


class Outer:
    class InnerError(Exception):
        pass


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (ValueError("x"), "ValueError"),
        (KeyError("x"), "KeyError"),
        (SystemExit(1), "SystemExit"),
        (SettingsError("x"), "jobkit.errors.SettingsError"),
        (DeferJob(delay=1), "jobkit.errors.DeferJob"),
        (Outer.InnerError(), f"{__name__}.Outer.InnerError"),
    ],
)
def test_error_type_is_the_class_name_qualified_outside_builtins(error, name):
    assert error_type(error) == name


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(5, 5.0), (0.5, 0.5), (datetime.timedelta(minutes=1), 60.0), (None, None)],
)
def test_timeout_is_stored_in_seconds(runtime, timeout, expected):
    request = runtime.build_request(Bare(), timeout=timeout)
    assert request.timeout == expected


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (0, "tests.Bare: timeout must be more than 0 seconds, got 0"),
        (-1, "tests.Bare: timeout cannot be negative, got -1"),
        (float("nan"), "tests.Bare: timeout must be a number of seconds or a timedelta, got nan"),
        ("5", "tests.Bare: timeout must be a number of seconds or a timedelta, got '5'"),
    ],
)
def test_a_bad_timeout_is_refused_naming_the_job(runtime, timeout, message):
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        runtime.build_request(Bare(), timeout=timeout)


def test_default_timeout_applies_unless_overridden(runtime):
    class Limited(Bare):
        def default_timeout(self):
            return datetime.timedelta(seconds=30)

    runtime.registry.register(Limited, "tests.Limited")
    assert runtime.build_request(Limited()).timeout == 30.0
    assert runtime.build_request(Limited(), timeout=2).timeout == 2.0
