"""The ``jobkit`` command line: the core commands, plus any a plugin adds through
``jobkit_add_commands``."""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import shlex
import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from jobkit.errors import JobkitError, UnknownJobError
from jobkit.job import Job
from jobkit.plugins import describe_plugins
from jobkit.records import STAT_KEYS, JobProcess, QueueCounts, Status
from jobkit.redaction import redact_credentials
from jobkit.runtime import Runtime, set_runtime
from jobkit.settings import flag, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def make_runtime(**overrides: Any) -> Runtime:
    """The runtime for a command, from settings plus the command's flags; it becomes the
    process's current runtime so jobs enqueued by job code use it too."""
    runtime = Runtime.from_settings(load_settings(overrides))
    set_runtime(runtime)
    return runtime


def reports_errors(command: F) -> F:
    """Show jobkit's errors (bad settings, no database, unknown job) as one clear line, with
    any password in it masked."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except JobkitError as error:
            raise click.ClickException(redact_credentials(str(error))) from error

    return wrapper  # type: ignore[return-value]


class JobkitGroup(click.Group):
    """Adds plugins' commands (``jobkit_add_commands``) the first time commands are listed or
    looked up, so ``import jobkit.cli`` loads no plugin."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            runtime = Runtime.from_settings(load_settings())
        except JobkitError:
            return  # the command that runs reports the error
        runtime.pm.hook.jobkit_add_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, name)
        return command


@click.group(cls=JobkitGroup)
@click.version_option(package_name="jobkit")
def cli() -> None:
    """Background jobs kept in PostgreSQL.

    Settings come from jobkit.toml or [tool.jobkit] in pyproject.toml, then JOBKIT_* environment
    variables (e.g. JOBKIT_DATABASE_URL), then flags.
    """


def main() -> None:
    # The current directory goes on sys.path so the imports setting finds the project's modules,
    # but last: a psycopg_pool.py or click.py lying where `jobkit` is typed must never be
    # imported in place of the installed package. (Under `python -m jobkit` it was first.)
    cwd = os.getcwd()
    sys.path[:] = [entry for entry in sys.path if entry not in ("", cwd)] + [cwd]
    cli()


# Schema -----------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--sql", "print_sql", is_flag=True, help="Print the migrations' SQL instead of applying it."
)
@reports_errors
def migrate(print_sql: bool) -> None:
    """Create or update jobkit's tables (safe to run again, and from several hosts at once)."""
    runtime = make_runtime()
    if print_sql:
        click.echo(runtime.store.migration_sql())
        return
    applied = runtime.store.migrate()
    schema = runtime.settings.schema
    if applied:
        plural = "migration" if len(applied) == 1 else "migrations"
        click.echo(f"applied {len(applied)} {plural} to schema {schema}: {', '.join(applied)}")
    else:
        click.echo(f"schema {schema} is up to date")


# Worker -----------------------------------------------------------------------------------------


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be greater than 0, got {value}")
    return value


