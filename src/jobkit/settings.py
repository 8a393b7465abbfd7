"""Settings: one attrs class, read from defaults < a config file < settings sources (a framework's
configuration) < ``JOBKIT_*`` environment variables < command-line flags, and checked at start-up.

The config file is the one ``JOBKIT_CONFIG`` (or ``jobkit --config``) names, or else the nearest
``jobkit.toml``, or ``pyproject.toml`` with a ``[tool.jobkit]`` table, found walking up from the
current directory (as pytest and ruff find theirs); its directory is the project's. Plugins
declare their own sections through ``jobkit_settings_defaults``; a section is a table in the file
(``[tool.jobkit.redis_lock]``) and ``JOBKIT_REDIS_LOCK_URL``-style variables. Every bad value
fails naming the setting, where it came from and what was expected.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from jobkit.errors import SettingsError
from jobkit.records import FlowLimit, LimitScope
from jobkit.redaction import redact_credentials

logger = logging.getLogger("jobkit.settings")

ENV_PREFIX = "JOBKIT_"
CONFIG_ENV = "JOBKIT_CONFIG"
"""Names the config file, instead of looking for one (``jobkit --config`` sets it)."""
# Environment variables that configure tooling rather than settings.
NON_SETTING_ENV = {
    CONFIG_ENV,
    "JOBKIT_DISABLE_PLUGIN_AUTOLOAD",
    "JOBKIT_TEST_DATABASE_URL",
    "JOBKIT_TRACE_PLUGINS",
}
SETTINGS_SOURCES_GROUP = "jobkit.settings_sources"
"""The entry-point group of settings sources: callables that take the environment and return
``(where, {setting: value})`` or None, read between the config file and the environment (e.g.
``jobkit-django`` reads ``settings.JOBKIT`` when ``DJANGO_SETTINGS_MODULE`` is set)."""
PLAIN_ENV_PREFIXES = ("JOBS_", "PLAIN_JOBS_")
"""How plain.jobs' settings are named in an environment (``JOBS_HEARTBEAT_TIMEOUT``, and with
plain's prefix for settings read from the environment, ``PLAIN_JOBS_HEARTBEAT_TIMEOUT``): jobkit
does not read them, and warns that it does not."""
MAX_SCHEMA_LENGTH = 63 - len("_requests")
"""The longest schema name: PostgreSQL identifiers hold 63 bytes, and the longest one jobkit
derives from the schema is the wake-up channel of the Postgres store, ``{schema}_requests``."""
# \Z, not $: "$" also matches before a trailing newline, so "jobkit\n" would pass.
_SCHEMA_NAME = re.compile(rf"^[a-z_][a-z0-9_]{{0,{MAX_SCHEMA_LENGTH - 1}}}\Z")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
LOG_FORMATS = ("text", "json")
PROJECT_PATHS = ("embedded_dir",)
"""Settings that name a directory. Relative ones read from the config file, and their defaults
when there is a config file, are taken from the file's directory (the project's), so a command
run from a subfolder of the project finds the same directory; relative ones from the environment
or a flag are taken from the current directory."""


@attrs.frozen(kw_only=True)
class Settings:
    """Every jobkit setting, with its default."""

    database_url: str | None = attrs.field(
        default=None, repr=lambda url: repr(url if url is None else redact_credentials(url))
    )
    """``postgresql://...``; unset starts the embedded database (the ``embedded`` extra)."""
    schema: str = "jobkit"
    """The Postgres schema that holds jobkit's tables."""
    imports: list[str] = attrs.field(factory=list)
    """Modules that define jobs; workers import them at start-up."""
    discover_jobs: list[str] = attrs.field(factory=list)
    """Packages whose ``jobs`` modules workers import at start-up: ``pkg.jobs`` and
    ``pkg.<subpackage>.jobs``, as plain finds ``app/jobs.py`` and ``app/<pkg>/jobs.py``."""
    middleware: list[str] = attrs.field(factory=list)
    """Dotted paths of middleware classes, outermost first."""
    results_retention: int = 604800
    """Seconds to keep results; ``jobkit clear`` and the workers delete older ones. 0 keeps all."""
    error_max_length: int = 65536
    """Characters of an attempt's error (its traceback) kept in its result; a longer one keeps
    its head and its tail and says how much was cut."""
    output_max_length: int = 65536
    """Bytes of JSON a job's output (what ``run()`` returns) may take in its result; a longer
    one makes the attempt ERRORED (``OutputError``), never a cut, invalid JSON."""
    heartbeat_interval: float = 60
    """Seconds between a worker's heartbeats."""
    heartbeat_timeout: float = 300
    """Seconds without a heartbeat after which a worker counts as dead."""
    shutdown_timeout: float = 25
    """Seconds running jobs get to finish after SIGTERM/SIGINT (``--shutdown-timeout``) before
    they are terminated, recorded CANCELLED and enqueued again. Keep it below the time your
    supervisor waits before it kills the worker (Docker 10 s, Kubernetes 30 s, systemd 90 s)."""
    worker_queues: list[str] = attrs.field(factory=lambda: ["default"])
    """Queues a worker claims from (``--queue``)."""
    worker_max_processes: int | None = None
    """Pool children per worker (``--max-processes``); unset: the CPUs available."""
    worker_max_jobs_per_process: int | None = None
    """Jobs a child runs before it is replaced (``--max-jobs-per-process``); unset: no limit."""
    worker_max_pending_per_process: int = 1000
    """Jobs claimed ahead per child (``--max-pending-per-process``)."""
    worker_async_concurrency: int = 100
    """Async jobs (``async def run``) a child runs at once (``--async-concurrency``)."""
    worker_stats_every: float = 60
    """Seconds between stats log lines (``--stats-every``); 0 turns them off."""
    worker_poll_interval: float = 2.0
    """Seconds between claims when no wake-up notification arrives."""
    worker_rate_limit: float = 0
    """Seconds at least between two claims of one worker, which then claims one job at a time
    (``--rate-limit``; django-db-queue's ``--rate_limit``); 0: no gap."""
    worker_scheduler: bool = True
    """Whether a worker runs the scheduler (``--scheduler/--no-scheduler``)."""
    schedule: list[Any] = attrs.field(factory=list)
    """Jobs to enqueue on a schedule: ``(job, schedule)`` pairs or tables with options (see
    ``docs/scheduling.md``); read by the scheduler, which checks each entry at worker start-up."""
    limits: list[Any] = attrs.field(factory=list)
    """Flow limits every worker's claim keeps across the fleet: tables naming one ``queue``,
    ``job_name`` or ``concurrency_key``, with ``max_running`` and/or ``max_starts`` and ``per``
    seconds (see ``docs/flow-control.md``); read with ``flow_limits()``."""
    timezone: str = "UTC"
    """The IANA time zone that schedule entries without a ``timezone`` of their own follow."""
    plugins: list[str] = attrs.field(factory=list)
    """Extra plugin modules to register, by dotted path."""
    disable_plugins: list[str] = attrs.field(factory=list)
    """Plugins to block, by name (``jobkit plugins --all`` lists the names)."""
    log_format: str = "text"
    """How ``jobkit worker`` (and its pool children) and ``jobkit run`` write log lines
    (``--log-format``): ``text``, or ``json``, one object per line."""
    embedded: bool = True
    """Whether a process with no ``database_url`` may fall back to the embedded database; false
    (production) makes it stop instead, saying how to set ``JOBKIT_DATABASE_URL``."""
    embedded_dir: str = ".jobkit"
    """Where the embedded database keeps its data; relative to the project's directory (the
    config file's) when it comes from the file or is the default, else to the current one."""
    sections: dict[str, Any] = attrs.field(factory=dict, repr=False)
    """Plugins' settings sections, by name; read them with ``section()``."""
    config_file: str | None = attrs.field(default=None, repr=False)
    """The file the settings were read from, if any."""

    def flow_limits(self) -> list[FlowLimit]:
        """The ``limits`` setting as records (checked when the settings were loaded)."""
        return parse_limits(self.limits)

    def section(self, name: str) -> Any:
        """A plugin's settings section, as declared through ``jobkit_settings_defaults``."""
        try:
            return self.sections[name]
        except KeyError:
            raise SettingsError(
                f"no settings section {name!r}: is the plugin that declares it installed and "
                f"not in disable_plugins?"
            ) from None


