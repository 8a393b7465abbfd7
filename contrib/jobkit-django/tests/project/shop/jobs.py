"""The shop's jobs, found by jobkit_django in this app's jobs.py."""

from jobkit import Job, Pipeline, register_job
from shop.models import Order


@register_job
class ConfirmOrder(Job):
    """Mark an order confirmed (from a worker, through Django's ORM)."""

    def __init__(self, order_id: int):
        self.order_id = order_id

    def run(self):
        Order.objects.filter(id=self.order_id).update(confirmed=True)


@register_job
class ChargeCard(Job):
    """Always fails: a job for the admin's failed lists and retries."""

    def __init__(self, order_id: int):
        self.order_id = order_id

    def run(self):
        raise RuntimeError(f"card declined for order {self.order_id}")


@register_job
class Sleep(Job):
    """Runs until it is cancelled: a job for the running attempts page."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self):
        import time

        time.sleep(self.seconds)


@register_job
class Checkout(Pipeline):
    """Two steps over its workspace; ``pay`` fails when it holds ``"declined": true``."""

    steps = ("reserve", "pay")

    def reserve(self):
        self.workspace["reserved"] = True

    def pay(self):
        if self.workspace.get("declined"):
            raise RuntimeError("payment declined")
