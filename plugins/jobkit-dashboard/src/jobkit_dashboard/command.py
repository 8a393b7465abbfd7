"""``jobkit dashboard``: serve the dashboard with uvicorn (added by ``jobkit_add_commands``)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import click

from jobkit import JobkitError, redact_credentials

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]", "::1"]
"""The Host names a dashboard without a token answers to."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", help="Address to bind (default: the dashboard.host setting, 127.0.0.1).")
@click.option("--port", type=int, help="The port (default: the dashboard.port setting, 8480).")
@click.option(
    "--read-only",
    is_flag=True,
    default=None,
    help="Show everything, change nothing: no action buttons, and POSTs are refused.",
)
def dashboard(host: str | None, port: int | None, read_only: bool | None) -> None:
    """Serve the web dashboard: queues, jobs and their attempts, workers; retry, cancel, pause.

    It binds 127.0.0.1 unless told otherwise; on any other address it refuses to start without
    a token (the dashboard.token setting, JOBKIT_DASHBOARD_TOKEN), which every request must
    then carry as the password of HTTP basic auth."""
    import uvicorn
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from jobkit.runtime import get_runtime
    from jobkit_dashboard.app import create_app, section_of

    try:
        runtime = get_runtime()
        config_file = runtime.settings.config_file
        if config_file is not None and str(Path(config_file).parent) not in sys.path:
            sys.path.append(str(Path(config_file).parent))
        runtime.import_jobs()  # a retry rebuilds the job from its class, as jobkit retry does
    except JobkitError as error:
        raise click.ClickException(redact_credentials(str(error))) from error
    config = section_of(runtime)
    host = host or config.host
    port = port or config.port
    read_only = config.read_only if read_only is None else read_only
    if not is_loopback(host) and not config.token:
        raise click.UsageError(
            f"refusing to serve the dashboard on {host} without authentication: anyone who "
            f"reaches that address could retry and cancel jobs. Set a token "
            f"(JOBKIT_DASHBOARD_TOKEN, or token in [tool.jobkit.dashboard]), which browsers "
            f"send as the password of HTTP basic auth, or bind "
            f"127.0.0.1 (the default) and reach it through an SSH tunnel"
        )
    app: Any = create_app(runtime, read_only=read_only)
    if not config.token:
        # Without a token the dashboard trusts whoever reaches it on this machine, so it must
        # be reached by a loopback name: a page whose domain an attacker re-points at 127.0.0.1
        # (DNS rebinding) would otherwise read it and post its forms as the same origin.
        app = TrustedHostMiddleware(app, allowed_hosts=[*LOOPBACK_NAMES, host])
    shown = f"[{host}]" if ":" in host else host
    mode = "read-only" if read_only else "read-write"
    click.echo(f"Serving the jobkit dashboard on http://{shown}:{port} ({mode}; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
