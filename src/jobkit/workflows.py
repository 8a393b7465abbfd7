"""Workflows: a group of jobs whose callback receives their outputs once all have ended (fan-out
and fan-in), chains where each job receives the previous one's output, and pipelines whose steps
share a workspace (django-db-queue's).

Both are enqueued in one transaction with ``run_in_worker()``, as a job is. The callback is
enqueued held, and the store releases it in the transaction that writes the last member's final
result, so it runs once per workflow however workers die or race (see ``Store.create_workflows``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs

from jobkit.enqueueing import caller_location
from jobkit.errors import DeferJob, ParameterError, ParameterTypeError
from jobkit.job import Job
from jobkit.records import (
    HELD_UNTIL,
    INPUTS_HEADER,
    PIPELINE_HEADER,
    WORKFLOW_HEADER,
    JobRequest,
    PipelineState,
    WorkflowLink,
    new_attempt_id,
)


@attrs.define(kw_only=True)
class Workflow:
    """An enqueued workflow: its id (for ``jobkit show``, ``jobkit.cancel_workflow``) and the
    request of each of its jobs, in the order given (a group's members, then its callback)."""

    id: uuid.UUID
    requests: list[JobRequest]

    @property
    def last(self) -> JobRequest:
        """The request of the job that runs last: a group's callback, a chain's last job."""
        return self.requests[-1]


class _Linked:
    """What groups and chains share: ``run_in_worker()`` enqueues every job of their links in
    one transaction (the caller's, with ``connection``); ``queue``, ``priority`` and
    ``retries``, when given, are every job's (else each job's ``default_*``)."""

    jobs: list[Job]
    name: str

    def run_in_worker(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        retries: int | None = None,
        connection: Any = None,
    ) -> Workflow:
        from jobkit.runtime import get_runtime

        runtime = get_runtime()
        options = {"queue": queue, "priority": priority, "retries": retries}
        workflow_id, links, jobs, requests = self._links(runtime, options)
        return Workflow(
            id=workflow_id,
            requests=runtime.enqueuer.enqueue_workflow(links, jobs, requests, connection),
        )

    def _links(
        self, runtime: Any, options: dict[str, Any]
    ) -> tuple[uuid.UUID, list[WorkflowLink], list[Job], list[JobRequest]]:
        """The workflow's id, its links, and its jobs with their requests, in order."""
        raise NotImplementedError


class Group(_Linked):
    """Run ``jobs`` in parallel and, once every one has ended (its final attempt, retries
    included), the ``then`` job, whose ``workflow_inputs()`` are their results in order, failed
    ones included (``failed``, ``status``). ``run_in_worker()`` enqueues the members and the
    held callback."""

    def __init__(self, jobs: Iterable[Job], *, then: Job | None = None, name: str = ""):
        self.jobs = _jobs("Group", list(jobs))
        if not self.jobs:
            raise ParameterError("Group needs at least one job")
        if then is not None:
            _jobs("Group's then", [then])
        self.then = then
        self.name = name

    def _links(
        self, runtime: Any, options: dict[str, Any]
    ) -> tuple[uuid.UUID, list[WorkflowLink], list[Job], list[JobRequest]]:
        link_id = new_attempt_id()
        members = [_member(runtime, job, link_id, options) for job in self.jobs]
        callback = None
        if self.then is not None:
            callback = _callback(runtime, self.then, link_id, options)
        link = WorkflowLink(
            id=link_id,
            root_id=link_id,
            name=self.name,
            members=members,
            callback=callback,
            callback_on_failure=True,
        )
        jobs = [*self.jobs, *([self.then] if self.then is not None else [])]
        requests = [*members, *([callback] if callback is not None else [])]
        return link_id, [link], jobs, requests


class Chain(_Linked):
    """Run ``jobs`` one after the other, each once the one before it succeeded, receiving its
    output (``self.workflow_inputs()[0].output``). A job that fails for good (its retries
    used) stops the chain; retried by an operator and successful, it lets the chain go on.
    ``run_in_worker()`` enqueues the first job and the others held."""

    def __init__(self, *jobs: Job, name: str = ""):
        self.jobs = _jobs("Chain", list(jobs))
        if len(self.jobs) < 2:
            raise ParameterError(f"Chain needs at least two jobs, got {len(self.jobs)}")
        self.name = name

    def _links(
        self, runtime: Any, options: dict[str, Any]
    ) -> tuple[uuid.UUID, list[WorkflowLink], list[Job], list[JobRequest]]:
        link_ids = [new_attempt_id() for _ in self.jobs[1:]]
        first = _member(runtime, self.jobs[0], link_ids[0], options)
        requests = [first]
        links = []
        for index, job in enumerate(self.jobs[1:]):
            link_id = link_ids[index]
            request = _callback(runtime, job, link_id, options)
            if index + 1 < len(link_ids):
                request.headers[WORKFLOW_HEADER] = str(link_ids[index + 1])
            links.append(
                WorkflowLink(
                    id=link_id,
                    root_id=link_ids[0],
                    name=self.name,
                    members=[requests[-1]],
                    callback=request,
                    callback_on_failure=False,
                )
            )
            requests.append(request)
        return link_ids[0], links, list(self.jobs), requests


class _End:
    def __repr__(self) -> str:
        return "Pipeline.END"


class Pipeline(Job):
    """A job that runs its ``steps`` (names of its methods) in order, one attempt each, sharing
    ``self.workspace``, a dict (django-db-queue's pipeline). The workspace given at enqueue is
    the first step's; each step edits it, and it is saved with the step's result, in one
    transaction. A step that fails is retried (the job's ``retries``, shared by its steps) from
    that step, with the workspace as the step before it saved it. A step returns None to go on
    to the next one, the name of another step to go there, or ``Pipeline.END`` to end now.
    ``jobkit.pipeline(job_id)`` and ``jobkit show`` tell the step it runs next and its
    workspace; ``jobkit.pipelines(workspace={...})`` finds pipelines by workspace content."""

    steps: ClassVar[Sequence[str]] = ()
    END: ClassVar[Any] = _End()

    def __init__(self, workspace: dict[str, Any] | None = None):
        if workspace is not None and not isinstance(workspace, dict):
            raise ParameterTypeError(
                f"{type(self).__qualname__}: workspace must be a dict, got {workspace!r}"
            )
        self.workspace: dict[str, Any] = dict(workspace or {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        steps = cls.steps
        if isinstance(steps, str) or not steps:
            raise TypeError(
                f"{cls.__qualname__}.steps must name its steps in order, e.g. "
                f'steps = ("fetch", "parse"), got {steps!r}'
            )
        for step in steps:
            if not isinstance(step, str) or not callable(getattr(cls, step, None)):
                raise TypeError(
                    f"{cls.__qualname__}.steps names {step!r}, which is not a method of it"
                )

    def run_in_worker(self, *, connection: Any = None, **options: Any) -> JobRequest | None:  # type: ignore[override]
        """Enqueue the pipeline, as ``Job.run_in_worker`` does (the same options), and record
        its first step and workspace in the same transaction."""
        from jobkit.runtime import get_runtime

        runtime = get_runtime()
        request = runtime.build_request(self, source=caller_location(), **options)
        request.headers[PIPELINE_HEADER] = "1"
        pipeline = PipelineState(
            job_id=request.job_id,
            job_name=request.job_name,
            step=type(self).steps[0],
            workspace_json=runtime.serializer.dumps_output(type(self), self.workspace),
        )
        return runtime.enqueuer.enqueue_pipeline(self, request, pipeline, connection)

    def run(self) -> Any:
        """Run the step the pipeline is at, then save the workspace and the step that comes
        next (a DEFERRED result that runs it at once), or end (the SUCCESSFUL result)."""
        from jobkit.runtime import get_runtime

        process = self.job_process
        pipeline = None
        if process is not None and PIPELINE_HEADER in process.headers:
            pipeline = get_runtime().store.pipeline(process.job_id)
        if pipeline is None:
            raise ParameterError(
                f"{type(self).__qualname__} is a Pipeline with no saved step and workspace: "
                f"enqueue it with its own run_in_worker(), which records them (enqueue_many "
                f"does not)"
            )
        self.workspace = pipeline.workspace
        step = pipeline.step
        following = None if step is None else self._following(step, getattr(self, step)())
        output = {"step": following, "workspace": self.workspace}
        if following is None:
            return output
        raise DeferJob(output=output)

    def _following(self, step: str, chosen: Any) -> str | None:
        steps = list(type(self).steps)
        if chosen is None:
            index = steps.index(step) + 1
            return steps[index] if index < len(steps) else None
        if chosen is Pipeline.END:
            return None
        if isinstance(chosen, str) and chosen in steps:
            return chosen
        raise ParameterError(
            f"{type(self).__qualname__}.{step}() returned {chosen!r}: a step returns None (on to "
            f"the next step), the name of a step ({', '.join(steps)}) or Pipeline.END"
        )


def _jobs(what: str, jobs: Sequence[Any]) -> list[Job]:
    for job in jobs:
        if not isinstance(job, Job):
            raise ParameterTypeError(f"{what} takes Job instances (e.g. MyJob(42)), got {job!r}")
    return list(jobs)


def _member(runtime: Any, job: Job, link_id: uuid.UUID, options: dict[str, Any]) -> JobRequest:
    request = runtime.build_request(job, source=caller_location(), **options)
    request.headers[WORKFLOW_HEADER] = str(link_id)
    return request


def _callback(runtime: Any, job: Job, link_id: uuid.UUID, options: dict[str, Any]) -> JobRequest:
    request = runtime.build_request(job, source=caller_location(), **options)
    request.headers[INPUTS_HEADER] = str(link_id)
    request.start_at, request.delay = HELD_UNTIL, 0.0
    return request
