"""Jobs whose text PostgreSQL cannot store as it is."""

import os

from jobkit import Job, register_job


@register_job
class Echo(Job):
    def __init__(self, text: str):
        self.text = text

    def run(self) -> None:
        pass


@register_job
class FailWithNul(Job):
    def run(self) -> None:
        raise ValueError("bad byte \x00 in the message")


@register_job
class FailWithSurrogate(Job):
    """Fails with the text of a file name that is not UTF-8, as ``os.fsdecode`` gives it."""

    def run(self) -> None:
        raise FileNotFoundError("no such file: " + os.fsdecode(b"/srv/caf\xe9.csv"))