@cli.command()
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    help="A queue to claim from (repeatable; default: the worker_queues setting, 'default').",
)
@click.option(
    "--max-processes",
    type=int,
    callback=_positive,
    help="Pool children (default: the CPUs available).",
)
@click.option(
    "--max-jobs-per-process",
    type=int,
    callback=_positive,
    help="Replace a child after it ran this many jobs.",
)
@click.option(
    "--max-pending-per-process",
    type=int,
    callback=_positive,
    help="Jobs claimed ahead per child (default 10).",
)
@click.option(
    "--stats-every", type=float, help="Seconds between stats log lines; 0 turns them off."
)
@click.option(
    "--shutdown-timeout",
    type=float,
    help="Seconds running jobs get to finish after SIGTERM/SIGINT before they are ended and "
    "recorded CANCELLED (default: the shutdown_timeout setting, 25).",
)
@click.option(
    "--scheduler/--no-scheduler",
    default=None,
    help="Run the scheduler, which enqueues the schedule setting's jobs (default: the "
    "worker_scheduler setting, on). Each tick is enqueued once however many workers run it.",
)
@click.option("--burst", is_flag=True, help="Exit once no job is ready and none is running.")
@click.option(
    "--reload",
    is_flag=True,
    help="Restart the worker when a .py file under this directory changes (development).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@reports_errors
def worker(
    queues: tuple[str, ...],
    max_processes: int | None,
    max_jobs_per_process: int | None,
    max_pending_per_process: int | None,
    stats_every: float | None,
    shutdown_timeout: float | None,
    scheduler: bool | None,
    burst: bool,
    reload: bool,
    log_level: str,
) -> None:
    """Claim and run jobs until stopped with SIGTERM or Ctrl-C."""
    from jobkit.processes import configure_logging
    from jobkit.worker import Worker, WorkerOptions

    if reload:
        grace = load_settings({"shutdown_timeout": flag(shutdown_timeout, "--shutdown-timeout")})
        arguments = [arg for arg in sys.argv[1:] if arg != "--reload"]
        sys.exit(_run_reloading(arguments, grace.shutdown_timeout))
    configure_logging(log_level.upper())
    runtime = make_runtime(
        worker_queues=flag(list(queues) or None, "--queue"),
        worker_max_processes=flag(max_processes, "--max-processes"),
        worker_max_jobs_per_process=flag(max_jobs_per_process, "--max-jobs-per-process"),
        worker_max_pending_per_process=flag(max_pending_per_process, "--max-pending-per-process"),
        worker_stats_every=flag(stats_every, "--stats-every"),
        shutdown_timeout=flag(shutdown_timeout, "--shutdown-timeout"),
        worker_scheduler=flag(scheduler, "--scheduler/--no-scheduler"),
    )
    runtime.store  # noqa: B018 - resolve the database (and start an embedded one) up front
    sys.exit(Worker(runtime, WorkerOptions.from_settings(runtime, burst=burst)).run())


def _run_reloading(arguments: list[str], shutdown_timeout: float) -> int:
    """Run ``jobkit <arguments>`` in a subprocess, restarted (with SIGINT, a graceful stop that
    may take the shutdown grace period) when a Python file under the current directory
    changes."""
    try:
        import watchfiles
    except ImportError:
        raise click.ClickException(
            "--reload needs watchfiles: pip install 'jobkit[reload]'"
        ) from None
    # -P: `python -m` would put the current directory first on sys.path (main() adds it last).
    command = [sys.executable, "-P", "-m", "jobkit", *arguments]
    watchfiles.run_process(
        ".",
        target=" ".join(shlex.quote(part) for part in command),
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        sigint_timeout=math.ceil(shutdown_timeout) + 5,
    )
    return 0


# Jobs -------------------------------------------------------------------------------------------


@cli.command("list")
@reports_errors
def list_jobs() -> None:
    """List the registered jobs (from the imports setting and plugins) with their docstrings."""
    runtime = make_runtime()
    runtime.import_jobs()
    for name, job_class in runtime.registry.items():
        summary = (job_class.__doc__ or "").strip().splitlines()
        click.echo(f"{name}" + (f"\n    {summary[0]}" if summary else ""))
    if not runtime.settings.imports:
        click.echo(
            "no jobs of yours are registered: list the modules that define them in the "
            "imports setting"
        )


def _parameters_option(func: F) -> F:
    func = click.option(
        "--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object."
    )(func)
    func = click.option(
        "--args", "args_json", default="[]", help="Positional arguments as a JSON array."
    )(func)
    return func


def _parameters(args_json: str, kwargs_json: str) -> str:
    """The stored-parameter JSON for ``--args``/``--kwargs``, checked for shape."""
    args = _json_option(args_json, "--args", list, "a JSON array")
    kwargs = _json_option(kwargs_json, "--kwargs", dict, "a JSON object")
    return json.dumps({"args": args, "kwargs": kwargs})


def _json_option(text: str, option: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint=option) from error
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be {expected}, got {text}", param_hint=option)
    return value


def _job_class(runtime: Runtime, name: str) -> type[Job]:
    runtime.import_jobs()
    try:
        return runtime.registry.get(name)
    except UnknownJobError as error:
        imported = ", ".join(runtime.settings.imports) or "nothing"
        raise click.ClickException(
            f"{error}; the imports setting lists {imported} (`jobkit list` shows what is "
            f"registered)"
        ) from error


def _build_job(runtime: Runtime, name: str, args_json: str, kwargs_json: str) -> Job:
    parameters = _parameters(args_json, kwargs_json)
    job_class = _job_class(runtime, name)
    args, kwargs = runtime.serializer.loads(job_class, parameters)
    return job_class(*args, **kwargs)


@cli.command()
@click.argument("name")
@_parameters_option
@reports_errors
def run(name: str, args_json: str, kwargs_json: str) -> None:
    """Run the job registered as NAME now, in this process, as a worker would (middleware and
    plugins apply; retries are not enqueued)."""
    runtime = make_runtime()
    parameters = _parameters(args_json, kwargs_json)
    _job_class(runtime, name)
    now = datetime.datetime.now(datetime.UTC)
    process = JobProcess(
        job_name=name,
        parameters=parameters,
        worker_id=uuid.UUID(int=0),
        claimed_at=now,
        start_at=now,
        created_at=now,
    )
    outcome = runtime.run_attempt(process)
    if outcome.status is Status.ERRORED:
        click.echo(outcome.error, err=True)
        raise click.ClickException(f"{name} ERRORED ({outcome.error_type})")
    click.echo(f"{name} {outcome.status.value}")


@cli.command()
@click.argument("name")
@_parameters_option
@click.option("--queue", help="Queue (default: the job's default_queue()).")
@click.option("--delay", type=float, help="Seconds from now before it may start.")
@click.option(
    "--priority", type=int, help="Higher runs first (default: the job's default_priority())."
)
@reports_errors
def enqueue(
    name: str,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    delay: float | None,
    priority: int | None,
) -> None:
    """Enqueue the job registered as NAME; print its request id."""
    runtime = make_runtime()
    job = _build_job(runtime, name, args_json, kwargs_json)
    try:
        request = runtime.enqueue(job, queue=queue, delay=delay, priority=priority)
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error)) from error
    if request is None:
        click.echo(f"{name} was not enqueued: should_enqueue() declined it")
        return
    click.echo(str(request.id))


