"""How long each dashboard page takes with a big history: fills a schema of its own
(``jobkit_dashboard_scale``) with ``--results`` results the way ``benchmarks/operations_scale.py``
does (mixed statuses, 20 queues, 50 job names, over the last week; kept for the next run while
its size is right), then times each page through the ASGI app in-process (Starlette's
TestClient: the page's queries and its rendering, no network), the median of ``--runs``.

    python plugins/jobkit-dashboard/benchmarks/page_times.py --results 1000000

Uses JOBKIT_DATABASE_URL (or the embedded server), like the kernel's benchmarks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

import operations_scale  # noqa: E402
from jobkit_dashboard import create_app  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from jobkit.operations import Operations, job_filter  # noqa: E402

SCHEMA = "jobkit_dashboard_scale"
BUDGET_MS = 150.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    operations_scale.SCHEMA = SCHEMA  # the fill writes to the schema its module names
    runtime = operations_scale.runtime_for(SCHEMA)
    url = runtime.settings.database_url
    assert url is not None
    operations_scale.fill(url, args.results)
    runtime.store.maintain()
    operations = Operations(runtime)
    errored = operations.jobs(job_filter(status="errored", queue="q3"), limit=50)
    some_job = errored.attempts[0].job_id
    pages = {
        "overview": "/",
        "jobs (newest, all)": "/jobs",
        "jobs failed": "/jobs?status=failed",
        "jobs errored in q3": "/jobs?status=errored&queue=q3",
        "jobs errored in q3, next page": (
            f"/jobs?status=errored&queue=q3&cursor={errored.next_cursor}"
        ),
        "jobs of one name, 2h": "/jobs?name=app.jobs.Job7&since=2h",
        "jobs whose error holds text": "/jobs?error=failed+12345",
        "jobs whose error holds common text": "/jobs?error=ValueError",
        "job": f"/jobs/{some_job}",
        "queues": "/queues",
        "workers": "/workers",
        "schedules": "/schedules",
    }
    worst = 0.0
    app = create_app(runtime, refresh=0)
    with TestClient(app) as client:
        # The app starts counting each queue's failed jobs and making the day's chart when it
        # starts (its lifespan); a first overview right after waits for neither.
        started = time.perf_counter()
        client.get("/")
        first = (time.perf_counter() - started) * 1000
        print(f"{'overview, first load of a process':34} {first:8.1f} ms (once)", flush=True)
        for label, path in pages.items():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            timings = []
            for _ in range(args.runs):
                started = time.perf_counter()
                client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
            median = statistics.median(timings)
            worst = max(worst, median)
            flag = "" if median <= BUDGET_MS else f"  over {BUDGET_MS:.0f} ms"
            print(f"{label:34} {median:8.1f} ms{flag}", flush=True)
        # The day's chart is made again once a minute, in the background (DayChart): how long
        # that takes, though no page waits for it.
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            app.state.dashboard.day_chart.make()
            timings.append((time.perf_counter() - started) * 1000)
        print(f"{'the day chart (background)':34} {statistics.median(timings):8.1f} ms", flush=True)
    print(
        f"{'slowest page':34} {worst:8.1f} ms (budget {BUDGET_MS:.0f} ms, {args.results:,} results)"
    )
    runtime.close()


if __name__ == "__main__":
    main()
