"""The supervisor of ``jobkit worker --reload`` (development): it runs the worker as a child
process and restarts it when a Python file, or a ``.env*`` file an app may load at start-up,
changes under the current directory.

The worker runs in a session of its own, so a terminal's Ctrl-C reaches the supervisor alone,
which passes each SIGINT or SIGTERM (and a SIGHUP, as SIGTERM) on to the worker once: the first
is the worker's graceful stop (running jobs get ``shutdown_timeout``), a second ends them at
once, as for a worker run on its own. A restart is a graceful stop too. A worker still running
``KILL_AFTER_GRACE`` seconds after its grace period is killed; the supervisor waits for its worker
before it exits (unless it is killed itself with SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import watchfiles

logger = logging.getLogger("jobkit.reload")

KILL_AFTER_GRACE = 5.0
"""Seconds a stopping worker gets after its shutdown grace period (to write its last results and
remove its heartbeat row) before the supervisor kills it."""
LOOK_EVERY = 1.0
"""Seconds between the supervisor's looks at its worker while no file changes (to say when it
exited by itself)."""
FORWARDED = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}
"""The signals that stop the supervisor, and the one each passes on to the worker (which stops on
SIGINT and SIGTERM): a SIGHUP, from a terminal that closed, stops it as SIGTERM does."""


def restarts_worker(path: str) -> bool:
    """Whether a change to ``path`` restarts the worker: Python files, and ``.env`` files
    (``.env``, ``.env.local``, ...), as plain.jobs watches."""
    name = os.path.basename(path)
    return name.endswith((".py", ".pyx", ".pyd")) or name.startswith(".env")


class Supervisor:
    """Runs ``command`` (a ``jobkit worker``), restarting it on changes under ``root``, until a
    SIGINT or SIGTERM stops both."""

    def __init__(self, command: Sequence[str], *, shutdown_timeout: float, root: Path):
        self.command = list(command)
        self.stop_after = shutdown_timeout + KILL_AFTER_GRACE
        self.root = root
        self.stopping = threading.Event()
        self.worker: subprocess.Popen[bytes] | None = None
        self._kill_at = float("inf")
        self._exit_reported = False

    def run(self) -> int:
        """Supervise until stopped; return the exit code, 0."""
        ignored = watchfiles.DefaultFilter()
        # Its "1 change detected" says less than the supervisor's own line, which names them.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        handlers = {signum: signal.signal(signum, self._on_signal) for signum in FORWARDED}
        try:
            self._start()
            for changes in watchfiles.watch(
                self.root,
                watch_filter=lambda change, path: restarts_worker(path) and ignored(change, path),
                stop_event=self.stopping,
                rust_timeout=int(LOOK_EVERY * 1000),
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if not changes:
                    self._report_exit()
                    continue
                changed = sorted({os.path.relpath(path, self.root) for _, path in changes})
                logger.info("%s changed: restarting the worker", ", ".join(changed))
                self._stop_worker()
                if self.stopping.is_set():
                    break
                self._start()
            if self._kill_at == float("inf"):  # the signal came while the worker was starting
                self._signal_worker(signal.SIGINT)
            self._wait_for_worker()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            self._kill_worker()
        return 0

    def _start(self) -> None:
        self._kill_at = float("inf")  # reset first: a signal may come as soon as it starts
        self._exit_reported = False
        # In a session of its own: the terminal's signals reach the supervisor alone.
        self.worker = subprocess.Popen(self.command, start_new_session=True)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping.is_set():
            logger.info(
                "%s received: stopping the worker, then the supervisor",
                signal.Signals(signum).name,
            )
        self.stopping.set()
        self._signal_worker(FORWARDED[signal.Signals(signum)])

    def _signal_worker(self, signum: int) -> None:
        """Pass ``signum`` to the worker if it runs; the first one starts its kill deadline."""
        if self.worker is None or self.worker.poll() is not None:
            return
        self._kill_at = min(self._kill_at, time.monotonic() + self.stop_after)
        self.worker.send_signal(signum)

    def _stop_worker(self) -> None:
        """Stop the worker as a SIGINT does, and wait for it."""
        self._signal_worker(signal.SIGINT)
        self._wait_for_worker()

    def _wait_for_worker(self) -> None:
        """Wait for the worker to exit, killing it when its deadline passes."""
        if self.worker is None:
            return
        timeout = None if self._kill_at == float("inf") else self._kill_at - time.monotonic()
        try:
            self.worker.wait(None if timeout is None else max(0.0, timeout))
        except subprocess.TimeoutExpired:
            logger.warning(
                "the worker did not exit within %g s of being stopped: killing it",
                self.stop_after,
            )
            self._kill_worker()

    def _kill_worker(self) -> None:
        """Kill the worker's process group (its pool children with it) if the worker runs, and
        wait for it, so none outlives the supervisor."""
        if self.worker is None or self.worker.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def _report_exit(self) -> None:
        if self.worker is None or self._exit_reported:
            return
        code = self.worker.poll()
        if code is not None:
            self._exit_reported = True
            logger.warning(
                "the worker exited with status %d; it restarts when a file changes", code
            )