def _core_fields() -> dict[str, attrs.Attribute]:
    attrs.resolve_types(Settings)
    return {
        field.name: field
        for field in attrs.fields(Settings)
        if field.name not in ("sections", "config_file")
    }


# Checks beyond the type: each returns what was expected, or None when the value is fine.
def _positive(value: Any) -> str | None:
    fine = value is None or (value > 0 and math.isfinite(value))
    return None if fine else "a number greater than 0"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 and math.isfinite(value) else "a number of seconds, 0 or more"


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value >= minimum else f"an integer of {minimum} or more"

    return check


def _identifier(value: str) -> str | None:
    if _SCHEMA_NAME.match(value):
        return None
    return (
        f"a lower-case SQL identifier (letters, digits and _, at most {MAX_SCHEMA_LENGTH} "
        f"characters: with _requests added it must fit PostgreSQL's 63)"
    )


def _queue_names(value: list[str]) -> str | None:
    if value and all(_QUEUE_NAME.match(name) for name in value):
        return None
    return "one or more queue names of letters, digits and _.:- (at most 128 characters each)"


def _time_zone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as 'UTC' or 'Europe/Berlin'"
    return None


def _schedule_entries(value: list[Any]) -> str | None:
    if all(isinstance(entry, list | tuple | dict) for entry in value):
        return None
    return "a list of [job, schedule] pairs or tables with job and schedule keys"


