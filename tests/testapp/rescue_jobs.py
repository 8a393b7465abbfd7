"""Jobs that record their on_aborted calls, for the rescue tests."""

from jobkit import Job, register_job

ABORTED: list[tuple[str, str]] = []
"""(key, status) of every on_aborted call in this process."""


@register_job
class Careful(Job):
    """Remembers on_aborted calls."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> None:
        pass

    def calculate_retry_delay(self, attempt: int) -> float:
        return 30

    def on_aborted(self, result) -> None:
        ABORTED.append((self.key, result.status.value))


@register_job
class Clumsy(Job):
    """Its on_aborted raises."""

    def run(self) -> None:
        pass

    def on_aborted(self, result) -> None:
        raise RuntimeError("cleanup failed")
