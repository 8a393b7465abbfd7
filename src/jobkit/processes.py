"""What jobkit asks of the processes it starts: pool children, and the shell commands of
``cmd:`` schedule entries; and the log formats of the worker, its pool children and ``jobkit
run``."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

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
"""The text log format of ``jobkit worker``, its pool children and ``jobkit run``.
``jobkit_context`` is empty unless a plugin sets it on the record: the built-in
``jobkit.builtin.logcontext`` sets it to `` [job=<name> id=<job_id> attempt=<n>]`` while a job
runs."""

JSON_FIELDS = {
    "jobkit_job": "job",
    "jobkit_job_id": "job_id",
    "jobkit_attempt": "attempt",
    "jobkit_attempt_id": "attempt_id",
    "jobkit_status": "status",
    "jobkit_duration": "duration",
    "jobkit_queue_wait": "queue_wait",
}
"""Record attributes a JSON log line carries as keys of their own (when set and not empty): the
job's context, which ``jobkit.builtin.logcontext`` sets on the lines a job logs, and which the
worker sets with the attempt's figures on the line that ends an attempt."""

LEVEL_COLOURS = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
"""ANSI colours of the level names in text lines written to a terminal."""
_RESET = "\x1b[0m"


class CredentialsMaskedFormatter(logging.Formatter):
    """Formats a record, traceback included, with any password in it masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(super().format(record))


class ColouredLevelFormatter(CredentialsMaskedFormatter):
    """``CredentialsMaskedFormatter`` with the level name in its colour, for a terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        colour = LEVEL_COLOURS.get(record.levelno)
        if colour is None:
            return super().formatMessage(record)
        coloured = copy.copy(record)  # other handlers format the same record
        coloured.levelname = f"{colour}{record.levelname}{_RESET}"
        return super().formatMessage(coloured)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, for log shippers: ``time`` (ISO 8601, UTC),
    ``level``, ``logger``, ``message``, the ``JSON_FIELDS`` the record has, and ``exc_info``
    (the traceback's text) when it has one; any password in them masked."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_credentials(record.getMessage()),
        }
        for attribute, key in JSON_FIELDS.items():
            value = record.__dict__.get(attribute)
            if value is not None and value != "":
                entry[key] = value if isinstance(value, int | float) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = redact_credentials(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = redact_credentials(self.formatStack(record.stack_info))
        return json.dumps(entry)


def log_formatter(log_format: str, stream: Any) -> logging.Formatter:
    """The formatter of ``log_format`` (the setting) for lines written to ``stream``: JSON, or
    ``LOG_FORMAT`` text whose level names are coloured when ``stream`` is a terminal and
    ``NO_COLOR`` is unset (https://no-color.org)."""
    if log_format == "json":
        return JsonFormatter()
    terminal = getattr(stream, "isatty", lambda: False)()
    coloured = terminal and not os.environ.get("NO_COLOR")
    formatter = ColouredLevelFormatter if coloured else CredentialsMaskedFormatter
    return formatter(LOG_FORMAT, defaults={"jobkit_context": ""})


def configure_logging(level: int | str, log_format: str = "text") -> None:
    """``logging.basicConfig`` to stderr in ``log_format`` (see ``log_formatter``); nothing,
    like basicConfig, when the root logger already has handlers. Records without
    ``jobkit_context`` show it empty; passwords in URLs and conninfo strings show as ``***``."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(log_format, handler.stream))
    logging.basicConfig(level=level, handlers=[handler])
