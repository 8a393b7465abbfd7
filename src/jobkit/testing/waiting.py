"""Waiting in tests without sleeping past the moment: poll a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, message: str = "", *, interval: float = 0.01
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail the test
    (``pytest.fail``, or ``AssertionError`` outside pytest) when ``timeout`` seconds pass
    first. ``message`` says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = f"not within {timeout} s: {message or condition}"
            try:
                import pytest
            except ImportError:  # pragma: no cover - the contract suite runs under pytest
                raise AssertionError(text) from None
            pytest.fail(text, pytrace=False)
        time.sleep(interval)
