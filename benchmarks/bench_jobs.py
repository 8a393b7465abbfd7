"""The job the benchmarks run: it does nothing, so what is measured is jobkit."""

from jobkit import Job, register_job


@register_job(name="bench.Noop")
class Noop(Job):
    def __init__(self, number: int):
        self.number = number

    def run(self) -> None:
        pass
