"""The ``jobkit`` commands that operate jobs: ``jobs``, ``show``, ``retry``, ``cancel``,
``delete``, ``run-now``, ``pause``, ``resume`` and ``workers`` (see ``jobkit.operations``).

Tables for people by default (aligned, relative times, errors cut to their last line), ``--json``
for scripts. The exit status says what happened: 0 done (or found), 1 nothing matched or nothing
to do, 2 bad input. A bulk action needs ``--yes``, or shows what it would do with ``--dry-run``.
"""

from __future__ import annotations

import datetime
import functools
import getpass
import json
import re
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from jobkit.errors import JobkitError, ParameterError
from jobkit.operations import ActionReport, JobNotFound, Operations, job_filter
from jobkit.records import Attempt, CallbackStage, JobInfo, WorkerInfo, WorkflowState

F = TypeVar("F", bound=Callable[..., Any])

NOTHING, BAD_INPUT = 1, 2
"""Exit statuses: nothing matched or nothing was done; the input was wrong."""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
ERROR_SHOWN = 60
"""Characters of an error's last line a table shows (``jobkit show`` shows it whole)."""


def source() -> str:
    """Who acts, as actions record it: ``cli user@host``."""
    return f"cli {getpass.getuser()}@{socket.gethostname()}"


def operations(*, import_jobs: bool = False) -> Operations:
    """The operations on the runtime of this command's settings; a retry needs the job
    classes (``import_jobs``), to go through their ``should_enqueue``."""
    from jobkit.cli import make_runtime

    runtime = make_runtime()
    if import_jobs:
        runtime.import_jobs()
    return Operations(runtime)


def reports_problems(command: F) -> F:
    """Bad input exits 2 with its message; a missing job or any other jobkit error, 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ParameterError as error:
            raise click.UsageError(str(error)) from error
        except JobNotFound as error:
            click.echo(f"Error: {error}", err=True)
            raise SystemExit(NOTHING) from error
        except JobkitError as error:
            raise click.ClickException(str(error)) from error

    return wrapper  # type: ignore[return-value]


def moment(text: str | None, option: str) -> datetime.datetime | datetime.timedelta | None:
    """``--since``/``--until``: a duration back from now (``30s``, ``15m``, ``2h``, ``1d``,
    ``1w``) or an ISO date and time (UTC when it names no offset)."""
    if text is None:
        return None
    found = _DURATION.match(text.strip())
    if found:
        return datetime.timedelta(seconds=float(found[1]) * _UNIT[found[2]])
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (30s, 15m, 2h, 1d, 1w) nor an ISO date and time",
            param_hint=option,
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def filter_options(command: F) -> F:
    """The listing's filters, shared by ``jobs`` and ``retry --failed``."""
    for option in reversed(
        [
            click.option(
                "--status",
                "statuses",
                multiple=True,
                help="pending, scheduled, running, successful, errored, deferred, lost, "
                "cancelled, or failed (errored, lost or cancelled, and not retried); repeatable.",
            ),
            click.option("--queue", "queues", multiple=True, help="A queue (repeatable)."),
            click.option("--name", "names", multiple=True, help="A job name (repeatable)."),
            click.option("--key", help="A concurrency key."),
            click.option("--since", help="Newer than this: 2h, 1d, ... or an ISO date and time."),
            click.option("--until", help="Older than this: 2h, 1d, ... or an ISO date and time."),
            click.option("--error", help="Text the error (traceback) holds, in any case."),
        ]
    ):
        command = option(command)
    return command


def criteria(
    statuses: Sequence[str],
    queues: Sequence[str],
    names: Sequence[str],
    key: str | None,
    since: str | None,
    until: str | None,
    error: str | None,
) -> dict[str, Any]:
    return {
        "status": list(statuses),
        "queue": list(queues),
        "name": list(names),
        "concurrency_key": key,
        "since": moment(since, "--since"),
        "until": moment(until, "--until"),
        "error": error,
    }


# Showing --------------------------------------------------------------------------------------


