"""``ModelQueue`` in-process: slots, the FIFO line, overflow, waiters that leave."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from h2o_chat.server.scheduler import ModelQueue, Overloaded
from tests.support.loop import until


class Request:
    """A generation as a task: it asks ``queue`` for a slot and holds it until released.

    ``held`` is None while it waits, then what the slot yielded; the names of the requests
    that got a slot are appended to ``served`` in the order they got it.
    """

    def __init__(self, queue: ModelQueue, name: str, served: list[str]) -> None:
        self.name = name
        self.stopped = asyncio.Event()  # the job's stop signal (stop-generating)
        self.done = asyncio.Event()  # the generation ends and gives its slot back
        self.held: bool | None = None
        self.task = asyncio.create_task(self._run(queue, served))

    async def _run(self, queue: ModelQueue, served: list[str]) -> None:
        async with queue.slot(self.stopped) as held:
            self.held = held
            if held:
                served.append(self.name)
                await self.done.wait()

    async def turn(self) -> None:
        """Wait until the queue has answered: a slot, or leave to go (``held`` False)."""
        await until(lambda: self.held is not None, f"{self.name}'s turn")

    async def finish(self) -> None:
        self.done.set()
        await self.task


async def queued(queue: ModelQueue, name: str, served: list[str]) -> Request:
    """A request that has joined the line (the queue counts one more waiter)."""
    before = queue.waiting
    request = Request(queue, name, served)
    await until(lambda: queue.waiting == before + 1, f"{name} joining the line")
    return request


async def running(queue: ModelQueue, name: str, served: list[str]) -> Request:
    """A request that holds a slot."""
    request = Request(queue, name, served)
    await request.turn()
    assert request.held
    return request


async def test_a_free_model_is_taken_at_once_and_given_back() -> None:
    queue = ModelQueue(size=0)
    async with queue.slot(asyncio.Event()) as held:
        assert held
        assert (queue.running, queue.busy, queue.waiting) == (1, True, 0)
    assert (queue.running, queue.busy, queue.waiting) == (0, False, 0)


async def test_the_slot_is_given_back_when_the_generation_fails() -> None:
    queue = ModelQueue(size=0)
    with pytest.raises(ValueError, match="engine broke"):
        async with queue.slot(asyncio.Event()):
            raise ValueError("engine broke")
    assert (queue.running, queue.busy) == (0, False)


async def test_waiters_are_served_in_the_order_they_came() -> None:
    queue, served = ModelQueue(size=3), list[str]()
    first = await running(queue, "first", served)
    waiting = [await queued(queue, name, served) for name in ("a", "b", "c")]
    await first.finish()
    for request in waiting:
        await request.turn()
        await request.finish()
    assert served == ["first", "a", "b", "c"]


async def test_a_newcomer_waits_behind_the_line_even_as_a_slot_frees() -> None:
    queue, served = ModelQueue(size=2), list[str]()
    first = await running(queue, "first", served)
    waiting = await queued(queue, "waiting", served)
    first.done.set()
    await first.task  # the slot is handed to the waiter, which has not run yet
    newcomer = Request(queue, "newcomer", served)
    await waiting.turn()
    assert newcomer.held is None
    await waiting.finish()
    await newcomer.turn()
    await newcomer.finish()
    assert served == ["first", "waiting", "newcomer"]


async def test_one_more_than_the_line_holds_is_overloaded() -> None:
    queue, served = ModelQueue(size=1), list[str]()
    first = await running(queue, "first", served)
    waiting = await queued(queue, "waiting", served)
    with pytest.raises(Overloaded, match="the model is busy and 1 requests are waiting"):
        async with queue.slot(asyncio.Event()):
            pytest.fail("an overloaded request got a slot")
    assert (queue.running, queue.waiting) == (1, 1)  # the refusal took no place
    await first.finish()
    await waiting.turn()
    await waiting.finish()
    assert served == ["first", "waiting"]


async def test_with_no_line_only_a_free_model_admits() -> None:
    queue, served = ModelQueue(size=0), list[str]()
    first = await running(queue, "first", served)
    with pytest.raises(Overloaded):
        async with queue.slot(asyncio.Event()):
            pass
    await first.finish()
    second = await running(queue, "second", served)
    await second.finish()
    assert served == ["first", "second"]


async def test_a_waiter_that_stops_leaves_at_once_and_frees_its_place() -> None:
    queue, served = ModelQueue(size=1), list[str]()
    first = await running(queue, "first", served)
    leaving = await queued(queue, "leaving", served)
    leaving.stopped.set()  # stop-generating while in line
    await leaving.task
    assert leaving.held is False
    assert (queue.waiting, queue.running) == (0, 1)
    next_one = await queued(queue, "next", served)  # its place is free: not overloaded
    await first.finish()
    await next_one.turn()
    await next_one.finish()
    assert served == ["first", "next"]


async def test_a_waiter_that_goes_away_passes_its_turn_on() -> None:
    queue, served = ModelQueue(size=2), list[str]()
    first = await running(queue, "first", served)
    gone, after = await queued(queue, "gone", served), await queued(queue, "after", served)
    gone.task.cancel()  # the client disconnected: its request task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await gone.task
    assert queue.waiting == 1
    await first.finish()
    await after.turn()
    await after.finish()
    assert served == ["first", "after"]
    assert (queue.running, queue.busy, queue.waiting) == (0, False, 0)


HANDOVER_TURNS = 8  # loop turns the handed-over slot takes to reach its waiter, and more


async def test_a_waiter_that_goes_away_as_its_turn_comes_passes_it_on() -> None:
    for turns in range(HANDOVER_TURNS):
        queue, served = ModelQueue(size=2), list[str]()
        first = await running(queue, "first", served)
        gone, after = await queued(queue, "gone", served), await queued(queue, "after", served)
        first.done.set()
        for _ in range(turns):
            await asyncio.sleep(0)
        gone.task.cancel()  # the client disconnects as its turn comes
        with contextlib.suppress(asyncio.CancelledError):
            await gone.task
        await first.task
        await after.turn()
        await after.finish()
        assert after.name in served, f"the turn was lost when cancelled {turns} turns in"
        assert (queue.running, queue.busy, queue.waiting) == (0, False, 0), turns


async def test_a_stopped_job_never_takes_a_slot() -> None:
    queue = ModelQueue(size=1)
    stopped = asyncio.Event()
    stopped.set()
    async with queue.slot(stopped) as held:
        assert not held
        assert (queue.running, queue.busy) == (0, False)


async def test_parallel_slots_run_together_and_then_the_line_waits() -> None:
    queue, served = ModelQueue(size=1, parallel=2), list[str]()
    first = await running(queue, "first", served)
    assert (queue.busy, queue.running) == (False, 1)  # one slot left
    second = await running(queue, "second", served)
    assert (queue.busy, queue.running) == (True, 2)
    third = await queued(queue, "third", served)
    with pytest.raises(Overloaded):
        async with queue.slot(asyncio.Event()):
            pass
    await second.finish()
    await third.turn()
    assert (queue.running, queue.waiting) == (2, 0)
    await first.finish()
    await third.finish()
    assert served == ["first", "second", "third"]
    assert (queue.running, queue.busy) == (0, False)
