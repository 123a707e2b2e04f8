"""Faults the server must survive: clients leaving, stop, engines and upstreams failing, SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import h2o_chat
from h2o_chat import errors
from tests.support.backends import SECRET, token_text
from tests.support.h2o import new_conversation, session_client, session_headers
from tests.support.lab import (
    TEST_MODELS,
    Lab,
    RecordProperty,
    abandon,
    lab,
    still_serving,
    unique,
    upstream,
)
from tests.support.servers import free_port

SECTION = "Server faults"
LIVENESS_SECONDS = 10.0  # a generous bound for "at once" / "no hang"
LONG_ANSWER = 2000  # tokens: 100 s of the slow engine, were it not stopped


def _numbered(count: int) -> str:
    return "".join(token_text(i) for i in range(count))


def _first_token_seconds(url: str, model: str, **parameters: Any) -> float:
    """Seconds until the first token of a new answer; the answer is then read to its end."""
    started = time.monotonic()
    with h2o_chat.Client(url, headers=session_headers()) as client:
        stream = client.conversation(model).stream(unique("next"), **parameters)
        next(stream)
        seconds = time.monotonic() - started
        for _ in stream:
            pass
    return seconds


@pytest.mark.reliability(
    "Client disconnects mid-stream (slow engine)",
    section=SECTION,
    did=(
        "Read 3 tokens of a 2000-token answer (one token per 50 ms), close the connection, "
        "then at once ask the same model for another answer"
    ),
    expect=(
        "The engine stops within one token of the disconnect (its trace says so); the next "
        "answer's first token arrives at once"
    ),
)
def test_disconnect_stops_the_generation(test_lab: Lab, record_property: RecordProperty) -> None:
    label = unique("disconnect")
    with h2o_chat.Client(test_lab.url, headers=session_headers()) as client:
        stream = client.conversation("slow").stream(label, max_new_tokens=LONG_ANSWER)
        received = [event.token.text for _, event in zip(range(3), stream, strict=False)]
        abandon(stream)
        left = time.time()
    next_first_token = _first_token_seconds(test_lab.url, "slow", max_new_tokens=3)
    end = test_lab.wait_for_end(label)
    tokens = [line for line in test_lab.trace(label) if line["event"] == "token"]
    after = [line for line in tokens if line["t"] > left]
    record_property("tokens read", len(received))
    record_property("tokens generated", len(tokens))
    record_property("generated after the disconnect", len(after))
    record_property("next first token (s)", next_first_token)
    assert received == [token_text(i) for i in range(3)]
    assert end["how"] in ("closed", "cancelled"), end
    assert len(after) <= 1, after
    assert next_first_token < LIVENESS_SECONDS


@pytest.mark.reliability(
    "Stop generating",
    section=SECTION,
    did=(
        "Async client: stream a 2000-token answer of the slow engine; after 3 tokens call "
        "conversation.stop() from the same session; then send the next turn"
    ),
    expect=(
        "The stream ends early: StreamClosedError with the partial text; the engine stops "
        "within one token; the partial answer is stored; the next turn works"
    ),
)
async def test_stop_generating(test_lab: Lab, record_property: RecordProperty) -> None:
    label, headers = unique("stop"), session_headers()
    async with h2o_chat.AsyncClient(test_lab.url, headers=headers) as client:
        conversation = client.conversation("slow")
        received: list[str] = []
        with pytest.raises(errors.StreamClosedError) as caught:
            async for event in conversation.stream(label, max_new_tokens=LONG_ANSWER):
                received.append(event.token.text)
                if len(received) == 3:
                    await conversation.stop()
                    stopped = time.time()
        end = test_lab.wait_for_end(label)
        after = [
            line
            for line in test_lab.trace(label)
            if line["event"] == "token" and line["t"] > stopped
        ]
        record_property("tokens received", len(received))
        record_property("generated after stop", len(after))
        assert caught.value.partial_text == "".join(received)
        assert received[:3] == [token_text(i) for i in range(3)]
        assert end["how"] in ("closed", "cancelled"), end
        assert len(after) <= 1, after
        second = await conversation.send("again", max_new_tokens=2)
        assert second.text == _numbered(2)
        assert conversation.id is not None
    with session_client(test_lab.url, headers) as raw:
        stored = raw.get(f"/conversation/{conversation.id}").json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", label),
        ("assistant", caught.value.partial_text),
        ("user", "again"),
        ("assistant", _numbered(2)),
    ]


@pytest.mark.reliability(
    "Engine raises mid-generation",
    section=SECTION,
    did="The failing engine yields 3 tokens, then raises RuntimeError naming a file path",
    expect=(
        "A TGI error event (type generation) after the 3 tokens: GenerationError carrying "
        "exactly their text, no path in the message; the server keeps serving"
    ),
)
def test_engine_raising_mid_generation(test_lab: Lab) -> None:
    label = unique("failing")
    with (
        h2o_chat.Client(test_lab.url, headers=session_headers()) as client,
        pytest.raises(errors.GenerationError) as caught,
    ):
        client.conversation("failing").send(label)
    assert caught.value.partial_text == _numbered(3)
    assert caught.value.error_type == "generation"
    assert SECRET not in caught.value.message and "Traceback" not in caught.value.message
    assert test_lab.wait_for_end(label)["how"] == "raised"
    still_serving(test_lab.url)


UPSTREAM_CASES = {
    "down": ("nothing listens on the port", errors.GenerationError, "unreachable", ""),
    "stall": ("2 chunks, then 30 s of silence", errors.GenerationError, "timed out", "a b"),
    "stall-headers": ("30 s of silence before any answer", errors.GenerationError, "timed out", ""),
    "cut": ("2 chunks, then the connection breaks", errors.GenerationError, "cut", "a b"),
    "fail": ("HTTP 500 with an error body", errors.GenerationError, "500", ""),
}


@pytest.fixture(scope="module")
def upstream_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server whose models are the misbehaving upstream's modes (upstream timeout 1 s)."""
    tmp = tmp_path_factory.mktemp("upstream")
    with upstream(tmp) as base:
        models = [f"up-{mode}={base}#{mode}" for mode in UPSTREAM_CASES if mode != "down"]
        models.append(f"up-down=http://127.0.0.1:{free_port()}/v1#down")
        models.append("up-ok=" + base + "#ok")
        models.append("up-length=" + base + "#length")
        args = [arg for model in models for arg in ("--model", model)]
        with lab(tmp, *args, "--upstream-timeout", "1") as running:
            yield running


