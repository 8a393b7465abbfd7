"""The ``jobkit`` command line: the core commands, plus any a plugin adds through
``jobkit_add_commands``."""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import os
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from jobkit.errors import JobkitError, ParameterError, UnknownJobError
from jobkit.job import Job
from jobkit.plugins import describe_plugins
from jobkit.processes import configure_logging
from jobkit.records import STAT_KEYS, JobProcess, QueueCounts, Status
from jobkit.redaction import redact_credentials
from jobkit.runtime import Runtime, queue_names, set_runtime
from jobkit.settings import CONFIG_ENV, LOG_FORMATS, Settings, flag, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def command_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """The settings of a command. The project's directory (the config file's) goes on
    ``sys.path``, last, as ``main()`` puts the current directory: so the modules the file names
    (``imports``, ``plugins``, ``middleware``) are found from any folder of the project."""
    settings = load_settings(overrides)
    if settings.config_file is not None:
        project = str(Path(settings.config_file).parent)
        if project not in sys.path:
            sys.path.append(project)
    return settings


def make_runtime(*, log_level: str | None = None, **overrides: Any) -> Runtime:
    """The runtime for a command, from settings plus the command's flags; it becomes the
    process's current runtime so jobs enqueued by job code use it too. With ``log_level``,
    logging is configured (in the ``log_format`` setting) before any plugin loads, so the lines
    plugins log as they load are shown in it too."""
    settings = command_settings(overrides)
    if log_level is not None:
        configure_logging(log_level.upper(), settings.log_format)
    runtime = Runtime.from_settings(settings)
    set_runtime(runtime)
    return runtime


def _logging_options(command: F) -> F:
    """``--log-level`` and ``--log-format``, for the commands that show what runs."""
    command = click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        help="Log lines as text, or as JSON objects one per line (default: the log_format "
        "setting, text).",
    )(command)
    return click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
        help="Show log lines of this level and above.",
    )(command)


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
    looked up, so ``import jobkit.cli`` loads no plugin.

    Plugins load from the settings, so a bad setting (or a plugin that fails to load) hides
    their commands: ``--help`` then says which error hides them, and a command name that is
    not one of jobkit's own is answered with the error rather than "No such command"."""

    _plugins_added = False
    _plugins_error: JobkitError | None = None

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            runtime = Runtime.from_settings(command_settings())
        except JobkitError as error:
            self._plugins_error = error
            return
        runtime.pm.hook.jobkit_add_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, name)
        if command is None and self._plugins_error is not None:
            raise click.ClickException(
                f"{redact_credentials(str(self._plugins_error))}\n\n{name!r} is not one of "
                f"jobkit's own commands, and the commands plugins add are not loaded until "
                f"this is fixed"
            )
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        if self._plugins_error is not None:
            with formatter.section("Commands of plugins (not loaded)"):
                formatter.write_text(
                    f"{redact_credentials(str(self._plugins_error))}: fix this to see the "
                    f"commands plugins add (such as schedule)."
                )


def _use_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config PATH`` sets ``JOBKIT_CONFIG``: so every read of the settings in this command,
    and in the processes it starts (``--reload``'s worker, ``cmd:`` entries), reads that file."""
    if value is not None:
        os.environ[CONFIG_ENV] = os.path.abspath(value)


@click.group(cls=JobkitGroup)
@click.version_option(package_name="jobkit")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_use_config_file,
    help="The config file: a jobkit.toml, or a pyproject.toml with [tool.jobkit] (default: "
    "JOBKIT_CONFIG, else the nearest one from the current directory up).",
)
def cli() -> None:
    """Background jobs kept in PostgreSQL.

    Settings come from the config file (the nearest jobkit.toml, or pyproject.toml with
    [tool.jobkit], from the current directory up), then JOBKIT_* environment variables (e.g.
    JOBKIT_DATABASE_URL), then flags.
    """


