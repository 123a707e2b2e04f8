"""The replica set in-process, over small engines of its own: which replica a request goes
to, failover before the first token and none after, every replica down, probing back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import anyio
import pytest

from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    ChatMessage,
    GenerationRequest,
    Job,
    ReplicaState,
    UpstreamUnavailable,
)
from h2o_chat.server.backends.replicas import ReplicaBackend, ReplicatedBackend

PATIENCE = 10.0  # seconds a condition may take before the test fails (never a speed figure)
ANSWER = "one two"


class Engine:
    """A replica: ``"one" " two"`` and its end token, once ``gate`` is open.

    ``before`` is raised before the first token, ``after`` after it; ``healthy`` is what its
    probe answers. ``served`` holds the question of every request it began.
    """

    kind = "test"

    def __init__(self, *, context_length: int = 4096, parallel: int = 2, top_n: int = 0) -> None:
        self.context_length = context_length
        self.parallel = parallel
        self.max_top_n_tokens = top_n
        self.healthy = True
        self.before: BaseException | None = None
        self.after: BaseException | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.served: list[str] = []
        self.starts = 0
        self.probes = 0
        self.open_streams = 0
        self.closed = False

    async def start(self) -> None:
        self.starts += 1

    async def probe(self) -> bool:
        self.probes += 1
        return self.healthy

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        self.served.append(job.request.messages[-1].content)
        self.open_streams += 1
        try:
            await self.gate.wait()
            if self.before is not None:
                raise self.before
            yield BackendToken(1, "one")
            if self.after is not None:
                raise self.after
            yield BackendToken(2, " two")
            yield BackendToken(0, "", eos=True)
        finally:
            self.open_streams -= 1

    async def aclose(self) -> None:
        self.closed = True


def url(index: int) -> str:
    return f"http://127.0.0.1:{9000 + index}/v1"


def job(question: str) -> Job:
    return Job(GenerationRequest((ChatMessage("user", question),), max_new_tokens=8))


async def answer(backend: ReplicatedBackend, question: str) -> str:
    return "".join([token.text async for token in backend.stream(job(question))])


async def until(condition: Callable[[], bool], what: str) -> None:
    with anyio.move_on_after(PATIENCE):
        while not condition():
            await asyncio.sleep(0.005)
        return
    raise AssertionError(f"still not {what} after {PATIENCE} s")


def replica_set(*engines: Engine, probe_every: float = 60.0) -> ReplicatedBackend:
    members: list[tuple[str, ReplicaBackend]] = [(url(i), e) for i, e in enumerate(engines)]
    return ReplicatedBackend(members, probe_every=probe_every)


@contextlib.asynccontextmanager
async def started(*engines: Engine, probe_every: float = 60.0) -> AsyncIterator[ReplicatedBackend]:
    backend = replica_set(*engines, probe_every=probe_every)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


def states(backend: ReplicatedBackend) -> list[tuple[bool, int, int]]:
    """Each replica's (up, in flight, requests)."""
    return [(s.up, s.in_flight, s.requests) for s in backend.replica_states()]


def test_engine_is_a_replica_backend() -> None:
    assert isinstance(Engine(), ReplicaBackend)


async def test_the_set_adds_the_slots_and_keeps_the_smallest_limits() -> None:
    big, small = Engine(parallel=2, top_n=5), Engine(context_length=2048, parallel=3)
    async with started(big, small) as backend:
        assert (backend.kind, backend.parallel) == ("replicas", 5)
        assert (backend.context_length, backend.max_top_n_tokens) == (2048, 0)
        assert big.starts == small.starts == 1


async def test_each_request_goes_to_the_replica_with_the_fewest_in_flight() -> None:
    engines = [Engine(), Engine(), Engine()]
    for engine in engines:
        engine.gate.clear()
    a, b, c = engines
    async with started(*engines) as backend, anyio.create_task_group() as group:
        results: dict[str, str] = {}

        async def ask(question: str) -> None:
            results[question] = await answer(backend, question)

        def begun(question: str) -> Callable[[], bool]:
            return lambda: question in a.served + b.served + c.served

        for question in ("r1", "r2", "r3"):  # all idle: in turn
            group.start_soon(ask, question)
            await until(begun(question), f"{question} begun")
        assert (a.served, b.served, c.served) == (["r1"], ["r2"], ["r3"])
        b.gate.set()
        await until(lambda: "r2" in results, "r2 answered")
        b.gate.clear()
        group.start_soon(ask, "r4")  # b alone has nothing in flight
        await until(lambda: "r4" in b.served, "r4 on b")
        group.start_soon(ask, "r5")  # one each: the tie goes to the one after b
        await until(lambda: "r5" in c.served, "r5 on c")
        assert states(backend) == [(True, 1, 1), (True, 1, 2), (True, 2, 2)]
        for engine in engines:
            engine.gate.set()
    assert results == dict.fromkeys(("r1", "r2", "r3", "r4", "r5"), ANSWER)
    assert states(backend) == [(True, 0, 1), (True, 0, 2), (True, 0, 2)]


@pytest.mark.parametrize(
    "failure",
    [
        UpstreamUnavailable("the upstream model server is unreachable"),
        BackendError("the upstream model server is unreachable or cut the stream"),
        BackendError("the upstream stream ended unfinished", "incomplete_generation"),
        RuntimeError("engine exploded"),
    ],
    ids=["unavailable", "cut", "unfinished", "crash"],
)
async def test_a_failure_before_the_first_token_moves_the_request_on(
    failure: BaseException,
) -> None:
    a, b = Engine(), Engine()
    a.before = failure
    async with started(a, b) as backend:
        assert await answer(backend, "q") == ANSWER
        assert (a.served, b.served) == (["q"], ["q"])
        assert states(backend) == [(False, 0, 1), (True, 0, 1)]
        assert await answer(backend, "next") == ANSWER  # the down replica is left alone
        assert (a.served, b.served) == (["q"], ["q", "next"])


