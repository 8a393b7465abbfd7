"""What the OpenTelemetry plugin costs: the enqueue rate (one job per transaction) and the drain
rate of ``throughput.py``, with the plugin blocked, with it on but no SDK configured (the API's
no-op providers), and with the SDK on in every process (spans and metrics recorded, exported
nowhere, so the figure is jobkit's instrumentation and not an exporter's network).

    python benchmarks/otel_overhead.py                    # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/otel_overhead.py --runs 3 --record  # also write benchmarks/results/*.json

Each configuration runs in a fresh interpreter, producer and worker alike, so no provider set
by one leaks into the next.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFIGURATIONS = {
    "plugin blocked": {"JOBKIT_DISABLE_PLUGINS": "jobkit.builtin.otel"},
    "plugin on, no SDK": {},
    "plugin on, SDK on": {
        "JOBKIT_OTEL_SDK": "environment",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per drain")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.runs, args.jobs)
        return

    figures = {}
    for label, changes in CONFIGURATIONS.items():
        env = {k: v for k, v in os.environ.items() if k not in ("JOBKIT_DISABLE_PLUGINS",)}
        env.update(changes)
        output = subprocess.run(
            [sys.executable, __file__, "--measure", "--runs", str(args.runs), "--jobs",
             str(args.jobs)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        figures[label] = json.loads(output.strip().splitlines()[-1])
        print(
            f"{label:22s} enqueue {figures[label]['enqueue_per_s']:8,.0f} jobs/s   "
            f"drain {figures[label]['drain_per_s']:8,.0f} jobs/s",
            flush=True,
        )
    if args.record:
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        path = results / f"otel-overhead-{now:%Y-%m-%dT%H%M}.json"
        payload = {
            "date": now.isoformat(timespec="seconds"),
            "runs": args.runs,
            "jobs": args.jobs,
            "figures": figures,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")


def measure(runs: int, jobs: int) -> None:
    sys.path.insert(0, str(HERE))
    from throughput import SCHEMA, drain, enqueue_single, median

    from jobkit.runtime import Runtime, set_runtime
    from jobkit.settings import load_settings

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    runtime.store.migrate()
    set_runtime(runtime)
    figures = {
        "enqueue_per_s": round(median(runs, lambda: enqueue_single(runtime, 2_000)), 1),
        "drain_per_s": round(median(runs, lambda: drain(runtime, jobs, [])), 1),
    }
    runtime.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
