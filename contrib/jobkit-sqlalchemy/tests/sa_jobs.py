"""A model and a job for the plugin's tests; the worker subprocess imports it (JOBKIT_IMPORTS)."""

from __future__ import annotations

from sqlalchemy import Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobkit import Job, register_job


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    total: Mapped[int]


@register_job(name="sqlalchemy_tests.SendReceipt")
class SendReceipt(Job):
    def __init__(self, order_id: int):
        self.order_id = order_id

    def run(self) -> int:
        return self.order_id


@register_job(name="sqlalchemy_tests.Keyed")
class Keyed(Job):
    def __init__(self, key: str):
        self.key = key

    def default_concurrency_key(self) -> str:
        return self.key

    def run(self) -> None:
        pass
