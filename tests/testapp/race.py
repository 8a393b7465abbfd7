"""One participant of the enqueue race: at each round's start time, enqueue the round's keyed job.

Run as ``python -m testapp.race START ROUNDS INTERVAL PREFIX`` (settings from JOBKIT_*), or call
``race()`` from threads. Rounds start on the wall clock, so threads and processes collide.
"""

from __future__ import annotations

import sys
import time

from testapp.key_jobs import Keyed


def race(start: float, rounds: int, interval: float, prefix: str) -> int:
    """Attempt every round; return how many of this participant's enqueues were accepted."""
    accepted = 0
    for number in range(rounds):
        delay = start + number * interval - time.time()
        if delay > 0:
            time.sleep(delay)
        accepted += Keyed(f"{prefix}-{number}").run_in_worker() is not None
    return accepted


if __name__ == "__main__":
    start, rounds, interval, prefix = sys.argv[1:5]
    print(race(float(start), int(rounds), float(interval), prefix))
