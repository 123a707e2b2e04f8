"""Per-model admission: one generation at a time, the others wait in a bounded FIFO queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import anyio


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
    async def slot(self, stopped: asyncio.Event) -> AsyncIterator[bool]:
        """Hold the model for the block and yield True; raise :class:`Overloaded` if the queue
        is full. If ``stopped`` is set while waiting, leave the queue at once and yield False.
        """
        if self._lock.locked() and self.waiting >= self.size:
            raise Overloaded(f"the model is busy and {self.waiting} requests are waiting")
        self.waiting += 1
        try:
            held = await self._acquire(stopped)
        finally:
            self.waiting -= 1
        try:
            yield held
        finally:
            if held:
                self._lock.release()

    async def _acquire(self, stopped: asyncio.Event) -> bool:
        """Take the lock, unless ``stopped`` is set first."""
        if stopped.is_set():
            return False
        if not self._lock.locked():
            await self._lock.acquire()
            return True
        acquired = False
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                await stopped.wait()
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._lock.acquire()  # asyncio.Lock passes its turn on if cancelled here
            acquired = True
            group.cancel_scope.cancel()
        return acquired