@pytest.mark.reliability(
    "OpenAI-compatible upstream: {mode}",
    section=SECTION,
    did=(
        "A model served from a test upstream on loopback that is down / stalls mid-stream / "
        "stalls before answering / cuts the stream / answers 500; --upstream-timeout 1"
    ),
    expect=(
        "A clear error event (GenerationError) carrying the text received before it, within "
        "seconds, no hang; the server keeps serving (the healthy upstream model still answers)"
    ),
)
@pytest.mark.parametrize("mode", list(UPSTREAM_CASES))
def test_upstream_faults(upstream_lab: Lab, mode: str, record_property: RecordProperty) -> None:
    _, error, message, partial = UPSTREAM_CASES[mode]
    started = time.monotonic()
    with h2o_chat.Client(upstream_lab.url, headers=session_headers(), timeout=30) as client:
        with pytest.raises(error, match=message) as caught:
            client.conversation(f"up-{mode}").send("hello")
        seconds = time.monotonic() - started
        assert caught.value.partial_text == partial
        assert client.conversation("up-ok").send("hello").text == "a b c"
    record_property("error after (s)", seconds)
    record_property("message", caught.value.message)
    assert seconds < LIVENESS_SECONDS


@pytest.mark.reliability(
    "OpenAI-compatible upstream stops at its own limit",
    section=SECTION,
    did="A test upstream streams two words, then finish_reason 'length' before our own limit",
    expect="A complete answer of those words whose finish reason is 'length', not 'eos_token'",
)
def test_upstream_length_is_reported(upstream_lab: Lab) -> None:
    with h2o_chat.Client(upstream_lab.url, headers=session_headers()) as client:
        completion = client.conversation("up-length").send("hello", details=True)
    assert (completion.text, completion.finish_reason) == ("a b", "length")
    assert completion.tokens[-1].special