def main() -> None:
    # The current directory goes on sys.path so the imports setting finds the project's modules,
    # but last: a psycopg_pool.py or click.py lying where `jobkit` is typed must never be
    # imported in place of the installed package. (Under `python -m jobkit` it was first.) The
    # project's directory follows it once the config file is found (command_settings).
    cwd = os.getcwd()
    sys.path[:] = [entry for entry in sys.path if entry not in ("", cwd)] + [cwd]
    cli()


# Schema -----------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--sql",
    "print_sql",
    is_flag=True,
    help="Print the migrations' SQL instead of applying it (without connecting).",
)
@reports_errors
def migrate(print_sql: bool) -> None:
    """Create or update jobkit's tables (safe to run again, and from several hosts at once)."""
    runtime = make_runtime()
    if print_sql:
        if runtime.settings.database_url is None:
            raise click.ClickException(
                "migrate --sql prints the SQL for the database of the database_url setting, "
                "which is not set (an embedded database migrates itself): set "
                "JOBKIT_DATABASE_URL=postgresql://user@host:5432/dbname; nothing connects to it"
            )
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
    "--async-concurrency",
    type=int,
    callback=_positive,
    help="Async jobs (async def run) a child runs at once (default 100).",
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
@click.option(
    "--rate-limit",
    type=float,
    help="Seconds at least between two claims of this worker, each of one job (default: the "
    "worker_rate_limit setting, 0: no gap). For limits across workers, see the limits setting.",
)
@click.option("--burst", is_flag=True, help="Exit once no job is ready and none is running.")
@click.option(
    "--reload",
    is_flag=True,
    help="Restart the worker when a .py file under this directory changes (development).",
)
@_logging_options
@reports_errors
def worker(
    queues: tuple[str, ...],
    max_processes: int | None,
    max_jobs_per_process: int | None,
    max_pending_per_process: int | None,
    async_concurrency: int | None,
    stats_every: float | None,
    shutdown_timeout: float | None,
    scheduler: bool | None,
    rate_limit: float | None,
    burst: bool,
    reload: bool,
    log_level: str,
    log_format: str | None,
) -> None:
    """Claim and run jobs until stopped with SIGTERM or Ctrl-C."""
    from jobkit.worker import Worker, WorkerOptions

    if reload:
        supervisor = command_settings(
            {
                "shutdown_timeout": flag(shutdown_timeout, "--shutdown-timeout"),
                "log_format": flag(log_format, "--log-format"),
            }
        )
        configure_logging(log_level.upper(), supervisor.log_format)
        arguments = [arg for arg in sys.argv[1:] if arg != "--reload"]
        sys.exit(_run_reloading(arguments, supervisor.shutdown_timeout))
    runtime = make_runtime(
        log_level=log_level,
        log_format=flag(log_format, "--log-format"),
        worker_queues=flag(list(queues) or None, "--queue"),
        worker_max_processes=flag(max_processes, "--max-processes"),
        worker_max_jobs_per_process=flag(max_jobs_per_process, "--max-jobs-per-process"),
        worker_max_pending_per_process=flag(max_pending_per_process, "--max-pending-per-process"),
        worker_async_concurrency=flag(async_concurrency, "--async-concurrency"),
        worker_stats_every=flag(stats_every, "--stats-every"),
        shutdown_timeout=flag(shutdown_timeout, "--shutdown-timeout"),
        worker_scheduler=flag(scheduler, "--scheduler/--no-scheduler"),
        worker_rate_limit=flag(rate_limit, "--rate-limit"),
    )
    runtime.store  # noqa: B018 - resolve the database (and start an embedded one) up front
    sys.exit(Worker(runtime, WorkerOptions.from_settings(runtime, burst=burst)).run())


