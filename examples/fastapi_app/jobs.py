"""The example app's job: confirm an order. A plain (sync) job, run by ``jobkit worker``; what it
returns is the job's output, which the app reads back with ``await jobkit.aget_result()``."""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from jobkit import Job, register_job

APP_SCHEMA = os.environ.get("APP_SCHEMA", "public")
"""The schema of the app's own table (``orders``), shared with the web app."""


def orders_table() -> sql.Identifier:
    return sql.Identifier(APP_SCHEMA, "orders")


@register_job(name="fastapi_app.ConfirmOrder")
class ConfirmOrder(Job):
    def __init__(self, order_id: int):
        self.order_id = order_id

    def default_concurrency_key(self) -> str:
        return f"order-{self.order_id}"  # one confirmation of an order at a time

    def run(self) -> dict[str, object]:
        with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
            query = sql.SQL(
                "UPDATE {} SET status = 'confirmed' WHERE id = %s RETURNING item, quantity"
            ).format(orders_table())
            row = connection.execute(query, (self.order_id,)).fetchone()
        if row is None:
            raise LookupError(f"order {self.order_id} does not exist")
        item, quantity = row
        return {"order_id": self.order_id, "confirmed": f"{quantity} x {item}"}