def ago(when: datetime.datetime | None, now: datetime.datetime) -> str:
    if when is None:
        return ""
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f}{unit}"
            break
    else:
        text = f"{seconds:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def last_line(error: str) -> str:
    line = error.strip().rpartition("\n")[2]
    return line if len(line) <= ERROR_SHOWN else line[: ERROR_SHOWN - 1] + "…"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def attempt_number(attempt: Attempt) -> str:
    """``2/4`` for the second of four attempts its retries allow; an operator's retry past them
    shows its number alone."""
    number, allowed = attempt.retry_attempt + 1, attempt.retries + 1
    return f"{number}/{allowed}" if number <= allowed else str(number)


def attempt_row(attempt: Attempt, now: datetime.datetime) -> list[str]:
    return [
        str(attempt.job_id),
        attempt.state.value,
        attempt.job_name,
        attempt.queue,
        attempt_number(attempt),
        ago(attempt.at, now),
        last_line(attempt.error) if attempt.error else attempt.error_type,
    ]


HEADER = ["JOB", "STATE", "NAME", "QUEUE", "ATTEMPT", "WHEN", "ERROR"]


PREVIEW_LINES = 20


def show_preview(reports: Sequence[ActionReport]) -> None:
    """The jobs a bulk action would touch: the first few, and how many in all."""
    for report in reports[:PREVIEW_LINES]:
        click.echo(f"  {report.job_id}: {report.message}")
    if len(reports) > PREVIEW_LINES:
        click.echo(f"  ... and {len(reports) - PREVIEW_LINES:,} more")
    click.echo(f"would retry {len(reports):,} failed jobs")