@pytest.mark.reliability(
    "An upstream engine is sent several generations at once, to batch",
    section=SECTION,
    did=(
        "A model served from a test upstream that stalls mid-answer, --upstream-parallel 2, "
        "--queue-size 1: three streams opened at once, then a fourth"
    ),
    expect=(
        "Two generations run at the upstream together and one waits (/healthz), the fourth "
        "is refused as overloaded; the in-process models keep one generation at a time"
    ),
)
def test_upstream_models_run_generations_in_parallel(tmp_path: Path) -> None:
    with upstream(tmp_path) as base:
        args = ["--model", f"up={base}#stall", "--upstream-parallel", "2", "--queue-size", "1"]
        with lab(tmp_path, *args, "--upstream-timeout", "20") as running:
            clients = [session_client(running.url) for _ in range(4)]
            streams = []
            try:
                for client in clients[:3]:
                    request = client.build_request(
                        "POST",
                        f"/conversation/{new_conversation(client, 'up')}",
                        json={"inputs": "hi"},
                    )
                    streams.append(client.send(request, stream=True))
                deadline = time.monotonic() + LIVENESS_SECONDS
                while time.monotonic() < deadline:
                    queue = clients[3].get("/healthz").json()["models"]["up"]
                    if (queue["running"], queue["waiting"]) == (2, 1):
                        break
                    time.sleep(0.05)
                assert queue == {"running": 2, "busy": True, "waiting": 1}
                fourth = f"/conversation/{new_conversation(clients[3], 'up')}"
                refused = clients[3].post(fourth, json={"inputs": "hi"}).text
                assert '"error_type":"overloaded"' in refused
            finally:
                for stream in streams:
                    stream.close()
                for client in clients:
                    client.close()


@pytest.mark.reliability(
    "SIGTERM during a stream",
    section=SECTION,
    did=(
        "Finish one conversation, start a 2000-token answer of the slow engine, send SIGTERM "
        "after 3 tokens; restart the server on the same database"
    ),
    expect=(
        "The stream ends with a typed error carrying the partial text; exit code 0 within "
        "seconds; after the restart both conversations are intact and a new turn works"
    ),
)
def test_sigterm_during_a_stream(tmp_path: Path, record_property: RecordProperty) -> None:
    db, headers = tmp_path / "kept.sqlite3", session_headers()
    label = unique("sigterm")
    with lab(tmp_path, *TEST_MODELS, db=db) as running:
        with h2o_chat.Client(running.url, headers=headers, max_retries=0) as client:
            kept = client.conversation("echo")
            kept.send("kept safe")
            cut = client.conversation("slow")
            received: list[str] = []
            with pytest.raises(errors.H2oError) as caught:
                for event in cut.stream(label, max_new_tokens=LONG_ANSWER):
                    received.append(event.token.text)
                    if len(received) == 3:
                        started = time.monotonic()
                        running.server.process.send_signal(signal.SIGTERM)
        code = running.server.stop(timeout=LIVENESS_SECONDS)
        shutdown = time.monotonic() - started
    record_property("exit code", code)
    record_property("shutdown (s)", shutdown)
    record_property("client error", type(caught.value).__name__)
    assert code == 0, running.server.log()[-2000:]
    assert shutdown < LIVENESS_SECONDS
    assert caught.value.partial_text == "".join(received)
    with (
        lab(tmp_path, *TEST_MODELS, db=db) as restarted,
        session_client(restarted.url, headers) as raw,
    ):
        kept_messages = raw.get(f"/conversation/{kept.id}").json()["messages"]
        cut_messages = raw.get(f"/conversation/{cut.id}").json()["messages"]
        with h2o_chat.Client(restarted.url, headers=headers) as client:
            again = client.conversation("echo", id=kept.id).send("once more")
    assert [m["content"] for m in kept_messages] == ["kept safe", "kept safe"]
    assert [m["role"] for m in cut_messages][:1] == ["user"]
    assert cut_messages[0]["content"] == label
    if len(cut_messages) > 1:
        assert cut_messages[1]["content"].startswith(caught.value.partial_text)
    record_property("interrupted answer stored", len(cut_messages) > 1)
    assert again.text == "once more"
