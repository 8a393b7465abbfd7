"""Where a worker's start goes: when each step of ``jobkit worker --burst`` over a backlog ends,
counted from the moment the command is run.

    python benchmarks/start_timeline.py                 # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/start_timeline.py --jobs 10000 --runs 3 --record

The worker runs in this process, after its imports, as the peers harness runs it (so the
interpreter's own start is not counted, and each pool child's is). The steps are read by wrapping
the worker's own methods: the pool's children started (``WorkerPool.spawn`` returned), the tables
checked, each child ready, the first batch given to a child, the first outcome read back, and the
worker's exit once the backlog is drained.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timeline(jobs: int) -> dict[str, float]:
    """Seconds from the command's run to the end of each step, for one start over ``jobs``."""
    from bench_jobs import pending_noops

    import jobkit.cli
    import jobkit.pool
    from jobkit.runtime import get_runtime, set_runtime

    runtime = get_runtime()
    pending_noops(runtime, jobs)
    store_class = type(runtime.store)
    runtime.close()
    set_runtime(None)

    marks: dict[str, float] = {}
    restore: list = []

    def mark_after(owner: type, method: str, step: str, done=lambda answer: True) -> None:
        """Note when ``owner.method`` first returns an answer that ``done`` accepts."""
        original = getattr(owner, method)

        def wrapped(*args, **kwargs):
            answer = original(*args, **kwargs)
            if step not in marks and done(answer):
                marks[step] = time.perf_counter()
            return answer

        setattr(owner, method, wrapped)
        restore.append((owner, method, original))

    pool = jobkit.pool.WorkerPool
    mark_after(pool, "spawn", "children started")
    mark_after(store_class, "check_schema", "tables checked")
    mark_after(pool, "wait_until_ready", "children ready")
    mark_after(pool, "feed", "first batch given")
    mark_after(pool, "collect", "first outcome read", done=lambda answer: bool(answer[0]))
    began = time.perf_counter()
    try:
        try:
            jobkit.cli.cli.main(
                args=["worker", "--burst", "--log-level", "WARNING"],
                prog_name="jobkit",
                standalone_mode=False,
            )
        except SystemExit as exit:  # the command exits with the worker's code
            if exit.code:
                raise
        marks["backlog drained, worker exited"] = time.perf_counter()
    finally:
        for owner, method, original in restore:
            setattr(owner, method, original)
        set_runtime(None)
    return {step: at - began for step, at in sorted(marks.items(), key=lambda item: item[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()
    os.environ["JOBKIT_IMPORTS"] = "bench_jobs"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    runs = [timeline(args.jobs) for _ in range(args.runs)]
    for step in runs[0]:
        print(f"{step:>32}  " + "  ".join(f"{run.get(step, float('nan')):6.3f} s" for run in runs))
    if args.record:
        now = datetime.datetime.now(datetime.UTC)
        path = HERE / "results" / f"start-timeline-{now:%Y-%m-%dT%H%M}.json"
        payload = {"date": now.isoformat(timespec="seconds"), "jobs": args.jobs, "runs": runs}
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