_LIMIT_KEYS = {scope.value for scope in LimitScope} | {"max_running", "max_starts", "per"}


def parse_limits(entries: list[Any]) -> list[FlowLimit]:
    """The flow limits of the ``limits`` setting; a ValueError says which entry is wrong and
    why."""
    limits: list[FlowLimit] = []
    for number, entry in enumerate(entries, start=1):
        try:
            limit = _parse_limit(entry)
        except ValueError as error:
            raise ValueError(f"entry {number} {error}") from None
        if any(known.key == limit.key for known in limits):
            raise ValueError(f"entry {number} limits {limit.key} again: merge the two entries")
        limits.append(limit)
    return limits


def _parse_limit(entry: Any) -> FlowLimit:
    if not isinstance(entry, dict):
        raise ValueError("is not a table")
    unknown = sorted(set(entry) - _LIMIT_KEYS)
    if unknown:
        raise ValueError(
            f"has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(_LIMIT_KEYS))}"
        )
    scopes = [scope for scope in LimitScope if scope.value in entry]
    if len(scopes) != 1:
        raise ValueError("must name exactly one of queue, job_name or concurrency_key")
    (scope,) = scopes
    name = entry[scope.value]
    if not isinstance(name, str) or not name:
        raise ValueError(f"must name its {scope.value} with a non-empty string")
    counts = {}
    for key in ("max_running", "max_starts"):
        value = entry.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"must have {key} as an integer of 1 or more")
        counts[key] = value
    if counts["max_running"] is None and counts["max_starts"] is None:
        raise ValueError("must set max_running, or max_starts and per")
    per = entry.get("per")
    if (counts["max_starts"] is None) != (per is None):
        raise ValueError(
            "must set max_starts and per together (at most max_starts per per seconds)"
        )
    if per is not None and (
        isinstance(per, bool) or not isinstance(per, int | float) or not (0 < per < math.inf)
    ):
        raise ValueError("must have per as a number of seconds greater than 0")
    return FlowLimit(
        scope=scope,
        name=name,
        max_running=counts["max_running"],
        max_starts=counts["max_starts"],
        per=None if per is None else float(per),
    )


def _limit_entries(value: list[Any]) -> str | None:
    try:
        parse_limits(value)
    except ValueError as error:
        return f"a list of flow limits (see docs/flow-control.md), but {error}"
    return None


def _log_format(value: str) -> str | None:
    return None if value in LOG_FORMATS else " or ".join(map(repr, LOG_FORMATS))


def _database_url(value: str | None) -> str | None:
    if value is None or re.match(r"^[a-z][a-z0-9+.-]*://", value):
        return None
    return "a URL such as postgresql://user@host:5432/dbname"


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "database_url": _database_url,
    "schema": _identifier,
    "results_retention": _not_negative,
    "error_max_length": _at_least(1000),
    "output_max_length": _at_least(1),
    "heartbeat_interval": _positive,
    "heartbeat_timeout": _positive,
    "shutdown_timeout": _not_negative,
    "worker_queues": _queue_names,
    "worker_max_processes": _positive,
    "worker_max_jobs_per_process": _positive,
    "worker_max_pending_per_process": _positive,
    "worker_async_concurrency": _positive,
    "worker_stats_every": _not_negative,
    "worker_poll_interval": _positive,
    "worker_rate_limit": _not_negative,
    "limits": _limit_entries,
    "timezone": _time_zone,
    "schedule": _schedule_entries,
    "log_format": _log_format,
}


