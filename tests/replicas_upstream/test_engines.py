"""Real engines as replicas: llama.cpp's servers (from the wheel the server embeds) behind one
model of the project's server, each in a process of its own on 127.0.0.1. One is killed under
40 streams and restarted on its port; one is down when the server starts and joins later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import h2o_chat
from h2o_chat import errors, weights
from h2o_chat.server.backends.openai_upstream import OpenAIUpstreamBackend
from tests.support.engines import llama_server
from tests.support.lab import RecordProperty
from tests.support.servers import RunningServer, free_port, h2o_server

MODEL = "smol"
ENGINE = ("--parallel", "4", "--threads", "1")  # two engines share the machine's cores
GATEWAY = ("--upstream-parallel", "6", "--queue-size", "64", "--upstream-timeout", "30")
STREAMS = 40
TOKENS = 48
KILL_AFTER_DECODED = 8  # tokens a slot of the victim has made when it is killed
PATIENCE = 180.0  # seconds a run or a condition may take before the test fails (a hang guard)


def v1(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def survivor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with llama_server(weights.ensure(), tmp_path_factory.mktemp("survivor"), *ENGINE) as server:
        yield server


def gateway(tmp_path: Path, *ports: int) -> AbstractContextManager[RunningServer]:
    """The project's server with the model ``smol`` replicated on the engines at ``ports``."""
    source = ",".join(f"{v1(port)}#smol" for port in ports)
    return h2o_server(tmp_path, "--model", f"{MODEL}={source}", *GATEWAY)


def replicas(server: RunningServer) -> dict[str, dict[str, Any]]:
    """``/healthz``'s replicas of the model, by URL."""
    health = httpx.get(server.url + "/healthz").json()
    return {replica["url"]: replica for replica in health["models"][MODEL]["replicas"]}


def metric(server: RunningServer, name: str, port: int) -> float:
    """The sample ``name`` of the model's replica at ``port`` on ``/metrics``."""
    text = httpx.get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == {"model": MODEL, "replica": v1(port)}:
                return sample.value
    raise AssertionError(f"no {name} for {v1(port)} in:\n{text}")


def wait_until(condition: Callable[[], bool], what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after PATIENCE)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > PATIENCE:
            raise AssertionError(f"still not {what} after {PATIENCE} s")
        time.sleep(0.05)
    return time.monotonic() - started


def engine_slots(engine: RunningServer) -> list[dict[str, Any]]:
    """llama.cpp's own account of its slots (``GET /slots``)."""
    slots: list[dict[str, Any]] = httpx.get(engine.url + "/slots").json()
    return slots


def tasks_served(engine: RunningServer) -> int:
    """Slots that have run a task since the engine started: its own traffic."""
    return sum("id_task" in slot for slot in engine_slots(engine))


@dataclass
class Stream:
    """One answer as the client saw it."""

    texts: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    generated_text: str | None = None  # the final event's
    error: errors.GenerationError | None = None


async def ask(url: str, questions: list[str], streams: list[Stream]) -> None:
    """Ask every question at once, one conversation each, greedy; no client retries."""
    limits = httpx.Limits(max_connections=2 * len(questions))
    async with h2o_chat.AsyncClient(url, timeout=60, max_retries=0, limits=limits) as client:

        async def one(question: str, stream: Stream) -> None:
            answer = client.conversation(MODEL).stream(
                question, max_new_tokens=TOKENS, do_sample=False, repetition_penalty=1.0
            )
            try:
                async for event in answer:
                    stream.first_token_at = stream.first_token_at or time.monotonic()
                    if not event.token.special:
                        stream.texts.append(event.token.text)
                    if event.generated_text is not None:
                        stream.generated_text = event.generated_text
            except errors.GenerationError as exc:
                stream.error = exc

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as group:
                for question, stream in zip(questions, streams, strict=True):
                    group.start_soon(one, question, stream)


def run_streams(url: str, count: int, during: Callable[[], None] | None = None) -> list[Stream]:
    """``count`` answers at once; ``during`` runs meanwhile, in a thread."""
    streams = [Stream() for _ in range(count)]
    questions = [f"Tell me a short story about the number {n}." for n in range(count)]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(ask, url, questions, streams)
            if during is not None:
                group.start_soon(anyio.to_thread.run_sync, during)

    asyncio.run(main())
    return streams


def assert_completed(stream: Stream) -> None:
    assert stream.error is None, stream.error
    assert stream.texts and stream.generated_text == "".join(stream.texts)