def _run_reloading(arguments: list[str], shutdown_timeout: float) -> int:
    """Run ``jobkit <arguments>`` under the ``--reload`` supervisor (``jobkit.reloader``)."""
    try:
        from jobkit.reloader import Supervisor
    except ImportError as error:
        if error.name != "watchfiles":
            raise
        raise click.ClickException(
            "--reload needs watchfiles: pip install 'jobkit[reload]'"
        ) from None
    # -P: `python -m` would put the current directory first on sys.path (main() adds it last).
    command = [sys.executable, "-P", "-m", "jobkit", *arguments]
    supervisor = Supervisor(command, shutdown_timeout=shutdown_timeout, root=Path.cwd())
    return supervisor.run()


# Jobs -------------------------------------------------------------------------------------------


@cli.command("list")
@reports_errors
def list_jobs() -> None:
    """List the registered jobs (from the imports setting and plugins) with their docstrings."""
    runtime = make_runtime()
    runtime.import_jobs()
    for name, job_class in runtime.registry.items():
        click.echo(name)
        summary = _first_paragraph(job_class.__doc__ or "")
        if summary:
            click.echo(
                click.wrap_text(summary, 79, initial_indent="    ", subsequent_indent="    ")
            )
    if not runtime.job_modules:
        click.echo(
            "no jobs of yours are registered: list the modules that define them in the "
            "imports setting (or their packages in discover_jobs)"
        )


def _first_paragraph(docstring: str) -> str:
    """A docstring's first paragraph (up to its first blank line), on one line."""
    paragraph = inspect.cleandoc(docstring).partition("\n\n")[0]
    return " ".join(paragraph.split())


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
        imported = ", ".join(runtime.job_modules) or "nothing"
        raise click.ClickException(
            f"{error}; jobkit imported {imported} (the imports and discover_jobs settings; "
            f"`jobkit list` shows what is registered)"
        ) from error


def _build_job(runtime: Runtime, name: str, args_json: str, kwargs_json: str) -> Job:
    parameters = _parameters(args_json, kwargs_json)
    job_class = _job_class(runtime, name)
    args, kwargs = _loaded_parameters(runtime, job_class, parameters)
    return job_class(*args, **kwargs)


def _loaded_parameters(
    runtime: Runtime, job_class: type[Job], parameters: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``--args`` and ``--kwargs`` as the job's ``__init__`` arguments, or the usage error that
    says which of them does not fit it."""
    try:
        return runtime.serializer.loads(job_class, parameters)
    except ParameterError as error:
        raise click.BadParameter(str(error), param_hint="--args/--kwargs") from error


@cli.command()
@click.argument("name")
@_parameters_option
@_logging_options
@reports_errors
def run(
    name: str, args_json: str, kwargs_json: str, log_level: str, log_format: str | None
) -> None:
    """Run the job registered as NAME now, in this process, as a worker would (middleware and
    plugins apply; retries are not enqueued). The job's log lines show on stderr."""
    runtime = make_runtime(log_level=log_level, log_format=flag(log_format, "--log-format"))
    parameters = _parameters(args_json, kwargs_json)
    _loaded_parameters(runtime, _job_class(runtime, name), parameters)
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
    if outcome.output is not None:
        click.echo(json.dumps(json.loads(outcome.output), indent=2, ensure_ascii=False))


@cli.command()
@click.argument("name")
@_parameters_option
@click.option("--queue", help="Queue (default: the job's default_queue()).")
@click.option("--delay", type=float, help="Seconds from now before it may start.")
@click.option(
    "--priority", type=int, help="Higher runs first (default: the job's default_priority())."
)
@click.option(
    "--retries",
    type=int,
    help="Attempts after the first one fails (default: the job's default_retries()).",
)
@click.option(
    "--concurrency-key",
    help="At most one job of this class with this key pending or running; '' for none "
    "(default: the job's default_concurrency_key()).",
)
@click.option(
    "--timeout",
    type=float,
    help="Seconds one run may take (default: the job's default_timeout(), no limit).",
)
@reports_errors
def enqueue(
    name: str,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    delay: float | None,
    priority: int | None,
    retries: int | None,
    concurrency_key: str | None,
    timeout: float | None,
) -> None:
    """Enqueue the job registered as NAME, as run_in_worker() does; print its request id."""
    from jobkit.operations_cli import source

    runtime = make_runtime()
    job = _build_job(runtime, name, args_json, kwargs_json)
    try:
        request = runtime.enqueue(
            job,
            source=source(),
            queue=queue,
            delay=delay,
            priority=priority,
            retries=retries,
            concurrency_key=concurrency_key,
            timeout=timeout,
        )
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error)) from error
    if request is None:
        click.echo(f"{name} was not enqueued: should_enqueue() declined it")
        return
    click.echo(str(request.id))


