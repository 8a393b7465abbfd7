"""Concurrent producers and concurrency keys: threads and processes enqueue the same key at the
same moment, round after round. Under the enqueue lock exactly one job per round is enqueued;
without a lock, duplicates get through — which shows the test can fail."""

import subprocess
import sys
import threading
import time
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from testapp.jobs import ledger
from testapp.key_jobs import HOLD_KEY, HeldOneAtATime
from testapp.race import race

pytestmark = pytest.mark.acceptance

ROUNDS = 200
THREADS = 16
PROCESSES = 4
INTERVAL = 0.04


def run_race(runtime, subprocess_env, plugins: str = "") -> Counter:
    start = time.time() + 2.0  # time for the processes to start and connect
    env = dict(subprocess_env, JOBKIT_PLUGINS=plugins)
    command = [sys.executable, "-m", "testapp.race", str(start), str(ROUNDS), str(INTERVAL), "r"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    threads = [
        threading.Thread(target=race, args=(start, ROUNDS, INTERVAL, "r")) for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, out
    with runtime.store.transaction() as connection:
        rows = connection.execute(
            sql.SQL("SELECT concurrency_key, count(*) FROM {}.requests GROUP BY 1").format(
                sql.Identifier(runtime.settings.schema)
            )
        ).fetchall()
    return Counter(dict(rows))


def test_the_enqueue_lock_lets_exactly_one_job_per_key_through(jobkit_runtime, subprocess_env):
    per_key = run_race(jobkit_runtime, subprocess_env)
    assert len(per_key) == ROUNDS
    assert set(per_key.values()) == {1}


def test_without_a_lock_concurrent_producers_enqueue_duplicates(
    jobkit_runtime_factory, subprocess_env
):
    runtime = jobkit_runtime_factory(plugins=["testapp.key_jobs:null_lock"])
    per_key = run_race(runtime, subprocess_env, plugins="testapp.key_jobs:null_lock")
    assert len(per_key) == ROUNDS
    assert sum(per_key.values()) > ROUNDS, "no duplicates without a lock: the race never happened"


FAQ_ROUNDS = 300


def test_should_enqueue_counting_running_then_pending_jobs_admits_no_duplicate(
    jobkit_runtime, jobkit_settings, start_worker, ledger_ready, db, wait_until
):
    """The FAQ's order: ``get_processing_jobs()`` then ``get_requested_jobs()``, against a worker
    claiming the job meanwhile. Read by two statements, a claim that commits between them hides
    the job from both, and a second one is admitted; both getters must see one moment."""
    start_worker(env={"JOBKIT_IMPORTS": "testapp.jobs,testapp.key_jobs"})
    wait_until(lambda: db.count("workers") == 1, message="the worker's heartbeat row")
    admitted: Counter[str] = Counter()
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as holder:
        for number in range(FAQ_ROUNDS):
            key = f"faq-{number}"
            holder.execute(f"SELECT pg_advisory_lock(({HOLD_KEY}))", [key])
            admitted[key] += HeldOneAtATime(key).run_in_worker() is not None
            # Ask again and again while the worker claims and starts the first one.
            while not db.count("ledger", "key = %s AND phase = 'start'", [key]):
                admitted[key] += HeldOneAtATime(key).run_in_worker() is not None
            holder.execute(f"SELECT pg_advisory_unlock(({HOLD_KEY}))", [key])
    wait_until(
        lambda: db.count("ledger", "phase = 'end'") == sum(admitted.values()),
        message="every admitted job to end",
    )

    starts = Counter(key for key, phase, _, _ in ledger(jobkit_settings) if phase == "start")
    duplicated = {key: runs for key, runs in starts.items() if runs > 1}
    assert duplicated == {}, f"{len(duplicated)} of {FAQ_ROUNDS} keys ran twice at once"
    assert set(admitted.values()) == {1}
