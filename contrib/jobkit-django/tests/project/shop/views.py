from django.db import transaction
from django.http import HttpResponse

from shop.jobs import ConfirmOrder
from shop.models import Order


def place_order(request):
    """Create an order and enqueue its confirmation in one transaction; ``fail=1`` makes the
    transaction roll back after the enqueue."""
    with transaction.atomic():
        order = Order.objects.create(customer=request.GET.get("customer", "ada"))
        request_id = ConfirmOrder(order.id).run_in_worker()
        if request.GET.get("fail"):
            raise RuntimeError("payment failed")
    return HttpResponse(f"{order.id} {request_id.job_id}")
