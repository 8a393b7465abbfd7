"""A FastAPI app that enqueues a job inside its own database transaction and reads the job's
result back, with jobkit's async API.

    DATABASE_URL=postgresql://... uvicorn fastapi_app.app:app      # from examples/
    JOBKIT_DATABASE_URL=$DATABASE_URL JOBKIT_IMPORTS=fastapi_app.jobs jobkit worker

``POST /orders`` inserts the order and enqueues its ``ConfirmOrder`` job in one transaction, on
the app's own async connection: the job exists if and only if the order does. A stock check
that fails after the enqueue rolls both back. ``GET /orders/{id}`` reads the order, and its job's
result with ``await jobkit.aget_result()``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg_pool
from fastapi import FastAPI, HTTPException
from psycopg import sql
from pydantic import BaseModel, Field

import jobkit
from fastapi_app.jobs import APP_SCHEMA, ConfirmOrder, orders_table

DATABASE_URL = os.environ["DATABASE_URL"]
STOCK = 10
"""The most of one item an order can take."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with psycopg_pool.AsyncConnectionPool(DATABASE_URL, open=False) as pool:
        async with pool.connection() as connection:
            await connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(APP_SCHEMA))
            )
            await connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY "
                    "PRIMARY KEY, item text NOT NULL, quantity int NOT NULL, status text NOT "
                    "NULL DEFAULT 'new', job_id uuid)"
                ).format(orders_table())
            )
        app.state.pool = pool
        yield
        await jobkit.aclose()  # jobkit's async connections of this loop


app = FastAPI(lifespan=lifespan)


class NewOrder(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(gt=0)


@app.post("/orders", status_code=201)
async def create_order(order: NewOrder) -> dict[str, Any]:
    pool: psycopg_pool.AsyncConnectionPool = app.state.pool
    async with pool.connection() as connection:  # commits when the block ends, rolls back on error
        cursor = await connection.execute(
            sql.SQL("INSERT INTO {} (item, quantity) VALUES (%s, %s) RETURNING id").format(
                orders_table()
            ),
            (order.item, order.quantity),
        )
        row = await cursor.fetchone()
        assert row is not None
        order_id = row[0]
        request = await ConfirmOrder(order_id).arun_in_worker(connection=connection)
        assert request is not None  # a new order's key is free
        if order.quantity > STOCK:
            # Raised inside the transaction: the order and its job are both rolled back.
            raise HTTPException(409, f"only {STOCK} of {order.item!r} in stock")
        await connection.execute(
            sql.SQL("UPDATE {} SET job_id = %s WHERE id = %s").format(orders_table()),
            (request.job_id, order_id),
        )
    return {"order_id": order_id, "job_id": str(request.job_id)}


@app.get("/orders/{order_id}")
async def read_order(order_id: int) -> dict[str, Any]:
    pool: psycopg_pool.AsyncConnectionPool = app.state.pool
    async with pool.connection() as connection:
        cursor = await connection.execute(
            sql.SQL("SELECT item, quantity, status, job_id FROM {} WHERE id = %s").format(
                orders_table()
            ),
            (order_id,),
        )
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    item, quantity, status, job_id = row
    result = await jobkit.aget_result(job_id)
    job: dict[str, Any] = {"id": str(job_id), "status": "waiting"}
    if result is not None:
        job.update(status=result.status.value, output=result.output)
    return {"order_id": order_id, "item": item, "quantity": quantity, "status": status, "job": job}
