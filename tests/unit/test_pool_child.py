"""A pool child's side of an attempt, in this process: what it puts back after the job ran."""

from __future__ import annotations

import datetime
import signal
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
