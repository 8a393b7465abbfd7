"""The log context plugin without a database: the record factory and filter, the default log
format, and attempts run through a real runtime's ``run_attempt`` (``jobkit_run_job``)."""

from __future__ import annotations

import contextvars
import datetime
import logging
import threading
import uuid
from collections.abc import Iterator

import attrs
import pytest

from jobkit.builtin import logcontext
from jobkit.hookspecs import hookimpl
from jobkit.processes import LOG_FORMAT
from jobkit.records import JobProcess, Status
from jobkit.runtime import Runtime
from jobkit.settings import Settings
from testapp.log_jobs import LogLine

EMPTY = dict.fromkeys(logcontext.FIELDS, "")


@pytest.fixture(autouse=True)
def no_record_factory() -> Iterator[None]:
    """Each test starts and ends with the process's own record factory."""
    logcontext.uninstall_record_factory()
    yield
    logcontext.uninstall_record_factory()


def make_runtime(**settings) -> Runtime:
    return Runtime.from_settings(Settings(**settings), load_entrypoints=False)


def claimed(runtime: Runtime, job: LogLine) -> JobProcess:
    """The first attempt of ``job`` as a worker would claim it."""
    request = runtime.build_request(job)
    fields = {f.name: getattr(request, f.name) for f in attrs.fields(type(request))}
    del fields["delay"]
    return JobProcess(
        **fields, worker_id=uuid.uuid4(), claimed_at=datetime.datetime.now(datetime.UTC)
    )


def retry_of(process: JobProcess) -> JobProcess:
    """The retry the store would write after ``process`` failed."""
    return attrs.evolve(
        process,
        id=uuid.uuid4(),
        retry_of=process.id,
        retry_attempt=process.retry_attempt + 1,
    )


def context_of(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name, None) for name in logcontext.FIELDS}


