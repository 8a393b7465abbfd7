"""Memory soak: one ``jobkit worker`` drains many no-op jobs while the resident memory (RSS) of
its main process is sampled; a worker that keeps something per job forever shows it as a climb.

    python benchmarks/soak.py                      # 500,000 jobs, JOBKIT_DATABASE_URL or embedded
    python benchmarks/soak.py --jobs 100000 --record

Jobs are enqueued in batches as the worker drains them, so the backlog stays under ``BACKLOG``.
It prints the RSS every ``--every`` seconds with the jobs done by then, and the spread of the
samples taken after the first 10 % of jobs (the warm-up: imports, pools, caches filling).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import Noop  # noqa: E402

from jobkit import enqueue_many  # noqa: E402
from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

SCHEMA = "jobkit_soak"
BATCH = 10_000
BACKLOG = 50_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=500_000)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    set_runtime(runtime)
    store = runtime.store
    store.migrate()
    store.purge()
    env = dict(
        os.environ,
        JOBKIT_DATABASE_URL=runtime.settings.database_url or "",
        JOBKIT_SCHEMA=SCHEMA,
        JOBKIT_IMPORTS="bench_jobs",
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "worker", "--stats-every", "0", "--log-level", "WARNING"],
        env=env,
    )
    enqueued = done = 0
    samples: list[tuple[int, float, float]] = []  # (jobs done, seconds, RSS MB)
    started = time.monotonic()
    next_sample = started
    try:
        while done < args.jobs:
            counts = store.stats(include_results=False).total
            backlog = counts.pending + counts.running
            done = enqueued - backlog
            if enqueued < args.jobs and backlog < BACKLOG:
                size = min(BATCH, args.jobs - enqueued)
                enqueue_many([Noop(n) for n in range(enqueued, enqueued + size)])
                enqueued += size
            now = time.monotonic()
            if now >= next_sample:
                samples.append((done, round(now - started, 1), round(rss_mb(worker.pid), 1)))
                print(f"{done:>9,} jobs done  {now - started:7.1f} s  RSS {samples[-1][2]:7.1f} MB")
                next_sample = now + args.every
            time.sleep(0.2)
        samples.append((done, round(time.monotonic() - started, 1), round(rss_mb(worker.pid), 1)))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    warm = [rss for jobs, _, rss in samples if jobs >= args.jobs // 10]
    report = {
        "jobs": args.jobs,
        "seconds": samples[-1][1],
        "rss_mb_after_warm_up_min": min(warm),
        "rss_mb_after_warm_up_max": max(warm),
        "rss_mb_growth_after_warm_up": round(max(warm) - min(warm), 1),
        "samples": samples,
    }
    for key, value in report.items():
        if key != "samples":
            print(f"{key:35s} {value}")
    if args.record:
        moment = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H%M}"
        path = HERE / "results" / f"soak-{moment}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")
    runtime.close()


if __name__ == "__main__":
    main()
