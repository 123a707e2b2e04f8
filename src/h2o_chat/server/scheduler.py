"""Per-model admission: one generation at a time, the others wait in a bounded FIFO queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Overloaded(Exception):
    """The model is busy and its queue is full."""


class ModelQueue:
    """A FIFO lock with at most ``size`` waiters; one more gets :class:`Overloaded` at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.waiting = 0
        self._lock = asyncio.Lock()  # asyncio.Lock wakes its waiters in FIFO order

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the model for the block; raise :class:`Overloaded` if the queue is full."""
        if self._lock.locked() and self.waiting >= self.size:
            raise Overloaded(f"the model is busy and {self.waiting} requests are waiting")
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()