def show_reports(reports: Sequence[ActionReport], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        for report in reports:
            subject = f"{report.job_id}: " if report.job_id else ""
            click.echo(f"{subject}{report.message}")
    if not any(report.done for report in reports):
        raise SystemExit(NOTHING)


# Commands -------------------------------------------------------------------------------------


@click.command("jobs")
@filter_options
@click.option("--limit", type=int, default=50, show_default=True, help="Attempts per page.")
@click.option("--cursor", help="The next page: the cursor the page before printed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def jobs_command(
    statuses: tuple[str, ...],
    queues: tuple[str, ...],
    names: tuple[str, ...],
    key: str | None,
    since: str | None,
    until: str | None,
    error: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List attempts, newest first, with filters; exit status 1 when none match."""
    filter = job_filter(**criteria(statuses, queues, names, key, since, until, error))
    page = operations().jobs(filter, limit=limit, cursor=cursor)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "attempts": [attempt.as_dict() for attempt in page.attempts],
                    "next_cursor": page.next_cursor,
                    "total": page.total,
                    "total_is_estimate": page.total_is_estimate,
                },
                indent=2,
            )
        )
    elif page.attempts:
        now = datetime.datetime.now(datetime.UTC)
        click.echo(table([HEADER, *(attempt_row(a, now) for a in page.attempts)]))
        about = "about " if page.total_is_estimate else ""
        footer = f"{len(page.attempts)} of {about}{page.total:,}"
        if page.next_cursor:
            footer += f"; next page: --cursor {page.next_cursor}"
        click.echo(footer)
    else:
        click.echo("no attempt matches")
    if not page.attempts:
        raise SystemExit(NOTHING)


@click.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def show_command(job_id: str, as_json: bool) -> None:
    """Show a job: its parameters, and every attempt with its times, worker, error and
    output."""
    job = operations().job(job_id)
    if as_json:
        click.echo(json.dumps(job.as_dict(), indent=2))
        return
    click.echo(describe_job(job))


def describe_job(job: JobInfo) -> str:
    now = datetime.datetime.now(datetime.UTC)
    first = job.attempts[0]
    lines = [
        f"job        {job.job_id}",
        f"name       {job.job_name}",
        f"state      {job.state.value}",
        f"queue      {first.queue}  priority {first.priority}  retries {first.retries}"
        + (f"  key {first.concurrency_key}" if first.concurrency_key else ""),
        f"enqueued   {first.created_at:%Y-%m-%d %H:%M:%S %Z} ({ago(first.created_at, now)})"
        f" by {first.source}",
        f"parameters {json.dumps(json.loads(first.parameters))}",
    ]
    if job.workflow_id is not None:
        lines.append(f"workflow   {job.workflow_id}")
    if job.pipeline is not None:
        step = job.pipeline.step
        lines.append(f"step       {'ended' if step is None else step + ' (the step it runs next)'}")
        lines.append(f"workspace  {json.dumps(json.loads(job.pipeline.workspace_json))}")
    for number, attempt in enumerate(job.attempts, 1):
        lines.append("")
        lines.append(f"attempt {number}: {attempt.state.value}  ({attempt.id})")
        for label, when in (
            ("  created ", attempt.created_at),
            ("  starts  ", attempt.start_at if attempt.state.value == "scheduled" else None),
            ("  started ", attempt.started_at),
            ("  ended   ", attempt.ended_at),
        ):
            if when is not None:
                lines.append(f"{label} {when:%Y-%m-%d %H:%M:%S} ({ago(when, now)})")
        if attempt.worker_id:
            lines.append(f"  worker   {attempt.worker_id}")
        if attempt.started_at and attempt.ended_at:
            took = (attempt.ended_at - attempt.started_at).total_seconds()
            lines.append(f"  took     {took:.3f} s")
        if attempt.source and number > 1:
            lines.append(f"  by       {attempt.source}")
        if attempt.cancel_requested_at:
            lines.append(f"  cancel   requested {ago(attempt.cancel_requested_at, now)}")
        if attempt.error:
            lines.append(f"  error    {attempt.error_type}")
            lines.extend(f"    {line}" for line in attempt.error.rstrip().splitlines())
        if attempt.output_json is not None:
            # As stored: JSON, with the serializer's tags for datetimes and the like.
            pretty = json.dumps(
                json.loads(attempt.output_json), indent=2, ensure_ascii=False, sort_keys=True
            )
            first_line, *rest = pretty.splitlines()
            lines.append(f"  output   {first_line}")
            lines.extend(f"    {line}" for line in rest)
    return "\n".join(lines)


@click.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Retry every failed job the filters match.")
@filter_options
@click.option("--delay", type=float, help="Seconds from now before the retry may start.")
@click.option("--limit", type=int, help="With --failed: at most this many jobs.")
@click.option("--dry-run", is_flag=True, help="With --failed: show what would be retried.")
@click.option("--yes", is_flag=True, help="With --failed: retry without asking.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def retry_command(
    job_ids: tuple[str, ...],
    failed: bool,
    statuses: tuple[str, ...],
    queues: tuple[str, ...],
    names: tuple[str, ...],
    key: str | None,
    since: str | None,
    until: str | None,
    error: str | None,
    delay: float | None,
    limit: int | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Run jobs that ended once more: the JOB_IDS given, or with --failed every failed job the
    filters match. A job that waits or runs, or was retried already, is left alone."""
    if bool(job_ids) == failed:
        raise click.UsageError("give job ids, or --failed with filters (not both)")
    ops = operations(import_jobs=True)
    if job_ids:
        reports = [ops.retry(job_id, delay=delay, source=source()) for job_id in job_ids]
        show_reports(reports, as_json)
        return
    if statuses:
        raise click.UsageError("--failed picks failed jobs: it takes no --status")
    filter = job_filter(**criteria(statuses, queues, names, key, since, until, error))
    if not dry_run and not yes:
        preview = ops.retry_failed(filter, dry_run=True, limit=limit, source=source())
        if not preview:
            click.echo("no failed job matches")
            raise SystemExit(NOTHING)
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"{len(preview):,} failed jobs match: retry them with --yes, "
                "or list them with --dry-run"
            )
        show_preview(preview)
        click.confirm(f"retry {len(preview):,} failed jobs?", abort=True)
    reports = ops.retry_failed(filter, delay=delay, dry_run=dry_run, limit=limit, source=source())
    if dry_run:
        if as_json:
            click.echo(json.dumps([report.as_dict() for report in reports], indent=2))
        else:
            show_preview(reports)
        if not reports:
            raise SystemExit(NOTHING)
        return
    if not reports:
        click.echo("no failed job matches")
        raise SystemExit(NOTHING)
    done = sum(report.done for report in reports)
    if as_json:
        show_reports(reports, as_json)
    else:
        click.echo(f"retried {done:,} of {len(reports):,} failed jobs")
        for report in reports:
            if not report.done:
                click.echo(f"  {report.job_id}: {report.message}")
        if not done:
            raise SystemExit(NOTHING)


@click.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def cancel_command(job_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel jobs: a waiting attempt ends CANCELLED now; a running one is ended by its worker
    within seconds. Neither runs again."""
    ops = operations()
    show_reports([ops.cancel(job_id, source=source()) for job_id in job_ids], as_json)


@click.command("workflow")
@click.argument("workflow_id")
@click.option("--cancel", is_flag=True, help="Cancel every job of it that waits.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def workflow_command(workflow_id: str, cancel: bool, as_json: bool) -> None:
    """Show a workflow: each link's members with their final status, and its callback; with
    --cancel, cancel every job of it that waits (its held callbacks first)."""
    ops = operations()
    if cancel:
        show_reports(ops.cancel_workflow(workflow_id, source=source()), as_json)
        return
    links = ops.workflow(workflow_id)
    if as_json:
        click.echo(json.dumps([link.as_dict() for link in links], indent=2))
        return
    click.echo(describe_workflow(links))


def describe_workflow(links: Sequence[WorkflowState]) -> str:
    first = links[0]
    lines = [f"workflow   {first.root_id}" + (f"  {first.name}" if first.name else "")]
    for number, link in enumerate(links, 1):
        ended = len(link.members) - link.unfinished
        stage, state = link.callback_stage, link.callback_state
        if stage is None:
            then = "no callback"
        elif stage is CallbackStage.RELEASED:
            then = f"callback {link.callback_id} released {link.released_at:%Y-%m-%d %H:%M:%S}"
        else:
            then = f"callback {link.callback_id} {stage.value}"
        if stage is not CallbackStage.HELD and state is not None:
            then += f": {state.value}"
        lines.append("")
        lines.append(
            f"link {number}: {ended} of {len(link.members)} ended, {link.failed} failed; {then}"
        )
        for member in link.members:
            status = "not ended" if member.status is None else member.status.value
            lines.append(f"  {member.position:>3}  {member.job_id}  {member.job_name}  {status}")
    return "\n".join(lines)


@click.command("delete")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def delete_command(job_ids: tuple[str, ...], dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete jobs for good: a job that ended, with every attempt's result; a job that waits,
    before it runs. A job whose attempt runs is left alone (cancel it first)."""
    ops = operations()
    if not dry_run and not yes:
        preview = [ops.delete(job_id, source=source(), dry_run=True) for job_id in job_ids]
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"deleting {len(job_ids):,} job{'s' if len(job_ids) != 1 else ''} cannot be "
                "undone: delete with --yes, or see what would go with --dry-run"
            )
        for report in preview:
            click.echo(f"  {report.job_id}: {report.message}")
        click.confirm(f"delete {len(job_ids):,} jobs for good?", abort=True)
    reports = [ops.delete(job_id, source=source(), dry_run=dry_run) for job_id in job_ids]
    if dry_run:
        if as_json:
            click.echo(json.dumps([report.as_dict() for report in reports], indent=2))
        else:
            for report in reports:
                click.echo(f"{report.job_id}: {report.message}")
        if not any(report.message.startswith("would") for report in reports):
            raise SystemExit(NOTHING)
        return
    show_reports(reports, as_json)


@click.command("run-now")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_problems
def run_now_command(job_ids: tuple[str, ...], as_json: bool) -> None:
    """Let scheduled jobs start now (a delayed enqueue, a retry waiting out its delay), and wake
    the workers of their queues. A job that is ready already, runs or ended is left alone."""
    ops = operations()
    show_reports([ops.run_now(job_id, source=source()) for job_id in job_ids], as_json)


@click.command("pause")
@click.argument("queues", nargs=-1, required=True)
@reports_problems
def pause_command(queues: tuple[str, ...]) -> None:
    """Stop every worker claiming from QUEUES; their jobs stay pending until `jobkit resume`."""
    ops = operations()
    show_reports([ops.pause_queue(queue, source=source()) for queue in queues], False)


@click.command("resume")
@click.argument("queues", nargs=-1, required=True)
@reports_problems
def resume_command(queues: tuple[str, ...]) -> None:
    """Let workers claim from paused QUEUES again."""
    ops = operations()
    show_reports([ops.resume_queue(queue, source=source()) for queue in queues], False)


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 if a worker of this host (or --host, --worker-id) has a fresh heartbeat, 1 if "
    "none does, with a one-line reason: a liveness probe.",
)
@click.option("--host", help="With --check: the host whose workers count [default: this one].")
@click.option("--worker-id", help="With --check: only this worker counts.")
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    help="With --check: seconds a heartbeat stays fresh [default: the heartbeat_timeout "
    "setting, after which peers rescue the worker's jobs].",
)
@reports_problems
def workers_command(
    as_json: bool,
    check: bool,
    host: str | None,
    worker_id: str | None,
    max_age: float | None,
) -> None:
    """The registered workers, live or stale, and what each runs."""
    if check:
        if as_json:
            raise click.UsageError("--check prints one line; leave out --json")
        check_heartbeat(host=host, worker_id=worker_id, max_age=max_age)
        return
    for name, value in (("--host", host), ("--worker-id", worker_id), ("--max-age", max_age)):
        if value is not None:
            raise click.UsageError(f"{name} goes with --check")
    statuses = operations().workers()
    if as_json:
        click.echo(json.dumps([status.as_dict() for status in statuses], indent=2))
    elif statuses:
        now = datetime.datetime.now(datetime.UTC)
        rows = [["WORKER", "HOST", "PID", "QUEUES", "STARTED", "HEARTBEAT", "STATE", "RUNNING"]]
        for status in statuses:
            info = status.info
            rows.append(
                [
                    str(info.id),
                    info.hostname,
                    str(info.pid),
                    ",".join(
                        f"{queue} (paused)" if queue in status.paused_queues else queue
                        for queue in info.queues
                    ),
                    ago(info.started_at, now),
                    ago(info.last_heartbeat_at, now),
                    "stale" if status.stale else "live",
                    ", ".join(f"{a.job_name} {a.job_id}" for a in status.running) or "-",
                ]
            )
        click.echo(table(rows))
    else:
        click.echo("no worker is registered")
    if not statuses:
        raise SystemExit(NOTHING)


