"""Jobs whose text PostgreSQL cannot store as it is."""

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
