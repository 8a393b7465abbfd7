"""jobkit-dashboard: a web dashboard for jobkit, on the operations API (``jobkit.operations``).

jobkit loads this module through the ``jobkit`` entry-point group in every process, workers and
pool children included, so it imports nothing heavy: the web stack (Starlette, Jinja2, uvicorn)
is imported only when the dashboard is served or ``create_app`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import click

from jobkit import hookimpl

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from jobkit.runtime import Runtime

__all__ = ["DashboardSettings", "create_app", "jobkit_add_commands", "jobkit_settings_defaults"]

SECTION = "dashboard"


@attrs.frozen
class DashboardSettings:
    """The ``dashboard`` settings section: ``[tool.jobkit.dashboard]`` in pyproject.toml,
    ``[dashboard]`` in jobkit.toml, or ``JOBKIT_DASHBOARD_<FIELD>`` variables."""

    host: str = "127.0.0.1"
    """The address ``jobkit dashboard`` binds; any but a loopback one needs ``token``."""
    port: int = 8480
    """The port ``jobkit dashboard`` listens on."""
    read_only: bool = False
    """Show everything, change nothing: no action buttons, and every POST is refused (403)."""
    token: str = ""
    """When set, every request must carry it: as the password of HTTP basic auth (any user
    name) or as ``Authorization: Bearer <token>``."""
    refresh: float = 5.0
    """Seconds between the live pages' refreshes (overview, queues, workers, a job); 0: off."""
    secret: str = ""
    """The key that signs CSRF tokens; empty: a random one per process (forms from before a
    restart are then refused, and must be loaded again)."""


@hookimpl
def jobkit_settings_defaults() -> dict[str, type]:
    return {SECTION: DashboardSettings}


@hookimpl
def jobkit_add_commands(cli: click.Group) -> None:
    from jobkit_dashboard.command import dashboard

    cli.add_command(dashboard)


def create_app(
    runtime: Runtime | None = None,
    *,
    read_only: bool | None = None,
    token: str | None = None,
    **options: Any,
) -> Starlette:
    """The dashboard as an ASGI application, to serve or to mount in one's own Starlette or
    FastAPI app (``Mount("/jobs", app=create_app())``) behind one's own authentication.

    ``runtime``: the jobkit runtime whose store it shows (default: the process's,
    ``jobkit.runtime.get_runtime()``). ``read_only`` and ``token`` override the settings section
    (as do ``refresh`` and ``secret`` given as keywords)."""
    from jobkit_dashboard.app import create_app as create

    return create(runtime, read_only=read_only, token=token, **options)