@pytest.mark.reliability(
    "An engine replica killed under 40 streams, then restarted",
    section="Server faults",
    did=(
        "Two llama.cpp servers (4 slots, 1 thread each) as replicas of one model; 40 greedy "
        "streams of 48 tokens at once through the H2o protocol (no client retries); SIGKILL "
        "one engine once one of its slots has made 8 tokens; then restart it on its port and "
        "send 6 more streams"
    ),
    expect=(
        "Every stream completes, or ends with an error event whose partial text is exactly "
        "what it had received (only streams with a token before the kill); every stream "
        "without a token by then completes on the survivor; none hangs; /healthz shows the "
        "killed replica down, then up once restarted; the restarted engine serves requests"
    ),
)
def test_a_replica_killed_mid_run_then_restarted(
    survivor: RunningServer, tmp_path: Path, record_property: RecordProperty
) -> None:
    model = weights.ensure()
    port = free_port()
    for folder in ("victim", "restarted"):
        (tmp_path / folder).mkdir()
    killed_at = 0.0
    with (
        llama_server(model, tmp_path / "victim", *ENGINE, port=port) as victim,
        gateway(tmp_path, port_of(survivor), port) as server,
    ):

        def kill_mid_answer() -> None:
            nonlocal killed_at

            def decoding() -> bool:
                slots = engine_slots(victim)
                return any(
                    token["n_decoded"] >= KILL_AFTER_DECODED
                    for slot in slots
                    for token in slot.get("next_token", [])
                )

            wait_until(decoding, "decoding on the victim")
            victim.process.kill()
            victim.process.wait()
            killed_at = time.monotonic()

        streams = run_streams(server.url, STREAMS, during=kill_mid_answer)
        cut = [s for s in streams if s.error is not None]
        after_kill = [s for s in streams if (s.first_token_at or 0) > killed_at]
        for stream in streams:
            if stream.error is None:
                assert_completed(stream)
                continue
            assert stream.error.partial_text == "".join(stream.texts)
            assert stream.first_token_at is not None and stream.first_token_at < killed_at
            assert "cut the stream" in stream.error.message
        assert cut, "the kill reached no stream mid-answer"
        assert after_kill  # streams that had not started landed on the survivor, and completed
        states = replicas(server)
        moved = sum(replica["requests"] for replica in states.values()) - STREAMS
        assert moved >= 1  # queued in the victim, no token yet: sent to the survivor at once
        assert states[v1(port)]["state"] == "down"
        assert states[v1(port_of(survivor))]["state"] == "up"
        assert {replica["in_flight"] for replica in states.values()} == {0}
        record_property("completed", len(streams) - len(cut))
        record_property("ended with their partial text", len(cut))
        record_property("first token after the kill", len(after_kill))
        record_property("moved to the survivor before their first token", moved)

        with llama_server(model, tmp_path / "restarted", *ENGINE, port=port) as restarted:
            back = wait_until(lambda: replicas(server)[v1(port)]["state"] == "up", "back up")
            sent = metric(server, "h2o_chat_replica_requests_total", port)
            for stream in run_streams(server.url, 6):
                assert_completed(stream)
            assert metric(server, "h2o_chat_replica_requests_total", port) > sent
            assert tasks_served(restarted) >= 1
        record_property("seconds until the restarted replica was up", back)


def test_a_replica_down_at_start_joins_once_it_answers(
    survivor: RunningServer, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "late").mkdir()
    with gateway(tmp_path, port_of(survivor), port) as server:
        up, late = v1(port_of(survivor)), v1(port)
        assert replicas(server) == {
            up: {"url": up, "state": "up", "in_flight": 0, "requests": 0},
            late: {"url": late, "state": "down", "in_flight": 0, "requests": 0},
        }
        assert httpx.get(server.url + "/api/models").json()[0]["backend"] == "replicas"
        assert (
            metric(server, "h2o_chat_replica_up", port_of(survivor)),
            metric(server, "h2o_chat_replica_up", port),
        ) == (1, 0)
        for stream in run_streams(server.url, 2):
            assert_completed(stream)
        assert metric(server, "h2o_chat_replica_requests_total", port_of(survivor)) == 2
        with llama_server(weights.ensure(), tmp_path / "late", *ENGINE, port=port) as engine:
            wait_until(lambda: replicas(server)[late]["state"] == "up", "the late replica up")
            assert metric(server, "h2o_chat_replica_up", port) == 1
            for stream in run_streams(server.url, 4):
                assert_completed(stream)
            assert metric(server, "h2o_chat_replica_requests_total", port) >= 1
            assert tasks_served(engine) >= 1


async def test_an_upstream_probe_says_whether_the_engine_answers(
    survivor: RunningServer,
) -> None:
    up = OpenAIUpstreamBackend(survivor.url + "/v1", MODEL, timeout=5.0, parallel=1)
    down = OpenAIUpstreamBackend(v1(free_port()), MODEL, timeout=5.0, parallel=1)
    try:
        assert (await up.probe(), await down.probe()) == (True, False)
    finally:
        await up.aclose()
        await down.aclose()
