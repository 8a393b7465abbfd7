"""A second app's jobs, found as the shop's are."""

from jobkit import Job, register_job


@register_job
class SendInvoice(Job):
    def __init__(self, invoice_id: int):
        self.invoice_id = invoice_id

    def run(self):
        print(f"invoice {self.invoice_id} sent")
