"""``jobkit workers --check``, the liveness probe, against real worker processes: it passes
while a worker of this host beats, and fails with a one-line reason when the worker is frozen
(its heartbeat goes stale), stopped, or was never started."""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest

pytestmark = pytest.mark.acceptance

OK = re.compile(r"^ok: worker (?P<id>[0-9a-f-]{36}) \(pid (?P<pid>\d+), host (?P<host>.+)\) beat ")


def check(run_cli, *args):
    done = run_cli("workers", "--check", *args)
    return done.returncode, done.stdout + done.stderr


def test_the_check_follows_a_real_worker_through_its_life(
    jobkit_runtime, start_worker, run_cli, wait_until
):
    code, output = check(run_cli)
    assert code == 1
    assert output == (
        f"unhealthy: no worker of host {socket.gethostname()} is registered "
        f"(not started yet, or stopped)\n"
    )

    worker = start_worker("--max-processes", "1")
    wait_until(lambda: check(run_cli)[0] == 0, 60, message="the check passes once the worker runs")
    code, output = check(run_cli)
    found = OK.match(output)
    assert found and output.count("\n") == 1, output
    assert (int(found["pid"]), found["host"]) == (worker.pid, socket.gethostname())

    assert check(run_cli, "--worker-id", found["id"])[0] == 0
    code, output = check(run_cli, "--host", "elsewhere.example")
    assert (code, output) == (
        1,
        "unhealthy: no worker of host elsewhere.example is registered (not started yet, or "
        "stopped)\n",
    )

    os.kill(worker.pid, signal.SIGSTOP)  # a worker that no longer beats
    try:
        wait_until(
            lambda: check(run_cli, "--max-age", "2")[0] == 1,
            15,
            message="the check fails once the heartbeat is older than --max-age",
        )
        code, output = check(run_cli, "--max-age", "2")
        assert re.fullmatch(
            rf"unhealthy: no fresh heartbeat from host {re.escape(socket.gethostname())}: worker "
            rf"{found['id']} \(pid {worker.pid}\) beat \d+\.\d s ago, more than --max-age 2 s\n",
            output,
        ), output
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: check(run_cli, "--max-age", "2")[0] == 0, message="beating again")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()
    code, output = check(run_cli, "--worker-id", found["id"])
    assert code == 1
    assert output.startswith(f"unhealthy: no worker of worker {found['id']} is registered")


def test_the_check_fails_in_one_line_when_the_database_is_out_of_reach(run_cli):
    done = run_cli(
        "workers", "--check", env={"JOBKIT_DATABASE_URL": "postgresql://jobkit@127.0.0.1:1/jobkit"}
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot connect to PostgreSQL at 127.0.0.1:1")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "--json"], "--check prints one line; leave out --json"),
        (["--host", "h"], "--host goes with --check"),
        (["--check", "--max-age", "0"], "0.0 is not in the range x>0"),
        (["--check", "--worker-id", "w1"], "'w1' is not a worker id (a UUID)"),
        (
            ["--check", "--host", "h", "--worker-id", "7a8f6bde-6d2c-4c36-9a52-1f0c4a0e5c11"],
            "--host and --worker-id choose workers two ways; give one",
        ),
    ],
)
def test_bad_check_options_are_usage_errors(run_cli, args, message):
    done = run_cli("workers", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
