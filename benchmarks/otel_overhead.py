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
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import (  # noqa: E402
    SCHEMA,
    drain,
    enqueue_single,
    machine_baseline,
    median,
    record,
)

from jobkit.runtime import Runtime, set_runtime  # noqa: E402
from jobkit.settings import load_settings  # noqa: E402

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

    machine: dict[str, object] = {}
    figures: dict[str, object] = {}
    for label, changes in CONFIGURATIONS.items():
        env = {k: v for k, v in os.environ.items() if k != "JOBKIT_DISABLE_PLUGINS"} | changes
        output = subprocess.run(
            [sys.executable, __file__, "--measure", "--runs", str(args.runs), "--jobs",
             str(args.jobs)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        measured = json.loads(output.strip().splitlines()[-1])
        machine = measured.pop("machine")  # each run measures it; the last one is kept
        figures[label] = measured
        print(
            f"{label:22s} enqueue {measured['enqueue_per_s']:8,.0f} jobs/s   "
            f"drain {measured['drain_per_s']:8,.0f} jobs/s",
            flush=True,
        )
    if args.record:
        record(machine, figures, args, name="otel-overhead")


def measure(runs: int, jobs: int) -> None:
    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    runtime.store.migrate()
    set_runtime(runtime)
    assert runtime.settings.database_url is not None
    figures = {
        "machine": machine_baseline(runtime.settings.database_url),
        "enqueue_per_s": round(median(runs, lambda: enqueue_single(runtime, 2_000)), 1),
        "drain_per_s": round(median(runs, lambda: drain(runtime, jobs, [])), 1),
    }
    runtime.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