def check_heartbeat(*, host: str | None, worker_id: str | None, max_age: float | None) -> None:
    """``workers --check``: one line, and exit 0 when a chosen worker's heartbeat is at most
    ``max_age`` seconds old by the database's clock (as peers judge it), 1 otherwise. The
    heartbeat beats on a thread of its own, so this says the worker process lives and reaches
    the database, not that its jobs make progress."""
    if host is not None and worker_id is not None:
        raise click.UsageError("--host and --worker-id choose workers two ways; give one")
    wanted = parse_worker_id(worker_id) if worker_id is not None else None
    host = socket.gethostname() if host is None and wanted is None else host
    ops = operations()
    max_age = ops.runtime.settings.heartbeat_timeout if max_age is None else max_age
    chosen = [
        info
        for info in ops.store.workers()
        if (wanted is None or info.id == wanted) and (host is None or info.hostname == host)
    ]
    which = f"worker {wanted}" if wanted is not None else f"host {host}"
    if not chosen:
        fail_check(f"no worker of {which} is registered (not started yet, or stopped)")
    stale = ops.store.dead_workers(heartbeat_timeout=max_age)
    now = ops.store.database_now()
    live = [info for info in chosen if info.id not in stale]
    if live:
        best = max(live, key=lambda info: info.last_heartbeat_at or now)
        click.echo(f"ok: worker {best.id} (pid {best.pid}, host {best.hostname}) {beat(best, now)}")
        return
    latest = max(chosen, key=lambda info: info.last_heartbeat_at or now)
    fail_check(
        f"no fresh heartbeat from {which}: worker {latest.id} (pid {latest.pid}) "
        f"{beat(latest, now)}, more than --max-age {max_age:g} s"
    )


def parse_worker_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as error:
        raise click.BadParameter(
            f"{text!r} is not a worker id (a UUID)", param_hint="--worker-id"
        ) from error


def beat(info: WorkerInfo, now: datetime.datetime) -> str:
    if info.last_heartbeat_at is None:
        return "has not beaten yet"
    return f"beat {(now - info.last_heartbeat_at).total_seconds():.1f} s ago"


def fail_check(reason: str) -> NoReturn:
    click.echo(f"unhealthy: {reason}", err=True)
    raise SystemExit(NOTHING)


COMMANDS = [
    jobs_command,
    show_command,
    retry_command,
    cancel_command,
    workflow_command,
    delete_command,
    run_now_command,
    pause_command,
    resume_command,
    workers_command,
]
