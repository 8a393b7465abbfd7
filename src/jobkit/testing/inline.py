"""Run queued jobs inline, in the calling process, through the same store calls and hooks a
worker uses (claim, ``jobkit_run_job``, finish): the fast way to test an app's jobs."""

from __future__ import annotations

import datetime
import os
import socket
import time
import uuid
from collections.abc import Sequence

from jobkit.plugins import notify
from jobkit.records import Completion, JobResult, WorkerInfo
from jobkit.runtime import Runtime, get_runtime

BATCH = 100


def run_jobs(
    runtime: Runtime | None = None,
    *,
    queues: Sequence[str] | None = None,
    max_jobs: int = 100_000,
) -> list[JobResult]:
    """Run every ready job of ``queues`` (default: every queue with ready jobs), including
    retries and deferrals that become ready at once, until none is left; return the results
    in the order they were written. Jobs scheduled for later are left alone.
    """
    runtime = runtime or get_runtime()
    store = runtime.store
    if queues is None:
        queues = sorted(name for name, counts in store.stats(include_results=False).queues.items())
    if not queues:
        return []
    worker = store.register_worker(
        WorkerInfo(
            id=uuid.uuid4(), hostname=socket.gethostname(), pid=os.getpid(), queues=list(queues)
        )
    )
    sent = time.time()
    offset = store.database_now().timestamp() - (sent + time.time()) / 2

    def database_time() -> datetime.datetime:
        return datetime.datetime.fromtimestamp(time.time() + offset, datetime.UTC)

    results: list[JobResult] = []
    try:
        while len(results) < max_jobs:
            claimed = store.claim(
                worker_id=worker.id, queues=queues, limit=min(BATCH, max_jobs - len(results))
            )
            if not claimed:
                break
            completions = []
            for process in claimed:
                started = database_time()
                outcome = runtime.run_attempt(process)
                completions.append(
                    Completion(
                        process=process,
                        outcome=outcome,
                        started_at=started,
                        ended_at=database_time(),
                    )
                )
            report, _ = runtime.finish_and_claim(worker_id=worker.id, completions=completions)
            for completion in completions:
                if completion.process.id in report.written:
                    result = JobResult.from_completion(
                        completion, retry_request_id=report.written[completion.process.id]
                    )
                    results.append(result)
                    notify(runtime.pm.hook.jobkit_job_finished, result=result)
    finally:
        store.unregister_worker(worker_id=worker.id)
    return results
