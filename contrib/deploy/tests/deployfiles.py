"""The deployment files, read the way their tools read them, and what the tests compare them
with: jobkit's own settings."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from jobkit import Settings

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "jobkit-worker.service"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
KUBERNETES = ROOT / "kubernetes" / "worker.yaml"
GRAFANA = ROOT / "grafana" / "jobkit-dashboard.json"

GRACE_MARGIN = 10.0
"""Seconds a supervisor must wait past ``shutdown_timeout`` before its SIGKILL: the worker kills
jobs that ignored ``JobCancelled`` 1 s after the grace period, then writes the last results and
waits for ``on_aborted`` calls (docs/deployment.md, graceful stop)."""

DEFAULTS = Settings()


def unit_directives(path: Path = UNIT) -> dict[str, dict[str, str]]:
    """A systemd unit's sections and their keys (each key once in these units)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, separator, value = line.partition("=")
        assert current is not None and separator, f"{path}:{number}: not a key=value line"
        assert key not in current, f"{path}:{number}: {key} twice"
        current[key.strip()] = value.strip()
    return sections


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        instruction, _, arguments = whole.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    assert not pending, f"{path} ends inside a continued line"
    return instructions


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def kubernetes() -> dict[str, dict[str, Any]]:
    """The manifests by kind."""
    documents = [document for document in yaml.safe_load_all(KUBERNETES.read_text()) if document]
    by_kind = {document["kind"]: document for document in documents}
    assert len(by_kind) == len(documents), "one manifest of each kind"
    return by_kind


def grafana() -> dict[str, Any]:
    return json.loads(GRAFANA.read_text())


def seconds(text: str | int | float) -> float:
    """A duration as systemd (``40``, ``40s``, ``1min 30s``) or compose (``40s``, ``1m30s``)
    writes it."""
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+", text), f"not a duration: {text!r}"
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


def shutdown_timeout(command: list[str], environment: dict[str, str]) -> float:
    """The grace period a worker started with ``command`` and ``environment`` gets: the
    ``--shutdown-timeout`` flag, else ``JOBKIT_SHUTDOWN_TIMEOUT``, else jobkit's default."""
    if "--shutdown-timeout" in command:
        return float(command[command.index("--shutdown-timeout") + 1])
    if "JOBKIT_SHUTDOWN_TIMEOUT" in environment:
        return float(environment["JOBKIT_SHUTDOWN_TIMEOUT"])
    return DEFAULTS.shutdown_timeout


def unit_command() -> list[str]:
    return shlex.split(unit_directives()["Service"]["ExecStart"])


def dockerfile_environment() -> dict[str, str]:
    environment = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                environment[key] = value
    return environment


def dockerfile_exec_form(instruction: str) -> list[str]:
    """The JSON (exec) form of CMD or HEALTHCHECK's CMD: no shell between Docker and jobkit."""
    [arguments] = [args for name, args in dockerfile_instructions() if name == instruction]
    if instruction == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD ") + len("CMD ") :]
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return command


def kubernetes_worker() -> dict[str, Any]:
    [container] = kubernetes()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def kubernetes_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal variables (those from a Secret have no value here)."""
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def compose_healthcheck(service: str) -> list[str]:
    test = compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: no shell between Docker and jobkit"
    return test[1:]


def probe_commands() -> dict[str, list[str]]:
    """Every health check the files run, by where it is."""
    container = kubernetes_worker()
    return {
        "Dockerfile HEALTHCHECK": dockerfile_exec_form("HEALTHCHECK"),
        "compose worker healthcheck": compose_healthcheck("worker"),
        "Kubernetes startupProbe": container["startupProbe"]["exec"]["command"],
        "Kubernetes livenessProbe": container["livenessProbe"]["exec"]["command"],
    }


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None