class ListHandler(logging.Handler):
    """Keeps each formatted line."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def job_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "testapp.log_jobs"]


# The record factory and the filter ---------------------------------------------------------------


def test_records_made_outside_a_job_get_empty_strings():
    logcontext.install_record_factory()

    record = logging.getLogger("any.child.logger").makeRecord(
        "any.child.logger", logging.INFO, __file__, 1, "hello", (), None
    )

    assert context_of(record) == EMPTY


def test_installing_twice_wraps_the_factory_once_and_uninstalling_restores_it():
    original = logging.getLogRecordFactory()

    logcontext.install_record_factory()
    installed = logging.getLogRecordFactory()
    logcontext.install_record_factory()

    assert installed is not original
    assert logging.getLogRecordFactory() is installed
    logcontext.uninstall_record_factory()
    assert logging.getLogRecordFactory() is original


def test_the_filter_stamps_records_on_a_handler_and_drops_none():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", (), None)

    assert logcontext.JobContextFilter().filter(record) is True
    assert context_of(record) == EMPTY


def test_a_format_of_ones_own_works_with_the_filter_on_its_handler():
    """The recipe of docs/logging.md, in a process that has run no job (no record factory)."""
    handler = ListHandler()
    handler.addFilter(logcontext.JobContextFilter())
    handler.setFormatter(logging.Formatter("%(jobkit_job_id)s|%(jobkit_attempt)s|%(message)s"))
    parent = logging.getLogger("logcontext_test")
    parent.addHandler(handler)
    try:
        logging.getLogger("logcontext_test.child").warning("hello")
    finally:
        parent.removeHandler(handler)

    assert handler.lines == ["||hello"]


def test_the_filter_keeps_a_context_stamped_where_the_record_was_made():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", (), None)
    record.__dict__.update(jobkit_job="a.Job", jobkit_job_id="1", jobkit_attempt=2)
    record.jobkit_attempt_id = record.jobkit_context = "x"

    logcontext.JobContextFilter().filter(record)

    assert (record.jobkit_job, record.jobkit_job_id, record.jobkit_attempt) == ("a.Job", "1", 2)


def test_the_default_format_shows_the_context_only_inside_a_job():
    formatter = logging.Formatter(LOG_FORMAT, defaults={"jobkit_context": ""})
    outside = logging.LogRecord("app.jobs", logging.INFO, __file__, 1, "hello", (), None)
    inside = logging.LogRecord("app.jobs", logging.INFO, __file__, 1, "hello", (), None)
    inside.jobkit_context = " [job=app.Job id=abc attempt=1]"

    assert formatter.format(outside).endswith(" INFO app.jobs: hello")
    assert formatter.format(inside).endswith(" INFO app.jobs [job=app.Job id=abc attempt=1]: hello")


# Attempts run through the runtime ----------------------------------------------------------------


def test_lines_a_job_logs_carry_its_id_name_and_attempt(caplog):
    caplog.set_level(logging.INFO)
    runtime = make_runtime()
    process = claimed(runtime, LogLine("a"))

    outcome = runtime.run_attempt(process)

    assert outcome.status is Status.SUCCESSFUL, outcome.error
    [line] = job_lines(caplog)
    assert line.getMessage() == "a says hello"
    assert context_of(line) == {
        "jobkit_job": "testapp.LogLine",
        "jobkit_job_id": str(process.job_id),
        "jobkit_attempt": 1,
        "jobkit_attempt_id": str(process.id),
        "jobkit_context": f" [job=testapp.LogLine id={process.job_id} attempt=1]",
    }
    assert logcontext.current_context() is None


def test_a_retry_keeps_the_job_id_and_counts_the_attempt(caplog):
    caplog.set_level(logging.INFO)
    runtime = make_runtime()
    first = claimed(runtime, LogLine("b", fail_times=1))
    second = retry_of(first)

    assert runtime.run_attempt(first).status is Status.ERRORED
    assert runtime.run_attempt(second).status is Status.SUCCESSFUL

    lines = job_lines(caplog)
    assert [line.jobkit_job_id for line in lines] == [str(first.id), str(first.id)]
    assert [line.jobkit_attempt for line in lines] == [1, 2]
    assert [line.jobkit_attempt_id for line in lines] == [str(first.id), str(second.id)]
    assert logcontext.current_context() is None


def test_other_wrappers_log_inside_the_context():
    seen: list[logging.LogRecord] = []

    class Timing:
        @hookimpl(wrapper=True)
        def jobkit_run_job(self, job, process):
            seen.append(logging.getLogger("timing").makeRecord("timing", 20, "", 0, "", (), None))
            return (yield)

    runtime = make_runtime()
    runtime.pm.register(Timing())
    process = claimed(runtime, LogLine("c"))

    runtime.run_attempt(process)

    assert seen[0].jobkit_job_id == str(process.job_id)


def test_a_thread_started_in_a_copy_of_the_context_logs_inside_it(caplog):
    caplog.set_level(logging.INFO)
    runtime = make_runtime()
    process = claimed(runtime, LogLine("d", in_thread=True))

    runtime.run_attempt(process)

    hello, from_thread = job_lines(caplog)
    assert from_thread.getMessage() == "d from a thread"
    assert from_thread.threadName != hello.threadName
    assert from_thread.jobkit_job_id == hello.jobkit_job_id == str(process.job_id)


def test_attempts_that_take_turns_each_log_with_their_own_context():
    """Async attempts of one pool child take turns on its loop, each in its own context: the
    context made for one attempt's line is never given to the other's."""
    runtime = make_runtime()
    first, second = claimed(runtime, LogLine("g")), claimed(runtime, LogLine("h"))

    runs = []

    def inside(process: JobProcess) -> contextvars.Context:
        context = contextvars.copy_context()
        run = logcontext.jobkit_run_job(job=None, process=process)
        context.run(next, run)
        runs.append((context, run))
        return context

    a, b = inside(first), inside(second)
    seen = [context.run(logcontext.current_context) for context in (a, b, a, b, a)]
    for context, run in runs:
        context.run(run.close)

    assert [found.attempt_id for found in seen] == [str(p.id) for p in (first, second) * 2] + [
        str(first.id)
    ]
    assert seen[0] == logcontext.JobLogContext.of(first)
    assert logcontext.current_context() is None


def test_a_plain_thread_does_not_inherit_the_context():
    """The documented limit: ``threading.Thread`` starts with an empty context."""
    runtime = make_runtime()
    seen: list[logcontext.JobLogContext | None] = []

    class Probe:
        @hookimpl(wrapper=True, trylast=True)
        def jobkit_run_job(self, job, process):
            inherited = threading.Thread(target=lambda: seen.append(logcontext.current_context()))
            inherited.start()
            inherited.join()
            seen.append(contextvars.copy_context().run(logcontext.current_context))
            return (yield)

    runtime.pm.register(Probe())
    runtime.run_attempt(claimed(runtime, LogLine("e")))

    assert seen[0] is None
    assert seen[1] is not None and seen[1].job == "testapp.LogLine"


def test_blocked_it_adds_nothing_and_the_job_still_runs(caplog):
    caplog.set_level(logging.INFO)
    runtime = make_runtime(disable_plugins=["jobkit.builtin.logcontext"])
    process = claimed(runtime, LogLine("f"))

    assert runtime.run_attempt(process).status is Status.SUCCESSFUL

    [line] = job_lines(caplog)
    assert context_of(line) == dict.fromkeys(logcontext.FIELDS)
    formatter = logging.Formatter(LOG_FORMAT, defaults={"jobkit_context": ""})
    assert formatter.format(line).endswith(" INFO testapp.log_jobs: f says hello")
