"""A plugin that makes the outcome of ``testapp.RefusedResult`` one the database refuses to store
(a deferral 10**13 seconds away, past PostgreSQL's timestamps), bypassing the checks jobkit makes
where delays are made: the worker's last line of defence is what is under test."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from jobkit import Outcome, Status, hookimpl


@hookimpl(wrapper=True)
def jobkit_run_job(job: Any, process: Any) -> Generator[None, Outcome, Outcome]:
    outcome = yield
    if process.job_name == "testapp.RefusedResult":
        return Outcome(status=Status.DEFERRED, rerun_in=1e13)
    return outcome
