"""Waiting on the event loop without a clock: for unit tests of concurrent code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MAX_TURNS = 1000  # loop turns before giving up: far more than any test here needs


async def until(condition: Callable[[], bool], what: str = "the condition") -> None:
    """Let other tasks run until ``condition()`` holds; fail after :data:`MAX_TURNS` turns."""
    for _ in range(MAX_TURNS):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} did not happen in {MAX_TURNS} turns of the event loop")