# Operations -------------------------------------------------------------------------------------


@cli.command()
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def stats(queues: tuple[str, ...], as_json: bool) -> None:
    """Jobs per stage: pending (ready now), scheduled, running, and results; how long the oldest
    pending job has been ready; the workers active or stale; and how many pipelines are at each
    step. With QUEUE names, only those queues (and their total)."""
    try:
        names = queue_names(queues) if queues else None
    except ParameterError as error:
        raise click.BadParameter(str(error), param_hint="QUEUE") from error
    runtime = make_runtime()
    timeout = runtime.settings.heartbeat_timeout
    figures = runtime.store.stats(heartbeat_timeout=timeout, queues=names)
    steps = runtime.store.pipeline_steps()
    for name in names or ():
        figures.queues.setdefault(name, QueueCounts())
    if as_json:
        click.echo(json.dumps({**figures.as_dict(), "pipelines": steps}, indent=2))
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
    for job_name, at_step in steps.items():
        counted = ", ".join(f"{step} {count}" for step, count in at_step.items())
        click.echo(f"pipeline {job_name}: {counted}")
    paused = [name for name, counts in sorted(figures.queues.items()) if counts.paused]
    if paused:
        click.echo(
            f"paused: {', '.join(paused)} (no worker claims from them until `jobkit resume`)"
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
@click.option(
    "--hook",
    "hook_name",
    help="Only plugins that implement this hook, in the order pluggy calls them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def plugins(show_all: bool, hook_name: str | None, as_json: bool) -> None:
    """List installed plugins: name, distribution, source, the hooks each implements and where
    it stands among the plugins that implement the same hook; plugins that fail to load are
    listed as broken, with their error."""
    runtime = Runtime.from_settings(load_settings(), keep_broken=True)
    hook = getattr(runtime.pm.hook, hook_name, None) if hook_name is not None else None
    if hook_name is not None and hook is None:
        raise click.BadParameter(f"no hook is named {hook_name!r}", param_hint="--hook")
    infos = [
        info
        for info in describe_plugins(runtime.pm, runtime.settings, hook=hook_name)
        if show_all or info.source not in ("builtin", "core") or info.blocked
    ]
    if as_json:
        click.echo(json.dumps([attrs.asdict(info) for info in infos], indent=2))
        return
    if hook is not None:
        firstresult = hook.spec is not None and hook.spec.opts.get("firstresult", False)
        click.echo(
            f"{hook_name}: "
            + (
                "plugins are asked in this order; the first answer that is not None is used"
                if firstresult
                else "every plugin is called, in this order"
            )
        )
    if not infos:
        nothing = "no plugins installed" if hook_name is None else "no plugin implements it"
        click.echo(nothing if show_all else f"{nothing} (--all shows the built-in ones)")
    for info in infos:
        where = f"{info.distribution} {info.version}" if info.distribution else info.source
        state = " [blocked]" if info.blocked else " [broken]" if info.broken else ""
        click.echo(f"{info.name} ({where}){state}")
        if info.broken:
            click.echo(textwrap.indent(info.broken, "    "))
        for name in info.hooks:
            if hook_name in (None, name):
                place = info.precedence.get(name)
                click.echo(f"    {name}" + (f"  [{place}]" if place else ""))


def _add_operations_commands() -> None:
    """The commands that operate jobs live in ``jobkit.operations_cli``."""
    from jobkit.operations_cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_operations_commands()
