"""jobkit-redis-lock, tested as an outside author would: through jobkit.testing's fixtures, with
the plugin loaded from its entry point, against the Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from redis_jobs import Keyed, Plain, race

from jobkit import PluginError, enqueue_many
from jobkit.testing import settings_environ

REDIS_URL = "redis://127.0.0.1:6379/0"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"these tests need Redis on 127.0.0.1:6379 ({error})", pytrace=False)
    yield client
    for key in client.scan_iter("jobkit:enqueue-lock:*"):
        client.delete(key)


@pytest.fixture
def runtime(jobkit_runtime_factory, monkeypatch, redis_client):
    """A runtime whose plugins come from the installed entry points (this plugin among them)."""
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return jobkit_runtime_factory()


@pytest.fixture
def impatient_runtime(jobkit_runtime_factory, monkeypatch, redis_client):
    """As ``runtime``, but waiting only 0.5 s for a lock another producer holds."""
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("JOBKIT_REDIS_LOCK_BLOCKING_TIMEOUT", "0.5")
    return jobkit_runtime_factory()


def test_the_plugin_is_loaded_from_its_entry_point_with_its_settings(impatient_runtime):
    assert impatient_runtime.pm.has_plugin("redis_lock")
    section = impatient_runtime.settings.section("redis_lock")
    assert (section.url, section.blocking_timeout) == (REDIS_URL, 0.5)


def test_a_keyed_enqueue_waits_for_the_redis_lock(impatient_runtime, redis_client):
    runtime = impatient_runtime
    held = redis_client.lock("jobkit:enqueue-lock:redis_lock_tests.Keyed:k", timeout=30)
    assert held.acquire()
    with pytest.raises(PluginError, match=r"stayed locked by another producer for 0\.5 s"):
        Keyed("k").run_in_worker()
    assert runtime.store.stats().total.pending == 0

    held.release()
    assert Keyed("k").run_in_worker() is not None
    assert Keyed("k").run_in_worker() is None  # the key is taken now
    assert redis_client.keys("jobkit:enqueue-lock:*") == []  # released after each enqueue


def test_redis_down_is_a_clear_error_and_nothing_is_enqueued(jobkit_runtime_factory, monkeypatch):
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("JOBKIT_REDIS_LOCK_URL", "redis://:secret@127.0.0.1:1/0")
    runtime = jobkit_runtime_factory()

    with pytest.raises(PluginError) as raised:
        enqueue_many([Plain(), Keyed("k"), Plain()])

    message = str(raised.value)
    assert "jobkit-redis-lock could not reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "JOBKIT_REDIS_LOCK_URL" in message
    assert "secret" not in message
    assert runtime.store.stats().total.pending == 0  # not even the jobs without a key


def test_producers_racing_for_a_key_enqueue_exactly_one_job(runtime):
    rounds, interval = 200, 0.04
    start = time.time() + 2.0
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")},
        **settings_environ(runtime.settings),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "redis_jobs", str(start), str(rounds), str(interval)]
    processes = [subprocess.Popen(command, env=env) for _ in range(4)]
    failures: list[BaseException] = []

    def racer() -> None:
        try:
            race(start, rounds, interval)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=racer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [process.wait(timeout=60) for process in processes] == [0, 0, 0, 0]

    requests, _ = runtime.store.find_active(
        job_name="redis_lock_tests.Keyed", concurrency_key=None, connection=None
    )
    keys = [request.concurrency_key for request in requests]
    assert len(keys) == len(set(keys)) == rounds


def test_the_async_api_takes_the_same_redis_lock(impatient_runtime, redis_client):
    """jobkit-redis-lock has no async form: the async path holds its lock in a thread of its
    own (redis-py keeps a lock's token per thread), so sync and async producers share it."""

    async def enqueue(count: int):
        try:
            return await asyncio.gather(*(Keyed("k").arun_in_worker() for _ in range(count)))
        finally:
            await impatient_runtime.aclose()

    held = redis_client.lock("jobkit:enqueue-lock:redis_lock_tests.Keyed:k", timeout=30)
    assert held.acquire()
    with pytest.raises(PluginError, match=r"stayed locked by another producer for 0\.5 s"):
        asyncio.run(enqueue(1))
    held.release()

    stored = asyncio.run(enqueue(10))
    assert sum(request is not None for request in stored) == 1
    assert Keyed("k").run_in_worker() is None  # the sync path sees the key taken
    assert redis_client.keys("jobkit:enqueue-lock:*") == []  # released after each enqueue


def test_the_plugin_imports_redis_only_when_a_lock_is_first_taken(runtime):
    """Every process that loads jobkit's plugins loads this one, a worker's pool children among
    them; importing redis costs each about 0.2 s of CPU, so it waits for the first lock."""
    script = """
import sys
from redis_jobs import Keyed, Plain
Plain().run_in_worker()
print("redis" in sys.modules)
Keyed("lazy").run_in_worker()
print("redis" in sys.modules)
"""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")},
        **settings_environ(runtime.settings),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    ran = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["False", "True"]
