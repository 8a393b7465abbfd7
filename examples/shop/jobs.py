"""The shop's jobs. A worker imports this module (``JOBKIT_IMPORTS=shop.jobs``) so that
``@register_job`` has run and the worker can look each job up by name.

Jobs may run more than once (a retry, or a worker that died mid-run), so each one is written to
be safe to repeat. Instead of sending email or resizing images, they print what they would do.
"""

from __future__ import annotations

import sys
import time

from jobkit import Job, register_job


def show(line: str) -> None:
    """Print a line in one write, so lines from the worker's pool processes never mix."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@register_job
class SendWelcomeEmail(Job):
    """Email a new customer (this example prints the email instead of sending it)."""

    def __init__(self, email: str, name: str):
        self.email = email
        self.name = name

    def default_queue(self) -> str:
        return "emails"

    def run(self) -> None:
        show(f"    [email] To: {self.email}  Subject: Welcome, {self.name}!")


@register_job
class ResizeImage(Job):
    """Make a thumbnail of a product photo (this example only pretends)."""

    def __init__(self, path: str, width: int = 200):
        self.path = path
        self.width = width

    def run(self) -> None:
        time.sleep(0.1)  # the work
        show(f"    [image] {self.path} -> {self.width}px thumbnail")


@register_job
class SyncInventory(Job):
    """Tell the warehouse about an order (fails on its first attempt, to show a retry).

    This example's warehouse API times out on the first call for every order. Enqueued with
    ``retries=2``, the job runs again after the failure and succeeds.
    """

    def __init__(self, order_id: int):
        self.order_id = order_id

    def calculate_retry_delay(self, attempt: int) -> float:
        return 0  # retry at once; a real app backs off, e.g. 2 ** attempt seconds

    def run(self) -> None:
        # job_process is the attempt a worker is running (None outside a worker, as under
        # `jobkit run`); retry_attempt counts the retries, 0 on the first attempt.
        if self.job_process is None or self.job_process.retry_attempt == 0:
            raise ConnectionError("the warehouse API timed out")
        show(f"    [inventory] order {self.order_id} synced")


@register_job
class RemindAbandonedCart(Job):
    """Remind a customer of the cart they left (enqueued with a delay)."""

    def __init__(self, email: str):
        self.email = email

    def default_queue(self) -> str:
        return "emails"

    def run(self) -> None:
        show(f"    [email] To: {self.email}  Subject: You left something in your cart")
