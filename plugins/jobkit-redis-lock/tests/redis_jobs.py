"""Jobs for the plugin's tests, and one racer that enqueues at scheduled times
(``python -m redis_jobs START ROUNDS INTERVAL``)."""

from __future__ import annotations

import sys
import time

from jobkit import Job, register_job


@register_job(name="redis_lock_tests.Keyed")
class Keyed(Job):
    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def run(self) -> None:
        pass


@register_job(name="redis_lock_tests.Plain")
class Plain(Job):
    def run(self) -> None:
        pass


def race(start: float, rounds: int, interval: float) -> None:
    for number in range(rounds):
        delay = start + number * interval - time.time()
        if delay > 0:
            time.sleep(delay)
        Keyed(f"round-{number}").run_in_worker()


if __name__ == "__main__":
    race(float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
