"""Where a drained job's CPU goes: the worker's main process against its pool child, beside the
bare cost of isolating jobs in a child at all (batches of claimed jobs over a pipe, one outcome
message back per job, nothing else).

    python benchmarks/cpu_split.py                    # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/cpu_split.py --jobs 40000 --record
    PYTHONPATH=../other-checkout/src python benchmarks/cpu_split.py --record --label before

The drain is one ``jobkit worker --burst --max-processes 1 --log-level WARNING`` over ``--jobs``
pending no-op jobs; each process's CPU is read from /proc (Linux) just before the worker exits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BATCH = 100
TICKS = os.sysconf("SC_CLK_TCK")


def _bare_child(connection) -> None:
    while (batch := connection.recv()) is not None:
        for _, job in batch:
            began = time.time()
            connection.send((job[0], "SUCCESSFUL", "", "", None, False, None, began, time.time()))
    connection.send(os.times().user + os.times().system)


def bare_pipe(count: int) -> dict[str, float]:
    """ms of CPU a job on each side of a pipe that carries only the jobs and their outcomes."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_bare_child, args=(theirs,))
    child.start()
    parameters = '{"args": [1], "kwargs": {}}'
    jobs = [(uuid.uuid4(), "bench.Noop", parameters, "default") for _ in range(count)]
    before = os.times()
    for start in range(0, count, BATCH):
        batch = jobs[start : start + BATCH]
        ours.send([(0, job) for job in batch])
        for _ in batch:
            ours.recv()
    after = os.times()
    ours.send(None)
    child_cpu = ours.recv()
    child.join()
    main_cpu = (after.user + after.system) - (before.user + before.system)
    return {"bare_main_ms": main_cpu / count * 1000, "bare_child_ms": child_cpu / count * 1000}


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def drain(count: int) -> dict[str, float]:
    """ms of CPU a job of the worker's main process and of its pool child, over a burst drain."""
    from bench_jobs import pending_noops

    from jobkit.runtime import get_runtime

    pending_noops(get_runtime(), count)
    # PYTHONPATH may name another checkout's src/ to measure it: keep it, after the job module.
    path = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "JOBKIT_IMPORTS": "bench_jobs", "PYTHONPATH": os.pathsep.join(path)}
    command = [sys.executable, "-m", "jobkit", "worker", "--burst", "--max-processes", "1"]
    worker = subprocess.Popen([*command, "--log-level", "WARNING"], env=env)
    seen: dict[int, tuple[bool, float]] = {}
    started = time.perf_counter()
    while worker.poll() is None:
        try:
            for pid in [worker.pid, *children_of(worker.pid)]:
                seen[pid] = (pid == worker.pid, cpu_of(pid))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    main = sum(cpu for is_main, cpu in seen.values() if is_main)
    child = sum(cpu for is_main, cpu in seen.values() if not is_main)
    return {
        "drain_jobs_per_s": count / elapsed,
        "main_ms": main / count * 1000,
        "child_ms": child / count * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    parser.add_argument("--label", default="", help="a word for the recorded file's name")
    args = parser.parse_args()
    figures = {**bare_pipe(args.jobs), **drain(args.jobs)}
    for name, value in figures.items():
        print(f"{name:>18}  {value:,.4f}")
    if args.record:
        now = datetime.datetime.now(datetime.UTC)
        label = f"-{args.label}" if args.label else ""
        path = HERE / "results" / f"cpu-split-{now:%Y-%m-%dT%H%M}{label}.json"
        import jobkit

        payload = {
            "date": now.isoformat(timespec="seconds"),
            "jobs": args.jobs,
            "jobkit": str(Path(jobkit.__file__).parent),
            "figures": figures,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
