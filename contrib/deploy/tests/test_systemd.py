"""The systemd unit: a graceful stop that outlasts jobkit's grace period, restart on failure,
and a unit systemd itself accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deployfiles import (
    DEFAULTS,
    GRACE_MARGIN,
    UNIT,
    seconds,
    shutdown_timeout,
    unit_command,
    unit_directives,
)


def test_the_unit_runs_a_worker_that_stops_gracefully_and_restarts_on_failure():
    unit = unit_directives()
    service = unit["Service"]
    command = unit_command()
    assert Path(command[0]).name == "jobkit" and command[1] == "worker"

    stop = seconds(service["TimeoutStopSec"])
    assert stop > DEFAULTS.shutdown_timeout
    assert stop >= shutdown_timeout(command, {}) + GRACE_MARGIN
    assert service["KillSignal"] == "SIGTERM"
    # The whole group gets SIGTERM; pool children ignore one their worker did not send.
    assert service["KillMode"] == "control-group"
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(
            "systemd-analyze is not installed: the unit's keys and values are checked by "
            "parsing only (test_the_unit_runs_a_worker_that_stops_gracefully...)"
        )
    # verify checks that ExecStart's program exists: point it at this environment's jobkit.
    jobkit = Path(sys.executable).with_name("jobkit")
    assert jobkit.exists()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(unit_command()[0], str(jobkit)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_systemd_analyze_verify_would_catch_a_misspelt_key(tmp_path):
    """The test above is worth something: a wrong key is reported (on stderr, status 0)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / UNIT.name
    text = UNIT.read_text().replace(
        unit_command()[0], str(Path(sys.executable).with_name("jobkit"))
    )
    copy.write_text(text.replace("TimeoutStopSec=", "TimeoutStopSecs="))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key 'TimeoutStopSecs'" in done.stderr
