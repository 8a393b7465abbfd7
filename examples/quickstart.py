"""jobkit in one run: enqueue a shop's jobs, run a worker until the queue is empty, print what
happened to each job.

    python examples/quickstart.py

With no database configured it uses the embedded PostgreSQL (``pip install 'jobkit[embedded]'``),
kept under ./.jobkit/ in the current directory. With ``JOBKIT_DATABASE_URL=postgresql://...`` it
uses that database, in the schema ``JOBKIT_SCHEMA`` (default ``jobkit``), and creates jobkit's
tables there with ``jobkit migrate`` first. It deletes nothing: run it as often as you like.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES))  # so that `import shop.jobs` works from any directory

from shop.jobs import RemindAbandonedCart, ResizeImage, SendWelcomeEmail, SyncInventory  # noqa: E402

import jobkit  # noqa: E402

REMINDER_DELAY = 2  # seconds


def jobkit_command(*args: str, imports: str | None = None) -> None:
    """Run ``jobkit ARGS`` in its own process, as you would in a terminal. A worker is told which
    module defines the jobs (the imports setting) and where to find it (PYTHONPATH)."""
    env = dict(os.environ)
    shown = ["jobkit", *args]
    if imports:
        env["JOBKIT_IMPORTS"] = imports
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
        shown = [f"PYTHONPATH={_relative(EXAMPLES)}", f"JOBKIT_IMPORTS={imports}", *shown]
    print(f"\n$ {' '.join(shown)}", flush=True)
    subprocess.run([sys.executable, "-m", "jobkit", *args], env=env, check=True)


def _hide_password(url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> int:
    url = os.environ.get("JOBKIT_DATABASE_URL")
    print(
        f"Database: {_hide_password(url)} (schema {os.environ.get('JOBKIT_SCHEMA', 'jobkit')})"
        if url
        else "Database: none configured, so jobkit starts an embedded PostgreSQL under ./.jobkit/"
    )

    # 1. Create jobkit's tables (safe to repeat; an embedded database is migrated automatically).
    jobkit_command("migrate")

    # 2. Enqueue. run_in_worker() stores a request and returns it; its id finds the result later.
    jobs = [
        SendWelcomeEmail("ada@example.com", "Ada"),
        SyncInventory(order_id=1001),
        RemindAbandonedCart("grace@example.com"),
        ResizeImage("products/teapot.jpg", width=400),
        ResizeImage("products/teacup.jpg"),
    ]
    requests = [
        jobs[0].run_in_worker(),  # queue "emails", from SendWelcomeEmail.default_queue()
        jobs[1].run_in_worker(retries=2),  # fails once, then succeeds on its first retry
        jobs[2].run_in_worker(delay=REMINDER_DELAY),  # may not start for 2 seconds
        *jobkit.enqueue_many(jobs[3:], priority=10),  # one round trip; run before priority 0
    ]
    enqueued_at = time.monotonic()
    assert all(requests), "a job was declined (run_in_worker() returns None then)"
    print(f"\nEnqueued {len(requests)} jobs:")
    for job, request in zip(jobs, requests, strict=True):
        print(f"  {job!r:46} queue={request.queue:7} priority={request.priority}")

    # 3. Run a worker. --burst makes it exit as soon as no job is ready, so first wait until
    #    the delayed reminder is due: then one worker run finds every job ready.
    wait = REMINDER_DELAY - (time.monotonic() - enqueued_at)
    if wait > 0:
        print(f"\nWaiting {wait:.1f} s until the delayed reminder is due...")
        time.sleep(wait)
    worker = ["worker", "--burst", "--queue=emails", "--queue=default", "--max-processes=2"]
    jobkit_command(*worker, imports="shop.jobs")

    # 4. Look up each job's result: the latest attempt's, following retries. None means the job
    #    is not finished: a job that became ready after the worker's last look (a retry, say)
    #    waits for the next worker, so run it once more.
    results = [jobkit.get_result(request.id) for request in requests]
    if None in results:
        print("\nSome jobs are not finished yet; running the worker once more.")
        jobkit_command(*worker, imports="shop.jobs")
        results = [jobkit.get_result(request.id) for request in requests]

    print("\nResults (jobkit.get_result(request.id)):")
    for job, result in zip(jobs, results, strict=True):
        print(f"  {job!r:46} {describe(result)}")
    print(
        "\nNext: read examples/shop/jobs.py and the tour in README.md; "
        "`.venv/bin/jobkit stats` counts the jobs by queue and status."
    )
    return 1 if None in results else 0


def describe(result: jobkit.JobResult | None) -> str:
    """One line about a job's latest result."""
    if result is None:
        return "not finished (still pending or running)"
    text = result.status.value
    if result.retry_attempt:
        text += f" on retry {result.retry_attempt} of {result.retries} (an earlier attempt failed)"
    if result.created_at and result.start_at and result.started_at:
        delay = (result.start_at - result.created_at).total_seconds()
        if delay > 0:
            waited = (result.started_at - result.created_at).total_seconds()
            text += f", started {waited:.1f} s after it was enqueued with delay={delay:g}"
    if result.error_type:
        text += f": {result.error_type}"
    return text


if __name__ == "__main__":
    sys.exit(main())
