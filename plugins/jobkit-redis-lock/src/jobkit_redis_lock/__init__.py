"""jobkit-redis-lock: the enqueue lock for concurrency keys, held in Redis instead of a
PostgreSQL advisory lock. jobkit loads it through the ``jobkit`` entry-point group.

The lock is taken before ``should_enqueue()`` and released after the enqueue's transaction
commits, with a timeout so a producer that dies holding it cannot block the key for long.

``redis`` is imported when a lock is first taken, not with the plugin: every process that loads
jobkit's plugins (each worker's pool children among them) would otherwise spend about 0.2 s of CPU
importing it, most of them never enqueueing with a concurrency key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from jobkit import PluginError, Settings, hookimpl, redact_credentials

if TYPE_CHECKING:
    import redis

__all__ = ["RedisLockSettings", "jobkit_enqueue_lock", "jobkit_settings_defaults"]

logger = logging.getLogger("jobkit_redis_lock")
SECTION = "redis_lock"


@attrs.frozen
class RedisLockSettings:
    """The ``redis_lock`` settings section: ``[tool.jobkit.redis_lock]`` in pyproject.toml,
    ``[redis_lock]`` in jobkit.toml, or ``JOBKIT_REDIS_LOCK_<FIELD>`` variables."""

    url: str = "redis://127.0.0.1:6379/0"
    """The Redis server, as a redis:// or rediss:// URL."""
    timeout: float = 10.0
    """Seconds a lock lives if its holder dies before releasing it."""
    blocking_timeout: float = 5.0
    """Seconds to wait for a lock another producer holds before giving up with an error."""
    prefix: str = "jobkit:enqueue-lock:"
    """Prefix of the lock's Redis key, which ends with the job name and concurrency key."""


@hookimpl
def jobkit_settings_defaults() -> dict[str, type]:
    return {SECTION: RedisLockSettings}


@hookimpl
def jobkit_enqueue_lock(
    job_name: str, concurrency_key: str, settings: Settings
) -> contextlib.AbstractContextManager[None]:
    config: RedisLockSettings = settings.section(SECTION)
    return _held(_client(config.url), f"{config.prefix}{job_name}:{concurrency_key}", config)


_clients: dict[str, redis.Redis] = {}


def _client(url: str) -> redis.Redis:
    """One client (and its connection pool) per URL, for the life of the process."""
    import redis

    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


@contextlib.contextmanager
def _held(client: redis.Redis, name: str, config: RedisLockSettings) -> Iterator[None]:
    import redis

    lock = client.lock(name, timeout=config.timeout, blocking_timeout=config.blocking_timeout)
    where = redact_credentials(config.url)
    try:
        acquired = lock.acquire()
    except redis.RedisError as error:
        raise PluginError(
            f"jobkit-redis-lock could not reach Redis at {where} to lock {name!r}: {error}; "
            f"check the redis_lock.url setting (JOBKIT_REDIS_LOCK_URL)"
        ) from error
    if not acquired:
        raise PluginError(
            f"jobkit-redis-lock: {name!r} at {where} stayed locked by another producer for "
            f"{config.blocking_timeout:g} s (redis_lock.blocking_timeout); nothing was enqueued"
        )
    try:
        yield
    finally:
        _release(lock, name, config)


def _release(lock: Any, name: str, config: RedisLockSettings) -> None:
    import redis

    try:
        lock.release()
    except redis.exceptions.LockNotOwnedError:
        logger.warning(
            "the Redis lock %r expired before the enqueue finished (after %g s, the "
            "redis_lock.timeout setting); another producer may have checked the key meanwhile",
            name,
            config.timeout,
        )
    except redis.RedisError as error:
        logger.warning(
            "could not release the Redis lock %r (%s); it expires by itself", name, error
        )
