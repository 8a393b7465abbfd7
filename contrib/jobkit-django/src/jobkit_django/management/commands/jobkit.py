"""``manage.py jobkit ...``: the ``jobkit`` command line with this project's settings, e.g.
``manage.py jobkit worker``."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

DJANGO_OPTIONS = ("--settings", "--pythonpath")
"""Options ``manage.py`` applies itself, before any command runs."""


def without_django_options(arguments: list[str]) -> list[str]:
    """``arguments`` without ``--settings``/``--pythonpath`` (and their values), which Django
    has applied already and jobkit's command line would refuse."""
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in DJANGO_OPTIONS:
            skip = True
        elif not argument.startswith(tuple(f"{option}=" for option in DJANGO_OPTIONS)):
            kept.append(argument)
    return kept


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
        sys.argv = [f"{Path(argv[0]).name} {argv[1]}", *without_django_options(argv[2:])]
        runpy.run_module("jobkit", run_name="__main__", alter_sys=False)
