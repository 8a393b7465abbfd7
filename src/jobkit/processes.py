"""What jobkit asks of the processes it starts: pool children, and the shell commands of
``cmd:`` schedule entries."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """On Linux, have the kernel send ``signum`` to this process when its parent dies, so a
    killed worker (or pool child) leaves nothing running that another worker will rescue and
    run again. Call it in the new process (a ``preexec_fn``, or first thing in a child)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