# Operations -------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def stats(as_json: bool) -> None:
    """Jobs per stage: pending (ready now), scheduled, running, and results; how long the oldest
    pending job has been ready; and the workers active or stale."""
    runtime = make_runtime()
    timeout = runtime.settings.heartbeat_timeout
    figures = runtime.store.stats(heartbeat_timeout=timeout)
    if as_json:
        click.echo(json.dumps(figures.as_dict(), indent=2))
        return
    rows: list[tuple[object, ...]] = [("queue", *STAT_KEYS, "oldest_pending_age")]
    rows += [(name, *_stat_cells(counts)) for name, counts in sorted(figures.queues.items())]
    rows.append(("total", *_stat_cells(figures.total)))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True))
        )
    click.echo(
        f"\nworkers: {figures.workers_active} active, {figures.workers_stale} stale (stale: no "
        f"heartbeat for more than {timeout:g} s, the heartbeat_timeout setting)"
    )


def _stat_cells(counts: QueueCounts) -> tuple[object, ...]:
    """A row of ``jobkit stats``: the counts, then the age in seconds to a tenth."""
    return (*(getattr(counts, key) for key in STAT_KEYS), f"{counts.oldest_pending_age:.1f}")


@cli.command()
@click.option("--older-than", type=float, help="Seconds (default: the results_retention setting).")
@reports_errors
def clear(older_than: float | None) -> None:
    """Delete results older than the retention period."""
    runtime = make_runtime()
    seconds = runtime.settings.results_retention if older_than is None else older_than
    if seconds < 0:
        raise click.BadParameter(f"--older-than must be 0 or more, got {seconds}")
    deleted = runtime.store.clear_results(older_than=seconds)
    click.echo(f"deleted {deleted} results older than {seconds:g} seconds")


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def purge(yes: bool) -> None:
    """Delete every pending, running and finished job."""
    runtime = make_runtime()
    if not yes:
        click.confirm(
            f"Delete every job in schema {runtime.settings.schema}, including running ones?",
            abort=True,
        )
    click.echo(f"deleted {runtime.store.purge()} rows")


@cli.command()
@click.option(
    "--all", "show_all", is_flag=True, help="Include the built-in plugins and the kernel."
)
@click.option("--hook", "hook_name", help="Only plugins that implement this hook.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def plugins(show_all: bool, hook_name: str | None, as_json: bool) -> None:
    """List installed plugins: name, distribution, source and the hooks each implements."""
    runtime = make_runtime()
    if hook_name is not None and not hasattr(runtime.pm.hook, hook_name):
        raise click.BadParameter(f"no hook is named {hook_name!r}", param_hint="--hook")
    infos = [
        info
        for info in describe_plugins(runtime.pm, runtime.settings)
        if (show_all or info.source not in ("builtin", "core") or info.blocked)
        and (hook_name is None or hook_name in info.hooks)
    ]
    if as_json:
        click.echo(json.dumps([attrs.asdict(info) for info in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins installed (--all shows the built-in ones)")
    for info in infos:
        where = f"{info.distribution} {info.version}" if info.distribution else info.source
        state = " [blocked]" if info.blocked else ""
        click.echo(f"{info.name} ({where}){state}")
        for hook in info.hooks:
            click.echo(f"    {hook}")


def _add_operations_commands() -> None:
    """The commands that operate jobs live in ``jobkit.operations_cli``."""
    from jobkit.operations_cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_operations_commands()
