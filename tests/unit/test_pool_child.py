"""A pool child's side: what it puts back after a job ran, and what its start-up imports."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator

import attrs
import pytest

from jobkit import Job, register_job
from jobkit.pool import _Interrupter
from jobkit.records import JobProcess, Status
from jobkit.runtime import Runtime
from jobkit.settings import Settings


@register_job(name="tests.unit.ReplacesTerm")
class ReplacesTerm(Job):
    """Sets a SIGTERM handler of its own, as a job's library might, and leaves it set."""

    def run(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@pytest.fixture
def sigterm_kept() -> Iterator[None]:
    """The test process's SIGTERM handler, as it was, afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_job_that_sets_its_own_sigterm_handler_gets_the_childs_put_back(sigterm_kept):
    """Else the next attempt of the child could not be ended at its timeout or a shutdown."""
    runtime = Runtime.from_settings(Settings(), load_entrypoints=False)
    request = runtime.build_request(ReplacesTerm())
    fields = {f.name: getattr(request, f.name) for f in attrs.fields(type(request))}
    del fields["delay"]
    process = JobProcess(
        **fields, worker_id=uuid.uuid4(), claimed_at=datetime.datetime.now(datetime.UTC)
    )
    interrupter = _Interrupter(types.SimpleNamespace(value=0))
    signal.signal(signal.SIGTERM, interrupter)

    outcome = interrupter.run(runtime, process)

    assert outcome.status is Status.SUCCESSFUL, outcome.error
    assert signal.getsignal(signal.SIGTERM) is interrupter


def test_the_built_in_plugins_import_neither_click_nor_psycopg():
    """Every pool child loads them before its first job: click's import alone costs it 12 ms,
    psycopg's more (a child that never enqueues never makes a store)."""
    code = (
        "import sys\n"
        "from jobkit.runtime import Runtime\n"
        "from jobkit.settings import Settings\n"
        "Runtime.from_settings(Settings(), load_entrypoints=False).import_jobs()\n"
        "print(sorted(m for m in ('click', 'psycopg') if m in sys.modules))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")}
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=False
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"