async def test_after_the_first_token_the_failure_reaches_the_client() -> None:
    a, b = Engine(), Engine()
    a.after = BackendError("the upstream model server is unreachable or cut the stream")
    async with started(a, b) as backend:
        received = []
        with pytest.raises(BackendError) as caught:
            async for token in backend.stream(job("q")):
                received.append(token.text)
        assert caught.value is a.after
        assert received == ["one"]
        assert (a.served, b.served) == (["q"], [])  # never sent twice
        assert states(backend) == [(False, 0, 1), (True, 0, 0)]


async def test_a_request_stopped_before_its_replica_fails_is_not_sent_on() -> None:
    a, b = Engine(), Engine()
    a.gate.clear()
    a.before = UpstreamUnavailable("the upstream model server is unreachable")
    stopped = job("q")
    async with started(a, b) as backend:
        pending = asyncio.ensure_future(anext(backend.stream(stopped), None))
        await until(lambda: a.served == ["q"], "sent to a")
        stopped.stop()
        a.gate.set()
        assert await pending is None  # the stream ends, with no token and no error
        assert (a.served, b.served) == (["q"], [])


async def test_a_failure_of_the_request_itself_passes_through() -> None:
    a, b = Engine(), Engine()
    a.before = BackendError("`inputs` tokens + `max_new_tokens` must be <= 4096", "validation")
    async with started(a, b) as backend:
        with pytest.raises(BackendError) as caught:
            await answer(backend, "q")
        assert caught.value is a.before
        assert (a.served, b.served) == (["q"], [])
        assert states(backend) == [(True, 0, 1), (True, 0, 0)]


async def test_with_every_replica_down_the_request_fails_at_once() -> None:
    a, b = Engine(), Engine()
    for engine in (a, b):
        engine.before = UpstreamUnavailable("the upstream model server is unreachable")
    async with started(a, b) as backend:
        a.healthy = b.healthy = False
        with pytest.raises(BackendError) as first:
            await answer(backend, "q")
        assert first.value.error_type == "overloaded"
        assert first.value.message == (
            "no replica of the model is up; the last one tried failed: "
            "the upstream model server is unreachable"
        )
        with pytest.raises(BackendError) as then:
            await answer(backend, "again")
        assert (then.value.error_type, then.value.message) == (
            "overloaded",
            "no replica of the model is up",
        )
        assert (a.served, b.served) == (["q"], ["q"])
        assert states(backend) == [(False, 0, 1), (False, 0, 1)]


async def test_a_down_replica_serves_again_once_its_probe_answers() -> None:
    a, b = Engine(), Engine()
    a.before = UpstreamUnavailable("the upstream model server is unreachable")
    async with started(a, b, probe_every=0.01) as backend:
        a.healthy = False
        assert await answer(backend, "q") == ANSWER
        await until(lambda: a.probes >= 4, "probed while down")  # 1 at start, then 3 more
        assert not backend.replica_states()[0].up
        a.before, a.healthy = None, True
        await until(lambda: backend.replica_states()[0].up, "back up")
        probes = a.probes
        assert await answer(backend, "after") == ANSWER
        assert a.served == ["q", "after"]
        await asyncio.sleep(0.05)
        assert a.probes == probes  # an up replica is not probed
        assert a.starts == 1  # started once, at start


async def test_a_replica_down_at_start_is_started_when_it_answers() -> None:
    up, late = Engine(), Engine(context_length=1024)
    late.healthy = False
    async with started(up, late, probe_every=0.01) as backend:
        assert backend.context_length == 4096  # the late one's is not known at start
        assert [s.up for s in backend.replica_states()] == [True, False]
        assert late.starts == 0
        late.healthy = True
        await until(lambda: backend.replica_states()[1].up, "late replica up")
        assert late.starts == 1


async def test_the_set_does_not_start_when_no_replica_answers() -> None:
    a, b = Engine(), Engine()
    a.healthy = b.healthy = False
    backend = replica_set(a, b)
    with pytest.raises(BackendError) as caught:
        await backend.start()
    assert caught.value.message == f"no replica answered: {url(0)}, {url(1)}"
    await backend.aclose()
    assert a.closed and b.closed


async def test_a_stream_closed_early_frees_its_replica() -> None:
    a = Engine()
    async with started(a) as backend:
        async with contextlib.aclosing(backend.stream(job("q"))) as tokens:
            first = await anext(tokens)
            assert (first.text, a.open_streams, states(backend)) == ("one", 1, [(True, 1, 1)])
        assert (a.open_streams, states(backend)) == (0, [(True, 0, 1)])


async def test_closing_the_set_stops_probing_and_closes_every_replica() -> None:
    a, b = Engine(), Engine()
    b.healthy = False
    backend = replica_set(a, b, probe_every=0.01)
    await backend.start()
    await until(lambda: b.probes >= 3, "probing")
    await backend.aclose()
    probes = b.probes
    await asyncio.sleep(0.05)
    assert b.probes == probes
    assert a.closed and b.closed


def test_a_replica_is_shown_without_credentials() -> None:
    backend = ReplicatedBackend([("http://user:secret@127.0.0.1:9000/v1", Engine())])
    assert backend.replica_states() == [ReplicaState("http://127.0.0.1:9000/v1", False, 0, 0)]
