"""The shop's django.tasks tasks, run by jobkit workers through JobkitBackend."""

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from shop.models import Order


@task
def add(a, b):
    return a + b


@task(queue_name="emails", priority=10)
def confirm(order_id):
    Order.objects.filter(id=order_id).update(confirmed=True)
    return {"order": order_id, "confirmed": True}


@task
def fail(message):
    raise ValueError(message)


@task(takes_context=True)
def attempt_number(context):
    return context.attempt


@task
async def async_double(value):
    return value * 2


@task
def returns_a_set():
    return {1, 2}
