"""A ``django.tasks`` backend whose tasks run in ``jobkit worker``: ``TASKS = {"default":
{"BACKEND": "jobkit_django.tasks.JobkitBackend"}}``.

Each task becomes a jobkit job named after the task's function (``app.tasks.send_mail``), its
arguments the job's parameters, so the CLI, the dashboard and the admin show tasks as they show
jobs. Works with ``django.tasks`` (Django 6) and with the ``django-tasks`` backport (Django 5.2).
"""

from __future__ import annotations

import json
import traceback
import uuid
from typing import Any, ClassVar

from django.utils import timezone

import jobkit
from jobkit import Job, JobNotFound, ParameterError, register_job

try:  # Django 6
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:  # Django 5.2 and the django-tasks backport
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

FAILED = ("errored", "lost", "cancelled")
STATUS = {
    "pending": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "deferred": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "successful": TaskResultStatus.SUCCESSFUL,
    **dict.fromkeys(FAILED, TaskResultStatus.FAILED),
}
"""A task's status from its job's latest attempt's state (``django.tasks`` has four)."""


class TaskJob(Job):
    """The jobkit job of one task: its parameters are the task's arguments."""

    task: ClassVar[Any]

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = list(args)
        self.kwargs = kwargs

    def run(self) -> None:
        """Run the task as Django's backends do: signals around it, its context if it takes
        one, its return value kept (as JSON) for ``get_result``. An exception is raised on,
        for jobkit to record the attempt ERRORED with its traceback."""
        process = self.job_process
        task = self.task
        backend = task.get_backend()
        result = TaskResult(
            task=task,
            id=str(process.job_id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=process.created_at,
            started_at=timezone.now(),
            finished_at=None,
            last_attempted_at=timezone.now(),
            args=self.args,
            kwargs=self.kwargs,
            backend=backend.alias,
            errors=[],
            worker_ids=[str(process.worker_id)] * (process.retry_attempt + 1),
        )
        task_started.send(sender=type(backend), task_result=result)
        try:
            context = [TaskContext(task_result=result)] if task.takes_context else []
            value = normalize_json(task.call(*context, *self.args, **self.kwargs))
            _return_values(backend.database).update_or_create(
                job_id=process.job_id, defaults={"return_value": value}
            )
        except BaseException as error:
            text = "".join(traceback.format_exception(error))
            result.errors.append(
                TaskError(exception_class_path=_class_path(type(error)), traceback=text)
            )
            _finish(result, TaskResultStatus.FAILED)
            task_finished.send(sender=type(backend), task_result=result)
            raise
        object.__setattr__(result, "_return_value", value)
        _finish(result, TaskResultStatus.SUCCESSFUL)
        task_finished.send(sender=type(backend), task_result=result)


class JobkitBackend(BaseTaskBackend):
    """Tasks enqueued as jobkit jobs, run by ``jobkit worker``. Inside
    ``transaction.atomic()`` a task is enqueued in that transaction: it exists, and a worker
    can start it, only once the transaction commits (Django's advice to enqueue in
    ``transaction.on_commit`` is not needed)."""

    supports_defer = True
    supports_async_task = True  # Task.call runs a coroutine function to its end
    supports_get_result = True
    supports_priority = True

    @property
    def database(self) -> str:
        from jobkit_django.conf import database_alias

        return database_alias()

    def validate_task(self, task: Task) -> None:
        """Django's checks, then register the task's job, so a process that imported the task
        (a worker imports every installed app's ``tasks.py``) can run it."""
        super().validate_task(task)
        job_class_of(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)  # USE_TZ = False: local time
        job = job_class_of(task)(*args, **kwargs)
        request = job.run_in_worker(queue=task.queue_name, priority=task.priority, delay=run_after)
        result = TaskResult(
            task=task,
            id=str(request.job_id),
            status=TaskResultStatus.READY,
            enqueued_at=request.created_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(sender=type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result from its jobkit job: its latest attempt's status, every failed
        attempt's error, and the return value the worker kept."""
        try:
            info = jobkit.job(uuid.UUID(str(result_id)))
        except (ValueError, ParameterError, JobNotFound):
            raise TaskResultDoesNotExist(result_id) from None
        first, latest = info.attempts[0], info.latest
        job_class = _task_jobs.get(latest.job_name)
        if job_class is None:
            raise TaskResultDoesNotExist(
                f"{result_id} is a job of {latest.job_name}, not a task known to this process"
            )
        parameters = json.loads(latest.parameters)
        status = STATUS[latest.state.value]
        finished = status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        started = [attempt.started_at for attempt in info.attempts if attempt.started_at]
        result = TaskResult(
            task=job_class.task.using(backend=self.alias),
            id=str(info.job_id),
            status=status,
            enqueued_at=first.created_at,
            started_at=started[0] if started else None,
            finished_at=latest.ended_at if finished else None,
            last_attempted_at=started[-1] if started else None,
            args=parameters.get("args", []),
            kwargs=parameters.get("kwargs", {}),
            backend=self.alias,
            errors=[
                TaskError(
                    exception_class_path=_builtin_path(attempt.error_type),
                    traceback=attempt.error,
                )
                for attempt in info.attempts
                if attempt.state.value in FAILED
            ],
            worker_ids=[str(a.worker_id) for a in info.attempts if a.worker_id is not None],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            stored = _return_values(self.database).filter(job_id=info.job_id)
            value = stored.values_list("return_value", flat=True).first()
            object.__setattr__(result, "_return_value", value)
        return result


_task_jobs: dict[str, type[TaskJob]] = {}
"""The job class of each task this process knows, by job name (the task's module path)."""


def job_class_of(task: Task) -> type[TaskJob]:
    """The registered job class of ``task``'s function, made on first use."""
    name = task.module_path
    if name not in _task_jobs:
        attributes = {"task": task, "__doc__": task.func.__doc__}
        _task_jobs[name] = register_job(name=name)(type(name, (TaskJob,), attributes))
    return _task_jobs[name]


def _finish(result: TaskResult, status: Any) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _builtin_path(error_type: str) -> str:
    """jobkit names builtin exceptions without their module; Django's ``TaskError`` wants it."""
    return error_type if "." in error_type else f"builtins.{error_type}"


def _return_values(database: str) -> Any:
    """The return values' manager on jobkit's database (the model is imported late: backends
    are made before the apps are ready)."""
    from jobkit_django.models import TaskReturnValue

    return TaskReturnValue.objects.using(database)


__all__ = ["JobkitBackend", "TaskJob"]