@attrs.frozen
class _Value:
    value: Any
    source: str


def load_settings(
    overrides: Mapping[str, _Value | Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read settings from the config file, the environment and ``overrides`` (flags).

    ``overrides`` maps setting names to values (or to ``flag(value, "--flag")`` to name the
    flag in errors); None values are ignored so unset flags do not override anything.
    """
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    config_file = find_config_file(cwd, environ)
    table = read_config_table(config_file) if config_file else {}
    fields = _core_fields()

    raw: dict[str, _Value] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            continue  # a plugin's section, read by with_plugin_sections
        if key not in fields:
            raise SettingsError(
                f"unknown setting {key!r} in {config_file}; known settings: {', '.join(fields)}"
            )
        raw[key] = _Value(value, str(config_file))
    for source, values in settings_sources(environ):
        for key, value in values.items():
            if isinstance(value, Mapping):
                raise SettingsError(
                    f"{source} sets {key!r} to a table, as for a plugin's settings section; "
                    f"sections are read only from the config file ([tool.jobkit.{key}]) and "
                    f"JOBKIT_{key.upper()}_* variables"
                )
            if key not in fields:
                raise SettingsError(
                    f"unknown setting {key!r} in {source}; known settings: {', '.join(fields)}"
                )
            raw[key] = _Value(value, source)
    if config_file is not None:
        for name in PROJECT_PATHS:
            item = raw.get(name, _Value(fields[name].default, "the default"))
            if isinstance(item.value, str) and not Path(item.value).is_absolute():
                raw[name] = _Value(str(config_file.parent / item.value), item.source)
    for name in fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            raw[name] = _Value(_from_env(environ[env_name], fields[name].type), env_name)
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise SettingsError(f"unknown setting {name!r}")
        value = value if isinstance(value, _Value) else _Value(value, f"the {name} argument")
        if value.value is not None:
            raw[name] = value

    values = {name: _structure(name, fields[name].type, item) for name, item in raw.items()}
    settings = Settings(**values, config_file=str(config_file) if config_file else None)
    if settings.heartbeat_timeout <= settings.heartbeat_interval:
        given = raw.get("heartbeat_timeout", raw.get("heartbeat_interval"))
        raise SettingsError(
            f"setting heartbeat_timeout ({settings.heartbeat_timeout}) must be greater than "
            f"heartbeat_interval ({settings.heartbeat_interval})"
            + (f"; check {given.source}" if given else "")
        )
    return settings


def settings_sources(environ: Mapping[str, str]) -> list[tuple[str, Mapping[str, Any]]]:
    """The answers of the installed settings sources (``SETTINGS_SOURCES_GROUP``), by entry-point
    name; none when ``JOBKIT_DISABLE_PLUGIN_AUTOLOAD`` is set, as for plugins. A source that
    fails is a ``SettingsError`` naming it."""
    if environ.get("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return []
    answers = []
    entry_points = importlib.metadata.entry_points(group=SETTINGS_SOURCES_GROUP)
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        try:
            answer = entry_point.load()(environ)
        except SettingsError:
            raise
        except Exception as error:
            raise SettingsError(
                f"settings source {entry_point.name!r} ({entry_point.value}) failed: {error!r}"
            ) from error
        if answer is not None:
            answers.append(answer)
    return answers


def flag(value: Any, name: str) -> _Value:
    """A command-line flag's value, named so errors can point at the flag."""
    return _Value(value, name)


def with_plugin_sections(
    settings: Settings,
    declared: Iterable[Mapping[str, type]],
    *,
    environ: Mapping[str, str] | None = None,
    undeclared_allowed: bool = False,
) -> Settings:
    """Read the sections plugins declared (``jobkit_settings_defaults`` answers) into
    ``settings.sections``, from the config file ``load_settings`` found and the environment; a
    section table in the file that no plugin declared is an error, unless
    ``undeclared_allowed`` (a plugin that failed to load may be the one that declares it)."""
    environ = os.environ if environ is None else environ
    config_file = settings.config_file
    table = read_config_table(Path(config_file)) if config_file else {}
    classes: dict[str, type] = {}
    for answer in declared:
        classes.update(answer)
    for key, value in table.items():
        if isinstance(value, dict) and key not in classes and not undeclared_allowed:
            raise SettingsError(
                f"settings section [{key}] in {config_file} is not declared by any plugin; "
                f"declared sections: {', '.join(sorted(classes)) or 'none'}"
            )
    sections = {}
    known_env = {ENV_PREFIX + name.upper() for name in _core_fields()} | NON_SETTING_ENV
    for name, section_class in classes.items():
        attrs.resolve_types(section_class)
        known_env |= {
            f"{ENV_PREFIX}{name.upper()}_{field.name.upper()}"
            for field in attrs.fields(section_class)
        }
        values, sources = {}, {}
        file_table = table.get(name, {})
        for field in attrs.fields(section_class):
            env_name = f"{ENV_PREFIX}{name.upper()}_{field.name.upper()}"
            if env_name in environ:
                item = _Value(_from_env(environ[env_name], field.type), env_name)
            elif field.name in file_table:
                item = _Value(file_table[field.name], f"[{name}] in {config_file}")
            else:
                continue
            values[field.name] = _structure(f"{name}.{field.name}", field.type, item)
            sources[field.name] = item.source
        unknown = set(file_table) - {field.name for field in attrs.fields(section_class)}
        if unknown:
            raise SettingsError(
                f"unknown setting {name}.{sorted(unknown)[0]} in {config_file}; "
                f"section {name} has: {', '.join(f.name for f in attrs.fields(section_class))}"
            )
        try:
            sections[name] = section_class(**values)
        except (TypeError, ValueError) as error:
            # An attrs validator names the field in its arguments: name its source too.
            field_name = next((a.name for a in error.args if isinstance(a, attrs.Attribute)), "")
            if field_name in sources:
                problem = redact_credentials(str(error.args[0]), *map(str, values.values()))
                raise SettingsError(
                    f"setting {name}.{field_name} (from {sources[field_name]}): {problem}"
                ) from None
            problem = redact_credentials(str(error), *map(str, values.values()))
            raise SettingsError(f"settings section {name}: {problem}") from None
    for env_name in sorted(key for key in environ if key.startswith(ENV_PREFIX)):
        if env_name not in known_env:
            logger.warning("%s is not a jobkit setting and is ignored (a typo?)", env_name)
    plain_names = sorted(key for key in environ if key.startswith(PLAIN_ENV_PREFIXES))
    if plain_names:
        logger.warning("%s", _plain_settings_ignored(plain_names))
    return attrs.evolve(settings, sections=sections)


def _plain_settings_ignored(env_names: list[str]) -> str:
    """One warning for every plain.jobs variable set, with the ``JOBKIT_*`` one to set instead
    (plain's names are jobkit's with another prefix)."""
    fields = _core_fields()
    replaced, unknown = [], []
    for env_name in env_names:
        name = env_name.removeprefix("PLAIN_").removeprefix("JOBS_").lower()
        if name in fields:
            replaced.append(f"{ENV_PREFIX}{name.upper()} instead of {env_name}")
        else:
            unknown.append(env_name)
    text = "plain.jobs' settings are ignored: jobkit reads JOBKIT_* variables"
    if replaced:
        text += "; set " + ", ".join(replaced)
    if unknown:
        text += f"; {', '.join(unknown)} {'has' if len(unknown) == 1 else 'have'} no jobkit "
        text += "equivalent (docs/settings.md lists the settings)"
    return text


def find_config_file(cwd: Path, environ: Mapping[str, str]) -> Path | None:
    """The config file: the one ``JOBKIT_CONFIG`` names (relative to ``cwd``), or else the
    nearest, walking up from ``cwd``, of a ``jobkit.toml`` or a ``pyproject.toml`` with a
    ``[tool.jobkit]`` table (in one directory, ``jobkit.toml`` wins). None when there is none."""
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        path = Path(os.path.normpath(cwd / named))
        if not path.is_file():
            raise SettingsError(
                f"{CONFIG_ENV} (or jobkit --config) names {path}, which is not a file; name a "
                f"jobkit.toml, or a pyproject.toml with a [tool.jobkit] table"
            )
        return path
    for directory in (cwd, *cwd.parents):
        if (directory / "jobkit.toml").is_file():
            return directory / "jobkit.toml"
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            searched = (
                f"jobkit reads each pyproject.toml from {cwd} up, looking for [tool.jobkit]; "
                f"{CONFIG_ENV} names the config file instead"
            )
            if _tool_jobkit(_read_toml(pyproject, searched)) is not None:
                return pyproject
    return None


def read_config_table(path: Path) -> dict[str, Any]:
    """The settings table of a config file: ``[tool.jobkit]`` of a ``pyproject.toml``, the whole
    document of any other file (``jobkit.toml``)."""
    document = _read_toml(path)
    if path.name != "pyproject.toml":
        return document
    table = _tool_jobkit(document)
    if table is None:
        raise SettingsError(
            f"{path} has no [tool.jobkit] table: add one, or name another file in {CONFIG_ENV}"
        )
    return table


def _read_toml(path: Path, searched: str = "") -> dict[str, Any]:
    why = f" ({searched})" if searched else ""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not valid TOML: {error}{why}") from error
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror}{why}") from error


def _tool_jobkit(document: dict[str, Any]) -> dict[str, Any] | None:
    return document.get("tool", {}).get("jobkit")


def _from_env(text: str, field_type: Any) -> Any:
    """Environment variables are strings: lists are comma-separated (a list of anything else
    is JSON), empty means unset."""
    text = text.strip()
    if field_type == list[Any]:
        try:
            return json.loads(text or "[]")
        except json.JSONDecodeError as error:
            return _NotJson(text, str(error))
    if _is_list(field_type):
        return [item.strip() for item in text.split(",") if item.strip()]
    if text == "" and _allows_none(field_type):
        return None
    return text


@attrs.frozen
class _NotJson:
    """An environment variable that should have held JSON, kept to name it in the error."""

    text: str
    problem: str

    def __repr__(self) -> str:
        return f"{self.text!r}, which is not JSON ({self.problem})"


def _is_list(field_type: Any) -> bool:
    return typing.get_origin(field_type) is list


def _allows_none(field_type: Any) -> bool:
    return type(None) in typing.get_args(field_type)


_converter = cattrs.Converter()


def _structure_number(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        value = value.strip()
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        return int(value) if not isinstance(value, str) else int(value, 10)
    return float(value)


_converter.register_structure_hook(int, lambda value, _: _structure_number(value, int))
_converter.register_structure_hook(float, lambda value, _: _structure_number(value, float))


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


_converter.register_structure_hook(str, _structure_str)


def _structure_str_list(value: Any, _: type) -> list[str]:
    # cattrs would iterate a string into its characters: imports = "app.jobs" -> ["a", "p", ...]
    if not isinstance(value, list):
        raise ValueError("not a list")
    return [_structure_str(item, str) for item in value]


_converter.register_structure_hook_func(lambda cls: cls == list[str], _structure_str_list)


def _structure_any_list(value: Any, _: type) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ValueError("not a list")
    return list(value)


_converter.register_structure_hook_func(lambda cls: cls == list[Any], _structure_any_list)

_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLEANS |= {"false": False, "0": False, "no": False, "off": False}


def _structure_bool(value: Any, _: type) -> bool:
    # cattrs would take bool("false") for True.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise ValueError("not a boolean")


_converter.register_structure_hook(bool, _structure_bool)


def _expected(field_type: Any) -> str:
    if field_type == list[Any]:
        return "a list (JSON in an environment variable)"
    if _is_list(field_type):
        return "a list of strings (comma-separated in an environment variable)"
    args = [arg for arg in typing.get_args(field_type) if arg is not type(None)]
    base = args[0] if args else field_type
    described = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    text = described.get(base, getattr(base, "__name__", str(base)))
    return text + (" or empty" if _allows_none(field_type) else "")


def _structure(name: str, field_type: Any, item: _Value) -> Any:
    try:
        value = _converter.structure(item.value, field_type)
    except (cattrs.BaseValidationError, ValueError, TypeError) as error:
        raise SettingsError(
            f"setting {name} (from {item.source}) must be {_expected(field_type)}, "
            f"got {_shown(item.value)}"
        ) from error
    check = CHECKS.get(name)
    problem = check(value) if check else None
    if problem:
        raise SettingsError(
            f"setting {name} (from {item.source}) must be {problem}, got {_shown(value)}"
        )
    return value


def _shown(value: Any) -> str:
    """A bad value as an error shows it: its repr, with any password in it masked (a
    malformed database URL's too)."""
    return redact_credentials(repr(value), value if isinstance(value, str) else None)
