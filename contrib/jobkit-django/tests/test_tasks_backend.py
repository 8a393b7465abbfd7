"""The django.tasks backend, tested as Django's own backend tests do (django-tasks-db's
DatabaseBackendTestCase and worker tests): enqueue, get_result and refresh, a real ``jobkit
worker``, failures and return values, priority, queue_name, run_after, context, async tasks,
and enqueue inside a transaction."""

from __future__ import annotations

import datetime
import uuid

import pytest
from jobkit_django.tasks import (
    JobkitBackend,
    TaskResultDoesNotExist,
    TaskResultStatus,
)

from conftest import manage


@pytest.fixture
def tasks(jobs):
    import shop.tasks

    return shop.tasks


@pytest.fixture
def run_worker(project_environ):
    def run(*args: str) -> None:
        done = manage(project_environ, "jobkit", "worker", "--burst", *args)
        assert done.returncode == 0, done.stderr

    return run


def test_the_backend_is_jobkits_and_its_flags_are_true(tasks):
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends

    backend = task_backends["default"]
    assert isinstance(backend, JobkitBackend)
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task


def test_on_django_6_the_backend_is_django_tasks_not_the_backport(tasks):
    """Django 6 has ``django.tasks``: the backend and the tasks are its own, even if the
    backport is installed too; on 5.2 they are the backport's."""
    import django

    package = "django.tasks" if django.VERSION >= (6,) else "django_tasks"
    assert JobkitBackend.__mro__[1].__module__ == f"{package}.backends.base"
    assert type(tasks.add).__module__ == TaskResultStatus.__module__ == f"{package}.base"


def test_enqueue_then_a_worker_runs_it_and_get_result_follows(tasks, run_worker):
    result = tasks.add.enqueue(2, 3)

    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert result.enqueued_at is not None and result.started_at is None
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018 - the property raises
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY

    run_worker()
    result.refresh()

    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 5
    assert result.started_at and result.finished_at and result.last_attempted_at
    assert result.attempts == 1 and len(result.worker_ids) == 1 and result.errors == []


def test_the_async_api_enqueues_and_reads_results(tasks, run_worker):
    """``aenqueue``, ``aget_result`` and ``arefresh`` are Django's, calling the backend's
    ``enqueue`` and ``get_result`` by keyword in a thread."""
    import asyncio

    async def enqueue():
        result = await tasks.add.aenqueue(4, 5)
        return result, await tasks.add.aget_result(result.id)

    result, fetched = asyncio.run(enqueue())
    assert fetched.status == TaskResultStatus.READY and fetched.args == [4, 5]

    run_worker()
    asyncio.run(result.arefresh())

    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 9


def test_a_failing_task_is_failed_with_its_error(tasks, run_worker):
    result = tasks.fail.enqueue("out of stock")
    unserializable = tasks.returns_a_set.enqueue()

    run_worker()
    result.refresh()
    unserializable.refresh()

    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018 - the property raises
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "ValueError: out of stock" in error.traceback
    assert unserializable.status == TaskResultStatus.FAILED
    assert unserializable.errors[0].exception_class is TypeError


def test_context_async_and_model_tasks_run(tasks, run_worker):
    from shop.models import Order

    order = Order.objects.create(customer="ada")
    context = tasks.attempt_number.enqueue()
    doubled = tasks.async_double.enqueue(21)
    confirmed = tasks.confirm.enqueue(order.id)

    run_worker("--queue", "default", "--queue", "emails")

    assert tasks.attempt_number.get_result(context.id).return_value == 1
    assert tasks.async_double.get_result(doubled.id).return_value == 42
    assert tasks.confirm.get_result(confirmed.id).return_value == {
        "order": order.id,
        "confirmed": True,
    }
    order.refresh_from_db()
    assert order.confirmed


def test_priority_queue_name_and_run_after_reach_the_job(tasks):
    import jobkit

    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    high = tasks.add.using(priority=50).enqueue(1, 1)
    emails = tasks.confirm.enqueue(1)
    deferred = tasks.add.using(run_after=later).enqueue(1, 2)

    assert jobkit.job(high.id).latest.priority == 50
    assert (jobkit.job(emails.id).latest.queue, jobkit.job(emails.id).latest.priority) == (
        "emails",
        10,
    )
    waiting = jobkit.job(deferred.id).latest
    assert waiting.state.value == "scheduled" and waiting.start_at == later
    assert tasks.add.get_result(deferred.id).status == TaskResultStatus.READY


def test_a_task_enqueued_in_a_transaction_exists_iff_it_commits(tasks):
    from django.db import transaction

    with transaction.atomic():
        kept = tasks.add.enqueue(1, 2)
    with pytest.raises(RuntimeError), transaction.atomic():
        dropped = tasks.add.enqueue(3, 4)
        raise RuntimeError
    assert tasks.add.get_result(kept.id).status == TaskResultStatus.READY
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(dropped.id)


def test_get_result_of_an_unknown_or_malformed_id_does_not_exist(tasks):
    import uuid

    for result_id in (str(uuid.uuid4()), "not-an-id"):
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(result_id)


def test_django_validation_is_kept(tasks):
    try:
        from django.tasks.exceptions import InvalidTask as Invalid
    except ImportError:
        from django_tasks.exceptions import InvalidTaskError as Invalid

    with pytest.raises(Invalid, match="Queue 'reports' is not valid"):
        tasks.add.using(queue_name="reports")
    with pytest.raises(Invalid, match="priority must be a whole number"):
        tasks.add.using(priority=101)


def test_workers_delete_return_values_past_results_retention(tasks, run_worker):
    from django.utils import timezone
    from jobkit_django.models import TaskReturnValue

    recent = tasks.add.enqueue(1, 1)
    run_worker()
    old = TaskReturnValue.objects.create(job_id=uuid.uuid4(), return_value=1)
    month_ago = timezone.now() - datetime.timedelta(days=30)
    TaskReturnValue.objects.filter(job_id=old.job_id).update(created_at=month_ago)

    tasks.add.enqueue(2, 2)
    run_worker()

    assert not TaskReturnValue.objects.filter(job_id=old.job_id).exists()
    assert tasks.add.get_result(recent.id).return_value == 2
