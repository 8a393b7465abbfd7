"""``manage.py jobkit ...``: the ``jobkit`` command line with this project's settings, e.g.
``manage.py jobkit worker``."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a jobkit command (worker, jobs, retry, ...) with this project's settings."

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand every argument after ``jobkit`` to jobkit's own command line (``python -m
        jobkit``), which reads ``settings.JOBKIT`` through jobkit-django's settings source.
        The project's directory goes on ``PYTHONPATH`` for the processes it starts (the
        ``--reload`` worker, ``cmd:`` schedule entries)."""
        project = str(Path(argv[0]).resolve().parent)
        paths = [project, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        sys.argv = [f"{Path(argv[0]).name} {argv[1]}", *argv[2:]]
        runpy.run_module("jobkit", run_name="__main__", alter_sys=False)
