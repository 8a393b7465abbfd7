"""What flow limits cost the claim: drain 10,000 no-op jobs with one ``jobkit worker`` (default
flags), by the database's clock as ``throughput.py`` measures it, for

  - ``before``: the code of another checkout (``--before-src``, e.g. main's ``src``), which has
    no flow limits;
  - ``no_limits``: this checkout, the ``limits`` setting empty (the claim statement is the one
    ``before`` runs);
  - ``limit_elsewhere``: a limit on a queue the worker does not claim from (still that
    statement);
  - ``limited``: a ``max_running`` limit on the drained queue itself, too high to hold anything
    back (the limited claim: advisory locks, the limit's count, a transaction of its own).

The variants alternate within each round, so a busy machine weighs on each alike; each figure
is the median of the rounds.

    python benchmarks/flow_limits.py --before-src ../main/src --runs 3 --record
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

VARIANTS: dict[str, list[dict[str, object]]] = {
    "before": [],
    "no_limits": [],
    "limit_elsewhere": [{"queue": "elsewhere", "max_running": 1}],
    "limited": [{"queue": "default", "max_running": 100_000}],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--before-src", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--runs", type=int, default=2, help="rounds (median reported)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    parser.add_argument("--drain-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain_once:
        drain_once(args.jobs)
        return

    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    sources: dict[str, str] = {}
    for round_number in range(1, args.runs + 1):
        for name, limits in VARIANTS.items():
            env = dict(os.environ, JOBKIT_LIMITS=json.dumps(limits))
            if name == "before":
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(args.before_src.resolve()), env.get("PYTHONPATH", "")]
                )
                env.pop("JOBKIT_LIMITS")
            answer = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--before-src",
                    str(args.before_src),
                    "--drain-once",
                    "--jobs",
                    str(args.jobs),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            measured = json.loads(answer.stdout.strip().splitlines()[-1])
            sources[name] = measured["jobkit"]
            rates[name].append(measured["per_s"])
            print(f"round {round_number} {name:16s} {measured['per_s']:8,.0f} jobs/s", flush=True)
    figures = {f"drain_{name}_per_s": statistics.median(values) for name, values in rates.items()}
    for name, value in figures.items():
        print(f"{name:30s} {value:8,.0f} jobs/s (median of {args.runs})")
    if args.record:
        sys.path.insert(0, str(HERE))
        from throughput import machine_baseline, record

        from jobkit.settings import load_settings

        url = load_settings().database_url
        assert url is not None
        figures["rounds"] = {name: [round(v, 1) for v in values] for name, values in rates.items()}
        figures["code"] = sources
        record(machine_baseline(url), figures, args, name="flow-limits")


def drain_once(jobs: int) -> None:
    """One drain with whichever jobkit this interpreter imports; prints one JSON line."""
    sys.path.insert(0, str(HERE))
    from throughput import SCHEMA, drain

    import jobkit
    from jobkit.runtime import Runtime, set_runtime
    from jobkit.settings import load_settings

    runtime = Runtime.from_settings(load_settings({"schema": SCHEMA}))
    runtime.store.migrate()
    set_runtime(runtime)
    rate = drain(runtime, jobs, [])
    runtime.close()
    print(json.dumps({"per_s": rate, "jobkit": str(Path(jobkit.__file__).parent)}))


if __name__ == "__main__":
    main()
