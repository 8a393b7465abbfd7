"""Worker services: background work a plugin runs inside each worker's main process, beside
the job loop. The built-in cron scheduler is one; a plugin offers its own through the
``jobkit_add_worker_services`` hook."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class WorkerService(Protocol):
    """Started once the worker is registered and its pool runs; stopped while it shuts down,
    before its heartbeat row goes. A service checks its configuration when it is made (in the
    hook), so a bad one stops the worker before it claims anything."""

    name: str
    """Names the service in the worker's log."""

    def start(self) -> None:
        """Start working, on a thread of the service's own; return at once."""

    def stop(self) -> None:
        """Stop and wait for the service's thread (briefly: the worker is shutting down)."""
