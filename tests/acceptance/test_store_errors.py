"""What the database cannot take, against a real worker: values PostgreSQL cannot store are
refused at enqueue with a ParameterError that names the job and the argument; text from the
enqueueing code, plugins and errors is written escaped; and what the database refuses anyway is
a StoreError naming the cause — StoreUnavailable (retry later) only when the database could not
be reached. Each test ends by showing the worker still runs the next job."""

from __future__ import annotations

import datetime
import secrets

import pytest

from conftest import with_query
from jobkit import Job, ParameterError, Status, hookimpl, register_job
from jobkit.errors import StoreDataError, StoreError
from testapp.jobs import Record, ledger
from testapp.text_jobs import Echo, FailWithSurrogate

pytestmark = pytest.mark.acceptance

IMPORTS = {"JOBKIT_IMPORTS": "testapp.jobs,testapp.text_jobs"}


def ended(settings) -> set[str]:
    return {key for key, phase, _, _ in ledger(settings) if phase == "end"}


def the_worker_runs_the_next_job(settings, wait_until, key: str) -> None:
    Record(key).run_in_worker()
    wait_until(lambda: key in ended(settings), message=f"the job {key} to run")


@register_job(name=f"tests.{secrets.token_urlsafe(3000)}")
class NamedAtLength(Job):
    """A job whose registered name, with any key, is too long for the concurrency-key index."""

    def run(self) -> None:
        pass


def test_a_concurrency_key_too_long_for_its_index_is_refused_at_enqueue(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, wait_until
):
    start_worker(env=IMPORTS)

    with pytest.raises(ParameterError, match=r"testapp.Record: concurrency_key is 1048576 bytes"):
        Record("keyed").run_in_worker(concurrency_key="k" * 2**20)
    with pytest.raises(ParameterError, match=r"concurrency_key is not valid Unicode text"):
        Record("keyed").run_in_worker(concurrency_key="caf\udce9")

    assert jobkit_runtime.store.stats().total.pending == 0
    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-the-key")


def test_values_the_database_refuses_are_a_data_error_naming_the_cause(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, wait_until
):
    start_worker(env=IMPORTS)

    with pytest.raises(StoreDataError, match=r"SQLSTATE 54000 ProgramLimitExceeded: index row"):
        NamedAtLength().run_in_worker(concurrency_key="k")

    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-the-name")


def test_a_read_only_database_is_a_store_error_naming_the_cause_not_unavailable(
    jobkit_runtime_factory, jobkit_settings, start_worker, ledger_ready, wait_until
):
    jobkit_runtime_factory()
    read_only = jobkit_runtime_factory(
        database_url=with_query(
            jobkit_settings.database_url, options="-c default_transaction_read_only=on"
        )
    )
    start_worker(env=IMPORTS)

    with pytest.raises(StoreError) as raised:
        read_only.enqueue(Record("read-only"))

    assert type(raised.value) is StoreError  # neither StoreUnavailable nor StoreDataError
    assert str(raised.value).startswith(
        "the database refused the statement: SQLSTATE 25006 ReadOnlySqlTransaction: cannot execute"
    )
    assert str(raised.value).endswith("in a read-only transaction")
    jobkit_runtime_factory()  # the test's own runtime again, writable
    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-read-only")


def test_parameters_postgresql_cannot_hold_are_refused_at_enqueue(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, wait_until
):
    start_worker(env=IMPORTS)

    with pytest.raises(ParameterError, match=r"Echo parameter 'text' contains text that is not"):
        Echo("/srv/caf\udce9.csv").run_in_worker()

    assert jobkit_runtime.store.stats().total.pending == 0
    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-the-parameter")


@pytest.mark.parametrize(
    "delay",
    [
        1e13,
        datetime.timedelta(days=40_000),
        datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
    ],
    ids=["1e13 s", "40000 days", "year 9999", "year 1"],
)
def test_delays_out_of_range_are_refused_at_enqueue(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, wait_until, delay
):
    start_worker(env=IMPORTS)

    with pytest.raises(ParameterError, match=r"testapp.Record: .*100 years"):
        Record("delayed").run_in_worker(delay=delay)

    assert jobkit_runtime.store.stats().total.pending == 0
    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-the-delay")


class FileNameHeader:
    """A plugin that passes a file name that is not UTF-8 along in each request's headers."""

    @hookimpl(wrapper=True)
    def jobkit_enqueue(self, jobs, requests, connection):
        for request in requests:
            request.headers["origin"] = "/srv/caf\udce9.py"
        return (yield)


def test_a_source_and_headers_that_are_not_utf8_are_stored_escaped(
    jobkit_runtime, jobkit_settings, register_plugin, start_worker, ledger_ready, wait_until
):
    register_plugin(FileNameHeader())
    start_worker(env=IMPORTS)

    request = jobkit_runtime.enqueue(Record("from-a-file"), source="/srv/caf\udce9.py:7")

    wait_until(lambda: jobkit_runtime.get_result(request.id), message="its result")
    result = jobkit_runtime.get_result(request.id)
    assert result.status is Status.SUCCESSFUL
    assert result.source == "/srv/caf\\udce9.py:7"
    assert result.headers == {"origin": "/srv/caf\\udce9.py"}
    assert "from-a-file" in ended(jobkit_settings)


def test_an_error_message_that_is_not_utf8_is_written_escaped(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, wait_until
):
    start_worker(env=IMPORTS)

    request = FailWithSurrogate().run_in_worker()

    wait_until(lambda: jobkit_runtime.get_result(request.id), message="its result")
    result = jobkit_runtime.get_result(request.id)
    assert result.status is Status.ERRORED
    assert "FileNotFoundError: no such file: /srv/caf\\udce9.csv" in result.error
    the_worker_runs_the_next_job(jobkit_settings, wait_until, "after-the-error")
