"""Transactional enqueue: inside ``transaction.atomic()`` a job joins Django's transaction on
its connection (it exists iff the transaction commits); outside, it autocommits."""

from __future__ import annotations

import psycopg
import pytest
from django.test import Client

from jobkit import UnknownJobError, job_state
from jobkit.runtime import get_runtime


def seen_by_another_connection(job_id) -> bool:
    """Whether a connection of jobkit's own (not Django's) finds the job."""
    with psycopg.connect(get_runtime().settings.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobkit.requests WHERE job_id = %s", (job_id,)
        ).fetchone()
    return row[0] == 1


def test_inside_atomic_the_job_commits_with_the_transaction(jobs):
    from django.db import transaction
    from shop.jobs import ConfirmOrder
    from shop.models import Order

    with transaction.atomic():
        order = Order.objects.create(customer="ada")
        request = ConfirmOrder(order.id).run_in_worker()
        assert not seen_by_another_connection(request.job_id)
    assert seen_by_another_connection(request.job_id)
    assert job_state(request.id).stage.value == "requested"


def test_inside_atomic_the_job_rolls_back_with_the_transaction(jobs):
    from django.db import transaction
    from shop.jobs import ConfirmOrder
    from shop.models import Order

    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(customer="ada")
        request = ConfirmOrder(order.id).run_in_worker()
        raise RuntimeError("the order failed")
    assert not Order.objects.exists()
    with pytest.raises(UnknownJobError):
        job_state(request.id)


def test_a_savepoint_rolled_back_takes_its_job_along(jobs):
    from django.db import transaction
    from shop.jobs import ConfirmOrder

    with transaction.atomic():
        kept = ConfirmOrder(1).run_in_worker()
        with pytest.raises(RuntimeError), transaction.atomic():
            dropped = ConfirmOrder(2).run_in_worker()
            raise RuntimeError
    assert seen_by_another_connection(kept.job_id)
    assert not seen_by_another_connection(dropped.job_id)


def test_outside_atomic_the_job_autocommits_on_djangos_connection(jobs):
    from django.db import connection
    from shop.jobs import ConfirmOrder

    request = ConfirmOrder(7).run_in_worker()

    assert seen_by_another_connection(request.job_id)
    assert connection.get_autocommit() and not connection.in_atomic_block


def test_keyed_jobs_are_decided_inside_the_transaction(jobs):
    from django.db import transaction
    from shop.jobs import ConfirmOrder

    with transaction.atomic():
        first = ConfirmOrder(3).run_in_worker(concurrency_key="order-3")
        second = ConfirmOrder(3).run_in_worker(concurrency_key="order-3")
    assert first is not None and second is None


def test_a_view_enqueues_in_its_transaction(jobs):
    from shop.models import Order

    client = Client(raise_request_exception=False)
    committed = client.get("/orders/", {"customer": "ada"})
    failed = client.get("/orders/", {"customer": "bob", "fail": "1"})

    assert committed.status_code == 200 and failed.status_code == 500
    _, job_id = committed.content.decode().split()
    assert seen_by_another_connection(job_id)
    assert list(Order.objects.values_list("customer", flat=True)) == ["ada"]
    assert get_runtime().queue_depths(["default"])["default"].pending == 1


def test_in_async_code_the_job_goes_on_jobkits_own_connection(jobs):
    import asyncio

    from shop.jobs import ConfirmOrder

    async def enqueue():
        return ConfirmOrder(8).run_in_worker()

    request = asyncio.run(enqueue())
    assert seen_by_another_connection(request.job_id)
