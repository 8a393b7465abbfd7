"""What jobkit asks of the processes it starts: pool children, and the shell commands of
``cmd:`` schedule entries; and the log format of the worker and its pool children."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterator

from jobkit.redaction import redact_credentials

_PR_SET_PDEATHSIG = 1
SAFE_PATH = "PYTHONSAFEPATH"


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """On Linux, have the kernel send ``signum`` to this process when its parent dies, so a
    killed worker (or pool child) leaves nothing running that another worker will rescue and
    run again. Call it in the new process (a ``preexec_fn``, or first thing in a child)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


@contextlib.contextmanager
def safe_path_for_children() -> Iterator[None]:
    """Start Python children with ``PYTHONSAFEPATH=1``. ``spawn`` runs ``python -c``, which puts
    the current directory first on ``sys.path`` while the child boots, so a ``threading.py``
    lying in the directory the worker was started in would be imported in place of the
    standard library's. The child puts the worker's own value back with ``restore_safe_path``,
    so the processes its jobs start see the environment the worker had."""
    previous = os.environ.get(SAFE_PATH)
    os.environ[SAFE_PATH] = "1"
    try:
        yield
    finally:
        restore_safe_path(previous)


def restore_safe_path(value: str | None) -> None:
    """Set ``PYTHONSAFEPATH`` back to ``value``, as it was before ``safe_path_for_children``."""
    if value is None:
        os.environ.pop(SAFE_PATH, None)
    else:
        os.environ[SAFE_PATH] = value


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(jobkit_context)s: %(message)s"
"""The log format of ``jobkit worker`` and its pool children. ``jobkit_context`` is empty unless
a plugin sets it on the record: the built-in ``jobkit.builtin.logcontext`` sets it to
`` [job=<name> id=<job_id> attempt=<n>]`` while a job runs."""


class CredentialsMaskedFormatter(logging.Formatter):
    """Formats a record, traceback included, with any password in it masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(super().format(record))


def configure_logging(level: int | str) -> None:
    """``logging.basicConfig`` with ``LOG_FORMAT`` to stderr (nothing, like basicConfig, when
    the root logger already has handlers). Records without ``jobkit_context`` show it empty;
    passwords in URLs and conninfo strings show as ``***``."""
    handler = logging.StreamHandler()
    handler.setFormatter(CredentialsMaskedFormatter(LOG_FORMAT, defaults={"jobkit_context": ""}))
    logging.basicConfig(level=level, handlers=[handler])
