"""The job the peers harness runs through jobkit (``benchmarks/peers_adapter.py``): its body is
the harness's no-op, ``bench.record_job(payload)``, as for every system."""

import bench

from jobkit import Job, register_job


@register_job(name="bench.Record")
class Record(Job):
    def __init__(self, i: int, t: float):
        self.i = i
        self.t = t

    def run(self) -> None:
        bench.record_job({"i": self.i, "t": self.t})
