"""Per-model admission: ``parallel`` generations at a time, others wait in a bounded FIFO queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import anyio


class Overloaded(Exception):
    """The model is busy and its queue is full."""


class ModelQueue:
    """``parallel`` slots with at most ``size`` FIFO waiters; one more gets :class:`Overloaded`.

    ``parallel`` is the engine's: the slots of a model in this process, the requests an
    upstream is sent at once.
    """

    def __init__(self, size: int, parallel: int = 1) -> None:
        self.size = size
        self.parallel = parallel
        self.waiting = 0
        self.running = 0  # generations holding a slot
        self._slots = asyncio.Semaphore(parallel)  # wakes its waiters in FIFO order

    @property
    def busy(self) -> bool:
        """Every slot is generating."""
        return self._slots.locked()

    @contextlib.asynccontextmanager
    async def slot(self, stopped: asyncio.Event) -> AsyncIterator[bool]:
        """Hold the model for the block and yield True; raise :class:`Overloaded` if the queue
        is full. If ``stopped`` is set while waiting, leave the queue at once and yield False.
        """
        if self._slots.locked() and self.waiting >= self.size:
            raise Overloaded(f"the model is busy and {self.waiting} requests are waiting")
        self.waiting += 1
        try:
            held = await self._acquire(stopped)
        finally:
            self.waiting -= 1
        self.running += held
        try:
            yield held
        finally:
            if held:
                self.running -= 1
                self._slots.release()

    async def _acquire(self, stopped: asyncio.Event) -> bool:
        """Take a slot, unless ``stopped`` is set first."""
        if stopped.is_set():
            return False
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        acquired = False
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    await stopped.wait()
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._slots.acquire()  # a cancelled waiter passes its turn on
                acquired = True
                group.cancel_scope.cancel()
        except BaseException:
            if acquired:  # cancelled while leaving the group, the slot already ours
                self._slots.release()
            raise
        return acquired
