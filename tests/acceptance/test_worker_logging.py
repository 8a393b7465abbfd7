"""What a user sees happen in the output of a real ``jobkit worker``: one line per attempt that
ended, with its timings; JSON lines for log shippers; where the jobs go; the lines of a time
limit; and the stats line after an outage."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import signal
import time
import urllib.parse

import psycopg
import pytest
from proxy import Proxy

from testapp.jobs import Fail, Record
from testapp.log_jobs import LogLine

pytestmark = pytest.mark.acceptance

LOG_JOBS = {"JOBKIT_IMPORTS": "testapp.log_jobs"}

ATTEMPT_END = re.compile(
    r"^\S+ \S+ (?P<level>[A-Z]+) jobkit\.worker: (?P<job>\S+) (?P<job_id>\S+) "
    r"\(attempt (?P<attempt>\d+) of (?P<attempts>\d+)\) (?P<status>[A-Z]+) "
    r"in (?P<duration>\d+\.\d{3}) s, waited (?P<wait>\d+\.\d{3}) s(?P<rest>.*)$",
    re.MULTILINE,
)
"""The worker's line for an attempt that ended, in the text format."""


def seconds(later: datetime.datetime | None, earlier: datetime.datetime | None) -> float:
    assert later is not None and earlier is not None
    return (later - earlier).total_seconds()


# One line per attempt ---------------------------------------------------------------------------


def test_each_attempt_that_ends_is_one_line_with_how_long_it_ran_and_waited(
    start_worker, jobkit_runtime, ledger_ready
):
    done = Record("quick", seconds=0.2).run_in_worker()
    failing = Fail("it broke").run_in_worker(retries=1)
    assert done is not None and failing is not None

    worker = start_worker("--burst", "--max-processes", "1")
    assert worker.wait_for_exit() == 0, worker.output()

    ends = [match.groupdict() for match in ATTEMPT_END.finditer(worker.output())]
    [success] = [end for end in ends if end["job_id"] == str(done.job_id)]
    assert (success["level"], success["job"], success["status"], success["rest"]) == (
        "INFO",
        "testapp.Record",
        "SUCCESSFUL",
        "",
    )
    assert (success["attempt"], success["attempts"]) == ("1", "1")
    # The figures are the result's: from its start to its end, and from the moment it was
    # ready (enqueued without a delay) to its start.
    result = jobkit_runtime.get_result(done.id)
    assert result is not None
    ran = seconds(result.ended_at, result.started_at)
    assert ran >= 0.2
    assert float(success["duration"]) == pytest.approx(ran, abs=0.001)
    assert float(success["wait"]) == pytest.approx(
        seconds(result.started_at, result.start_at), abs=0.001
    )

    # A failed attempt keeps its one WARNING line, with the same figures ahead of the error.
    failures = [end for end in ends if end["job_id"] == str(failing.job_id)]
    assert [(end["level"], end["status"], end["attempt"]) for end in failures] == [
        ("WARNING", "ERRORED", "1"),
        ("WARNING", "ERRORED", "2"),
    ]
    assert re.fullmatch(r": ValueError: it broke; retry \S+ enqueued", failures[0]["rest"])
    assert failures[1]["rest"] == ": ValueError: it broke; no retry"
    assert worker.output().count(str(failing.job_id)) == 2, worker.output()


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--log-format", "json"], {}), ([], {"JOBKIT_LOG_FORMAT": "json"})],
    ids=["flag", "setting"],
)
def test_json_lines_carry_the_job_and_the_attempts_figures_as_keys(
    start_worker, jobkit_runtime, args, env
):
    request = LogLine("shipped").run_in_worker()
    assert request is not None

    worker = start_worker("--burst", "--max-processes", "1", *args, env={**LOG_JOBS, **env})
    assert worker.wait_for_exit() == 0, worker.output()

    entries = [json.loads(line) for line in worker.output().splitlines()]  # all of them JSON
    job = {"job": "testapp.LogLine", "job_id": str(request.job_id), "attempt": 1}
    job["attempt_id"] = str(request.id)
    # A line the job logged, in its pool child, ...
    [said] = [entry for entry in entries if entry["message"] == "shipped says hello"]
    assert said.items() >= {"level": "INFO", "logger": "testapp.log_jobs", **job}.items()
    # ... and the worker's line for the attempt's end.
    [ended] = [entry for entry in entries if "status" in entry]
    assert ended.items() >= {"level": "INFO", "logger": "jobkit.worker", **job}.items()
    assert ended["status"] == "SUCCESSFUL"
    assert ended["duration"] >= 0 and ended["queue_wait"] >= 0
    assert all(datetime.datetime.fromisoformat(entry["time"]).tzinfo for entry in entries)


