"""The built-in scheduler: enqueues jobs on cron schedules, each tick exactly once however many
workers run it.

Entries come from the ``schedule`` setting, from job classes with a ``schedule`` attribute and
from plugins (``jobkit_add_schedules``), and are checked when a worker starts. Every worker
that runs the scheduler (``--scheduler``, on by default) wakes at each tick, by the database's
clock, and tries to enqueue it: the tick is recorded in ``schedule_ticks`` (primary key: entry
key and fire time) in the same transaction as the job's request, so exactly one worker's
insert wins and a worker that dies before its commit leaves the tick to the others.

A tick is enqueued when a scheduler sees it at most ``ON_TIME_GRACE`` seconds late (a worker
restarted during a deploy still enqueues the tick it missed by seconds). Later than that, the
tick is missed and logged, unless the entry says ``catch_up = "latest"``: then the most recent
missed tick is enqueued once, however late.

A tick's transaction runs hooks (``should_enqueue``, the enqueue hooks), so it may stay open for
long, or for as long as its worker is frozen. A peer does not wait on it: the store answers
``TickBusy`` at once, and the peer goes on with its other entries and tries that tick again every
``BUSY_RETRY`` seconds, until the transaction commits (the tick is enqueued) or rolls back (the
tick is the peer's to enqueue).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import subprocess
import sys
import threading
import uuid
import weakref
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs

from jobkit.errors import JobkitError, ParameterError, TickBusy
from jobkit.hookspecs import hookimpl
from jobkit.job import Job
from jobkit.processes import die_with_parent
from jobkit.registry import JobRegistry
from jobkit.runtime import Runtime, get_runtime
from jobkit.schedule import Recurrence, Schedule, ScheduleError
from jobkit.services import PeriodicService
from jobkit.settings import Settings, load_settings

if TYPE_CHECKING:
    import click

logger = logging.getLogger("jobkit.scheduler")

ON_TIME_GRACE = 60.0
"""Seconds after its fire time that a tick still counts as on time and is enqueued."""
MAX_SLEEP = 60.0
"""The scheduler re-reads the database clock at least this often, however far the next tick."""
RETRY_DELAY = 5.0
"""Seconds before the scheduler tries again after the database failed it."""
BUSY_RETRY = 1.0
"""Seconds before the scheduler tries a tick again that another transaction is recording (a
peer's, still in its hooks or frozen): if that one rolls back, the tick is this worker's."""
COMMAND_JOB_NAME = "jobkit.ScheduledCommand"
COMMAND_PREFIX = "cmd:"
CATCH_UP = ("none", "latest")
ENTRY_OPTIONS = ("queue", "priority", "retries", "timezone", "key", "catch_up", "kwargs")
STDERR_KEPT = 8192
"""Characters of a failed command's stderr kept in its result."""
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")


# cmd: entries -----------------------------------------------------------------------------------


class CommandFailed(Exception):
    """A scheduled shell command exited with a non-zero status."""


class ScheduledCommand(Job):
    """Runs the shell command of a ``cmd:`` entry of this process's own schedule with
    ``/bin/sh``. Exit status 0 is SUCCESSFUL; any other is ERRORED, with the status and the end
    of the command's stderr.

    Its one parameter, the one a row stores, is the entry's key, never the command: the command
    is looked up in the schedule the process was configured with, so whoever can write a row
    (or run ``jobkit enqueue``) can at most run a command that schedule already holds. A key
    that names none of its ``cmd:`` entries raises ``ParameterError``, which the worker records
    ERRORED without a retry.
    """

    def __init__(self, key: str):
        self.key = key
        self.command = configured_command(get_runtime(), key)

    @classmethod
    def for_entry(cls, key: str, command: str) -> ScheduledCommand:
        """The job of the ``cmd:`` entry ``key`` whose command is at hand (the scheduler's, and
        ``load_entries``'s, which the lookup runs), made without looking it up."""
        job = cast(ScheduledCommand, cls.__new__(cls, key))  # the key is the stored parameter
        job.key, job.command = key, command
        return job

    def run(self) -> None:
        # The shell dies with the pool child that runs it, so a job ended for its timeout or a
        # shutdown does not leave its command running.
        completed = subprocess.run(
            self.command,
            shell=True,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=die_with_parent,
            check=False,
        )
        if completed.returncode == 0:
            sys.stderr.write(completed.stderr)
            return
        stderr = completed.stderr[-STDERR_KEPT:].rstrip()
        ended = (
            f"was killed by signal {-completed.returncode}"
            if completed.returncode < 0
            else f"exited with status {completed.returncode}"
        )
        raise CommandFailed(
            f"{self.command!r} {ended}" + (f"; stderr:\n{stderr}" if stderr else "")
        )


_commands: weakref.WeakKeyDictionary[Runtime, dict[str, str]] = weakref.WeakKeyDictionary()
_commands_lock = threading.Lock()


def configured_command(runtime: Runtime, key: str) -> str:
    """The shell command of the ``cmd:`` entry with ``key`` in ``runtime``'s schedule (its
    entries are read once per runtime); ``ParameterError`` when no ``cmd:`` entry has it."""
    with _commands_lock:
        commands = _commands.get(runtime)
        if commands is None:
            commands = {
                entry.key: entry.command
                for entry in load_entries(runtime)
                if entry.command is not None
            }
            _commands[runtime] = commands
    try:
        return commands[key]
    except KeyError:
        shown = key if len(key) <= 200 else key[:197] + "..."
        raise ParameterError(
            f"{COMMAND_JOB_NAME} runs only the cmd: entries of this process's schedule, and "
            f"none has the key {shown!r} ({len(commands)} cmd: entries are configured; "
            f"`jobkit schedule` lists their keys). It is enqueued by the scheduler, with the "
            f"entry's key: to run a command, add it to the schedule setting as a cmd: entry"
        ) from None


# Entries ----------------------------------------------------------------------------------------


@attrs.frozen
class ScheduleEntry:
    """A checked schedule entry: what to enqueue, when, and the key its ticks are recorded
    under."""

    key: str
    job: str
    """As written: a registered job name, or ``cmd:<shell command>``."""
    schedule: Recurrence = attrs.field(eq=False)
    timezone: str
    queue: str | None = None
    priority: int | None = None
    retries: int | None = None
    catch_up: str = "none"
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    origin: str = ""
    """Where the entry was written, for messages: ``schedule setting, entry 2``."""

    @property
    def command(self) -> str | None:
        """The shell command of a ``cmd:`` entry; None for an entry that names a job."""
        if not self.job.startswith(COMMAND_PREFIX):
            return None
        return self.job.removeprefix(COMMAND_PREFIX)

    def make_job(self, registry: JobRegistry) -> Job:
        if self.command is not None:
            return ScheduledCommand.for_entry(self.key, self.command)
        return registry.get(self.job)(**self.kwargs)

    def enqueue_options(self) -> dict[str, Any]:
        return {"queue": self.queue, "priority": self.priority, "retries": self.retries}


def written_entries(runtime: Runtime) -> list[tuple[str, Any]]:
    """Every schedule entry as written, unchecked, with where it was written: the ``schedule``
    setting's, job classes' ``schedule`` attributes, plugins' (``jobkit_add_schedules``)."""
    settings = runtime.settings
    written: list[tuple[str, Any]] = [
        (f"schedule setting, entry {number}", raw)
        for number, raw in enumerate(settings.schedule, 1)
    ]
    written += [
        (f"job class {name}", {"job": name, "schedule": job_class.schedule})
        for name, job_class in runtime.registry.items()
        if job_class.schedule is not None
    ]
    for answer in runtime.pm.hook.jobkit_add_schedules(settings=settings):
        written += [
            (f"a plugin's jobkit_add_schedules, entry {number}", raw)
            for number, raw in enumerate(answer or (), 1)
        ]
    return written


def load_entries(runtime: Runtime) -> list[ScheduleEntry]:
    """Every schedule entry, checked; raise ``ScheduleError`` naming the first bad entry, its
    position and text, and what is wrong. The ``imports`` setting's jobs must be imported."""
    entries: list[ScheduleEntry] = []
    origins: dict[str, str] = {}
    for origin, raw in written_entries(runtime):
        try:
            entry = _read_entry(raw, origin, runtime)
        except (JobkitError, TypeError, ValueError) as error:
            raise ScheduleError(f"{origin} ({_show(raw)}): {error}") from error
        if entry.key in origins:
            raise ScheduleError(
                f"{origin} ({_show(raw)}) has the key {entry.key!r} of {origins[entry.key]}: "
                f"two entries would share their ticks; give one a key of its own"
            )
        origins[entry.key] = origin
        entries.append(entry)
    return entries


def _show(raw: Any) -> str:
    if isinstance(raw, list | tuple):
        return json.dumps([str(item) if isinstance(item, Schedule) else item for item in raw])
    if isinstance(raw, Mapping):
        return ", ".join(f"{key}={value!s}" for key, value in raw.items())
    return repr(raw)


def _read_entry(raw: Any, origin: str, runtime: Runtime) -> ScheduleEntry:
    if isinstance(raw, list | tuple):
        if len(raw) != 2:
            raise ScheduleError(
                f"a pair is [job, schedule], got {len(raw)} items; write a table "
                f"(job = ..., schedule = ..., queue = ...) to give options"
            )
        raw = {"job": raw[0], "schedule": raw[1]}
    if not isinstance(raw, Mapping):
        raise ScheduleError("an entry is a [job, schedule] pair or a table")
    unknown = sorted(set(raw) - {"job", "schedule", *ENTRY_OPTIONS})
    if unknown:
        raise ScheduleError(
            f"unknown option {unknown[0]!r}; an entry has job, schedule and optionally "
            f"{', '.join(ENTRY_OPTIONS)}"
        )
    for required in ("job", "schedule"):
        if required not in raw:
            raise ScheduleError(f"{required} is missing")

    job = _text(raw["job"], "job")
    if job.startswith(COMMAND_PREFIX) and not job.removeprefix(COMMAND_PREFIX).strip():
        raise ScheduleError("a cmd: entry needs a shell command after 'cmd:'")
    if not job.startswith(COMMAND_PREFIX) and job not in runtime.registry:
        registered = [name for name in runtime.registry if name != COMMAND_JOB_NAME]
        raise ScheduleError(
            f"no job is registered as {job!r} (registered: {', '.join(registered) or 'none'}; "
            f"is its module in the imports setting?)"
        )

    schedule, timezone, schedule_text = _read_schedule(raw, runtime)
    catch_up = raw.get("catch_up", "none")
    if catch_up not in CATCH_UP:
        raise ScheduleError(f"catch_up must be 'none' or 'latest', got {catch_up!r}")
    kwargs = raw.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ScheduleError(f"kwargs must be a table of keyword arguments, got {kwargs!r}")
    if kwargs and job.startswith(COMMAND_PREFIX):
        raise ScheduleError("a cmd: entry takes no kwargs")
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not _QUEUE_NAME.match(queue)):
        raise ScheduleError(
            f"queue must be a name of letters, digits and _.:- (at most 128 characters), "
            f"got {queue!r}"
        )
    key = raw.get("key")
    if key is None:
        key = _default_key(job, schedule_text, timezone, kwargs)
    elif not isinstance(key, str) or not key.strip():
        raise ScheduleError(f"key must be a non-empty string, got {key!r}")
    entry = ScheduleEntry(
        key=key,
        job=job,
        schedule=schedule,
        timezone=timezone,
        queue=queue,
        priority=raw.get("priority"),
        retries=raw.get("retries"),
        catch_up=catch_up,
        kwargs=dict(kwargs),
        origin=origin,
    )
    # Make the job and its request as a tick would, so parameters that do not fit __init__, or
    # cannot be stored, or a bad priority stop the worker now rather than fail every tick.
    job_instance = _made(entry, runtime.registry)
    runtime.build_request(job_instance, **entry.enqueue_options())
    return entry


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScheduleError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _read_schedule(raw: Mapping[str, Any], runtime: Runtime) -> tuple[Recurrence, str, str]:
    """The entry's schedule, its time zone, and its text as written."""
    given = raw["schedule"]
    if isinstance(given, Recurrence):
        if "timezone" in raw:
            raise ScheduleError(
                "a Schedule object has its own time zone: pass it to Schedule(timezone=...) "
                "instead of the entry's timezone"
            )
        zone = getattr(given, "timezone", None)
        return given, str(zone) if zone is not None else runtime.settings.timezone, str(given)
    spec = _text(given, "schedule")
    timezone = raw.get("timezone", runtime.settings.timezone)
    if not isinstance(timezone, str):
        raise ScheduleError(
            f"timezone must be an IANA name such as 'Europe/Berlin', got {timezone!r}"
        )
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown timezone {timezone!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    schedule = runtime.pm.hook.jobkit_parse_schedule(spec=spec, timezone=timezone)
    if schedule is None:
        raise ScheduleError(f"no plugin reads the schedule {spec!r}")
    return schedule, timezone, spec


def _made(entry: ScheduleEntry, registry: JobRegistry) -> Job:
    try:
        return entry.make_job(registry)
    except TypeError as error:
        raise ScheduleError(
            f"the job cannot be made from kwargs {dict(entry.kwargs)}: {error}"
        ) from error


def _default_key(job: str, schedule: str, timezone: str, kwargs: Mapping[str, Any]) -> str:
    """The job and schedule as written: stable across restarts and hosts, and new (with no
    ticks to catch up) when either changes."""
    key = f"{job} {schedule}"
    if timezone != "UTC":
        key += f" {timezone}"
    if kwargs:
        key += f" {json.dumps(kwargs, sort_keys=True, default=str)}"
    return key


# The scheduler ----------------------------------------------------------------------------------


class Scheduler(PeriodicService):
    """The worker service that enqueues the entries' ticks (see the module docstring); after a
    failure it tries again every ``RETRY_DELAY`` seconds."""

    name = "scheduler"

    def __init__(self, runtime: Runtime, entries: Sequence[ScheduleEntry]):
        super().__init__(RETRY_DELAY, at_start=True)
        self.runtime = runtime
        self.entries = list(entries)
        self._due: dict[str, datetime.datetime] = {}
        self._busy: dict[str, datetime.datetime] = {}
        """The tick of each entry last found busy (said once, not at every retry)."""

    def tick(self) -> float:
        """Enqueue every tick that is due by the database's clock; return the seconds until
        the next one (at most ``MAX_SLEEP``)."""
        store = self.runtime.store
        now = store.database_now()
        if not self._due:
            self._due = self._first_ticks(now)
        busy: set[str] = set()
        for entry in self.entries:
            if self._due[entry.key] > now:
                continue
            latest = entry.schedule.last_fire_at_or_before(now)
            late = (now - latest).total_seconds()
            if late <= ON_TIME_GRACE or entry.catch_up == "latest":
                if not self._enqueue(entry, latest):
                    busy.add(entry.key)  # due still: tried again in BUSY_RETRY
                    continue
            else:
                logger.warning(
                    "schedule %r: tick %s missed (seen %.0f s late; catch_up = 'latest' would "
                    "enqueue it)",
                    entry.key,
                    latest.isoformat(),
                    late,
                )
            self._due[entry.key] = entry.schedule.next(latest)
        sleep = MAX_SLEEP
        for key, due in self._due.items():
            if key not in busy:
                sleep = min(sleep, max(0.0, (due - now).total_seconds()) + 0.001)
        return min(sleep, BUSY_RETRY) if busy else sleep

    def _first_ticks(self, now: datetime.datetime) -> dict[str, datetime.datetime]:
        """The tick each entry waits for first: the latest past one if it may still be
        enqueued (on time, or a catch-up), else the next one."""
        catching_up = [entry.key for entry in self.entries if entry.catch_up == "latest"]
        recorded = self.runtime.store.last_ticks(catching_up) if catching_up else {}
        due = {}
        for entry in self.entries:
            latest = entry.schedule.last_fire_at_or_before(now)
            behind = entry.key in recorded and recorded[entry.key] < latest
            on_time = (now - latest).total_seconds() <= ON_TIME_GRACE
            due[entry.key] = latest if behind or on_time else entry.schedule.next(now)
        return due

    def _enqueue(self, entry: ScheduleEntry, fire_at: datetime.datetime) -> bool:
        """Record the tick and enqueue its job in one transaction, unless another worker did;
        False when another transaction is recording it still (try again shortly)."""
        runtime = self.runtime
        job = entry.make_job(runtime.registry)
        try:
            with runtime.store.transaction() as connection:
                if not runtime.store.record_tick(
                    key=entry.key, fire_at=fire_at, connection=connection
                ):
                    return True
                request = runtime.enqueue(
                    job,
                    connection=connection,
                    source=f"schedule:{entry.key}@{fire_at.isoformat()}",
                    **entry.enqueue_options(),
                )
        except TickBusy as busy:
            if self._busy.get(entry.key) != fire_at:  # said once a tick
                self._busy[entry.key] = fire_at
                logger.info(
                    "schedule %r: tick %s: %s; trying again every %g s",
                    entry.key,
                    fire_at.isoformat(),
                    busy,
                    BUSY_RETRY,
                )
            return False
        if request is None:
            logger.info(
                "schedule %r: tick %s not enqueued: should_enqueue() declined it",
                entry.key,
                fire_at.isoformat(),
            )
        else:
            logger.info(
                "schedule %r: tick %s enqueued as %s", entry.key, fire_at.isoformat(), request.id
            )
        return True


# Hooks ------------------------------------------------------------------------------------------


@hookimpl
def jobkit_register_jobs(registry: JobRegistry) -> None:
    registry.register(ScheduledCommand, COMMAND_JOB_NAME)


@hookimpl(trylast=True)
def jobkit_parse_schedule(spec: str, timezone: str) -> Schedule:
    return Schedule.from_cron(spec, timezone=timezone)


@hookimpl
def jobkit_add_worker_services(runtime: Runtime, worker_id: uuid.UUID) -> list[Scheduler]:
    if not runtime.settings.worker_scheduler:
        # Unchecked: the entries may name jobs this worker does not import (another codebase's).
        if written := written_entries(runtime):
            logger.info(
                "scheduler off (--no-scheduler): %d entries left to other workers", len(written)
            )
        return []
    entries = load_entries(runtime)
    if not entries:
        return []
    logger.info("scheduler: %d entries", len(entries))
    return [Scheduler(runtime, entries)]


@hookimpl
def jobkit_add_commands(cli: click.Group) -> None:
    cli.add_command(_schedule_command())


# The `jobkit schedule` command -------------------------------------------------------------------


def _schedule_command() -> click.Command:
    """The ``jobkit schedule`` command, made when a command line is: click is imported there,
    not in every process that loads the plugin (each pool child, an app that enqueues)."""
    import click

    @click.command("schedule")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def schedule_command(as_json: bool) -> None:
        """List the schedule entries: key, job, schedule, time zone, the last tick enqueued and
        the next three, by the database's clock."""
        try:
            listing = describe_schedule(load_settings())
        except JobkitError as error:
            raise click.ClickException(str(error)) from error
        if as_json:
            click.echo(json.dumps(listing, indent=2))
            return
        if not listing:
            click.echo(
                "no schedule entries: add them to the schedule setting, or give a job class a "
                "schedule attribute"
            )
            return
        for item in listing:
            click.echo(item["key"])
            click.echo(f"    job        {item['job']}")
            click.echo(f"    schedule   {item['schedule']} ({item['timezone']})")
            options = [
                f"{name}={item[name]}"
                for name in ("queue", "priority", "retries")
                if item[name] is not None
            ]
            if item["catch_up"] != "none":
                options.append(f"catch_up={item['catch_up']}")
            if item["kwargs"]:
                options.append(f"kwargs={json.dumps(item['kwargs'])}")
            if options:
                click.echo(f"    options    {' '.join(options)}")
            click.echo(f"    last tick  {item['last_tick'] or 'never'}")
            click.echo(f"    next       {', '.join(item['next'])}")

    return schedule_command


def describe_schedule(settings: Settings) -> list[dict[str, Any]]:
    """What ``jobkit schedule`` shows, as plain data."""
    runtime = Runtime.from_settings(settings)
    runtime.import_jobs()
    return describe_entries(runtime)


@hookimpl(trylast=True)
def jobkit_schedule_entries(runtime: Runtime) -> list[dict[str, Any]]:
    if not runtime.job_modules:
        runtime.import_jobs()  # the job classes' schedule attributes
    return describe_entries(runtime)


def describe_entries(runtime: Runtime) -> list[dict[str, Any]]:
    """Every schedule entry of ``runtime`` as plain data, with its last tick and next three
    firings by the database's clock."""
    entries = load_entries(runtime)
    if not entries:
        return []
    store = runtime.store
    now = store.database_now()
    last = store.last_ticks([entry.key for entry in entries])
    return [
        {
            "key": entry.key,
            "job": entry.job,
            "schedule": str(entry.schedule),
            "timezone": entry.timezone,
            "queue": entry.queue,
            "priority": entry.priority,
            "retries": entry.retries,
            "catch_up": entry.catch_up,
            "kwargs": dict(entry.kwargs),
            "origin": entry.origin,
            "last_tick": _local(last[entry.key], entry) if entry.key in last else None,
            "next": [_local(moment, entry) for moment in _firings(entry.schedule, now, 3)],
        }
        for entry in entries
    ]


def _firings(
    schedule: Recurrence, after: datetime.datetime, count: int
) -> Iterable[datetime.datetime]:
    for _ in range(count):
        after = schedule.next(after)
        yield after


def _local(moment: datetime.datetime, entry: ScheduleEntry) -> str:
    return moment.astimezone(zoneinfo.ZoneInfo(entry.timezone)).isoformat()
