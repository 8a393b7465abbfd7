"""Middleware for the unit tests. Each writes what it does to the job's ``log`` list."""

from jobkit import JobMiddleware


class Outer(JobMiddleware):
    def process_job(self, job):
        job.log.append("outer before")
        result = self.run_job(job)
        job.log.append("outer after")
        return result


class Inner(JobMiddleware):
    def process_job(self, job):
        job.log.append("inner before")
        try:
            return self.run_job(job)
        finally:
            job.log.append("inner after")


class Skip(JobMiddleware):
    """Decides not to run the job at all."""

    def process_job(self, job):
        job.log.append("skipped")
        return "skipped"


class Twice(JobMiddleware):
    """Runs the rest of the chain two times, as a retrying middleware would."""

    def process_job(self, job):
        self.run_job(job)
        return self.run_job(job)


class NotSubclassed:
    """Middleware by duck typing: built with the next step, and a ``process_job`` method."""

    def __init__(self, run_job):
        self.run_job = run_job

    def process_job(self, job):
        job.log.append("duck")
        return self.run_job(job)


class NoProcessJob:
    def __init__(self, run_job):
        self.run_job = run_job

    def process(self, job):
        return self.run_job(job)


NOT_A_CLASS = 42


class Audit(JobMiddleware):
    """Middleware a plugin adds (``unitplugins.middleware_plugins``)."""

    def process_job(self, job):
        job.log.append("audit before")
        result = self.run_job(job)
        job.log.append("audit after")
        return result


class Timing(JobMiddleware):
    """Middleware another plugin adds, after ``Audit`` in the same answer."""

    def process_job(self, job):
        job.log.append("timing before")
        result = self.run_job(job)
        job.log.append("timing after")
        return result


class Metrics(JobMiddleware):
    """Middleware a second plugin adds."""

    def process_job(self, job):
        job.log.append("metrics before")
        result = self.run_job(job)
        job.log.append("metrics after")
        return result


class AsyncOuter(JobMiddleware):
    """Wraps sync jobs and async ones (``aprocess_job``)."""

    def process_job(self, job):
        job.log.append("outer before")
        result = self.run_job(job)
        job.log.append("outer after")
        return result

    async def aprocess_job(self, job):
        job.log.append("async outer before")
        result = await self.run_job(job)
        job.log.append("async outer after")
        return result


class AsyncSkip(JobMiddleware):
    """Decides not to run an async job at all."""

    async def aprocess_job(self, job):
        job.log.append("skipped")
        return "skipped"


class PassThrough(JobMiddleware):
    """Runs every job, sync or async, as it is."""

    async def aprocess_job(self, job):
        return await self.run_job(job)