# Where jobs go ---------------------------------------------------------------------------------


def test_the_start_line_names_the_database_and_the_config_file_never_the_password(
    start_worker, jobkit_settings, tmp_path
):
    url = jobkit_settings.database_url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and "passfile=" not in parts.query:
        # A server that asks for no password (the test server trusts its clients) ignores it.
        user, _, host = parts.netloc.rpartition("@")
        url = parts._replace(netloc=f"{user}:s3cret-pw@{host}").geturl()
    (tmp_path / "jobkit.toml").write_text('timezone = "UTC"\n')

    worker = start_worker("--burst", cwd=tmp_path, env={"JOBKIT_DATABASE_URL": url})
    assert worker.wait_for_exit() == 0, worker.output()

    [line] = [line for line in worker.output().splitlines() if " started: queues " in line]
    info = psycopg.conninfo.conninfo_to_dict(url)
    host, port = info["host"], info.get("port", 5432)
    server = f"socket {host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
    assert line.endswith(
        f"; jobs in PostgreSQL database {info['dbname']!r} at {server}, schema "
        f"{jobkit_settings.schema}; settings from {tmp_path / 'jobkit.toml'}"
    ), line
    password = urllib.parse.urlsplit(url).password
    assert password is None or password not in worker.output()


def test_the_start_line_says_when_no_config_file_was_read(start_worker, tmp_path):
    worker = start_worker("--burst", cwd=tmp_path)
    assert worker.wait_for_exit() == 0, worker.output()

    [line] = [line for line in worker.output().splitlines() if " started: queues " in line]
    assert line.endswith("; no config file"), line


# The worker's other lines about jobs ------------------------------------------------------------


def test_the_time_limit_lines_name_the_job_by_its_id_on_every_attempt(
    start_worker, jobkit_runtime, ledger_ready
):
    request = Record("slow", seconds=60).run_in_worker(timeout=0.5, retries=1)
    assert request is not None

    worker = start_worker("--burst", "--max-processes", "1")
    assert worker.wait_for_exit() == 0, worker.output()

    for attempt in (1, 2):
        assert (
            f"testapp.Record {request.job_id} (attempt {attempt} of 2) ran longer than its "
            f"timeout of 0.5 s: ending it"
        ) in worker.output()


def test_after_an_outage_the_stats_lines_keep_their_pace(workers, jobkit_settings, wait_until):
    """No stats line is queued while the database does not answer: after it, the lines come
    one per period again, not a backlog at once."""
    every = 0.2

    def stats_times() -> list[datetime.datetime]:
        return [
            datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            for line in worker.output().splitlines()
            if " jobkit.worker: worker stats " in line
        ]

    with Proxy(jobkit_settings.database_url) as proxy:
        worker = workers.start(
            "--stats-every",
            str(every),
            env={"JOBKIT_DATABASE_URL": proxy.url(jobkit_settings.database_url)},
        )
        wait_until(lambda: len(stats_times()) >= 2, message="stats lines")
        proxy.freeze(lambda sent: True)  # every connection hangs, as with a frozen server
        outage_ends = time.monotonic() + 15 * every
        wait_until(lambda: time.monotonic() >= outage_ends, message="the outage's end")
        proxy.thaw()
        before = len(stats_times())
        wait_until(lambda: len(stats_times()) >= before + 3, message="stats lines after it")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_for_exit() == 0, worker.output()

    times = stats_times()
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= every / 2, (gaps, worker.output())
