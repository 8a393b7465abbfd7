"""jobkit's adapter for the shared peers harness (``../shared/bench/bench.py``), which runs
procrastinate, pgqueuer and a raw SQL floor through the same cases, so jobkit is measured beside
them in the same rounds.

It uses jobkit as a user would: ``run_in_worker()`` for the one-per-transaction enqueue,
``enqueue_many()`` for the bulk one, and the ``jobkit worker`` command (its click command, run in
the harness's worker process, which has imported jobkit before the clock starts, as the harness
does for every system) with its default flags, or with the flags a config names. The clock starts
when the harness says GO, before the worker connects; its pool children start then too, so their
interpreter start counts against jobkit (the peers run their jobs in the worker's own process).

    BENCH=../shared/bench/bench.py
    python $BENCH --plugin benchmarks/peers_adapter.py setup --systems jobkit --no-pgbench
    python $BENCH --plugin benchmarks/peers_adapter.py suite \\
        --systems jobkit,jobkit_tuned,pgqueuer,rawsql --reps 1 --use-sweep-best \\
        --out benchmarks/results/peers-$(date +%F).json

``jobkit_tuned`` is the same worker with the flags of a config (``max_pending_per_process``,
``max_processes``); ``jobkit`` passes none. The harness's ``worker_cpu_s`` is the worker's main
process only: the pool children's CPU shows in ``foreign_cpu_s``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import bench
import psycopg

HERE = Path(__file__).resolve().parent
JOBS_MODULE = "peers_jobs"
"""benchmarks/peers_jobs.py: the job every case runs (it calls ``bench.record_job``)."""


def database_url(dsn: str) -> str:
    """jobkit's settings take a URL; the harness gives a conninfo string."""
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    user = parts.get("user", "postgres")
    return (
        f"postgresql://{user}@{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}"
        f"/{parts['dbname']}"
    )


@bench.register
class JobkitAdapter(bench.Adapter):
    name = "jobkit"
    description = (
        "jobkit: run_in_worker() / enqueue_many(); `jobkit worker` with its default flags "
        "(pool children run the jobs, results kept in jobkit.results)"
    )
    listen_notify = True
    worker_loop = "sync"
    default_config: dict[str, Any] = {}
    sweep_configs: list[dict[str, Any]] = [{}]
    packages = ("jobkit", "psycopg", "psycopg-binary")
    done_count_sql = "SELECT count(*) FROM jobkit.results WHERE status = 'SUCCESSFUL'"
    queued_count_sql = (
        "SELECT (SELECT count(*) FROM jobkit.requests) + (SELECT count(*) FROM jobkit.processes)"
    )
    done_stats_sql = (
        "SELECT count(*), count(DISTINCT parameters #>> '{kwargs,i}') FROM jobkit.results "
        "WHERE status = 'SUCCESSFUL'"
    )

    def __init__(self, dsn: str):
        super().__init__(dsn)
        # The job module, and the harness (``import bench``) for the pool children.
        for path in (str(HERE), str(Path(bench.__file__).resolve().parent)):
            if path not in sys.path:
                sys.path.insert(0, path)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), str(Path(bench.__file__).resolve().parent)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        for variable in [name for name in os.environ if name.startswith("JOBKIT_")]:
            del os.environ[variable]
        os.environ["JOBKIT_DATABASE_URL"] = database_url(dsn)
        os.environ["JOBKIT_IMPORTS"] = JOBS_MODULE

    def _jobkit(self, *args: str) -> None:
        from jobkit.cli import cli

        cli.main(args=list(args), prog_name="jobkit", standalone_mode=False)

    async def setup(self) -> None:
        self._jobkit("migrate")

    async def reset(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(
                "TRUNCATE jobkit.requests, jobkit.processes, jobkit.results, jobkit.workers, "
                "jobkit.result_counts, jobkit.result_count_changes"
            )

    async def open_client(self) -> None:
        import importlib

        from jobkit.runtime import get_runtime, set_runtime

        set_runtime(None)
        self.job = importlib.import_module(JOBS_MODULE).Record
        self.runtime = get_runtime()

    async def close_client(self) -> None:
        from jobkit.runtime import set_runtime

        set_runtime(None)
        self.runtime.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        self.job(**payload).run_in_worker()

    async def enqueue_bulk(self, payloads: list[dict[str, Any]]) -> None:
        import jobkit

        jobkit.enqueue_many([self.job(**payload) for payload in payloads])

    def prepare_worker(self, config: dict[str, Any]) -> None:
        import importlib

        # Imported before the clock starts, as the peers import theirs and psycopg: the command,
        # the built-in plugins the runtime loads, the store with psycopg, and the jobs.
        import jobkit.builtin.otel
        import jobkit.builtin.postgres.store
        import jobkit.cli  # noqa: F401

        importlib.import_module(JOBS_MODULE)

    def run_worker_sync(self, config: dict[str, Any], stop: threading.Event) -> None:
        flags = []
        for name, value in config.items():
            flags += [f"--{name.replace('_', '-')}", str(value)]

        def stop_when_told() -> None:
            stop.wait()
            os.kill(os.getpid(), signal.SIGTERM)  # as a supervisor stops it

        threading.Thread(target=stop_when_told, daemon=True).start()
        self._jobkit("worker", *flags)


@bench.register
class JobkitTunedAdapter(JobkitAdapter):
    name = "jobkit_tuned"
    description = "jobkit, `jobkit worker` with the flags of the config"
    default_config = {"max_pending_per_process": 1000}
    sweep_configs = [{"max_pending_per_process": 1000}]
