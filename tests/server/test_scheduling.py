"""One generation at a time per model: the queue, overload, stop-generating, disconnects."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import h2o_chat
from h2o_chat.protocol.stream import StreamParser
from h2o_chat.protocol.types import StreamResponse
from tests.support.h2o import client, converse, error, final, new_conversation
from tests.support.servers import IMPORTABLE, RunningServer, h2o_server

LONG = {"max_new_tokens": 4000}  # 200 s of " tick": only a stop or disconnect ends it sooner
SHORT_TIMEOUT = 30.0  # a request that had to wait for the long one would fail


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    args = (
        *("--queue-size", "1"),
        *("--model", "slow=python:tests.support.backends:slow"),
    )
    with h2o_server(tmp_path_factory.mktemp("server"), *args, env=IMPORTABLE) as server:
        yield server


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with client(server) as http:
        yield http


class LiveStream:
    """A long answer being received; its chunk iterator is kept so the connection stays open."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_raw()

    def first_event(self) -> StreamResponse:
        parser = StreamParser()
        for chunk in self.chunks:
            events = parser.feed(chunk)
            if events:
                event = events[0]
                assert isinstance(event, StreamResponse)
                return event
        raise AssertionError("the stream ended without an event")

    def rest(self) -> bytes:
        return b"".join(self.chunks)


@contextlib.contextmanager
def open_stream(http: httpx.Client, conversation_id: str) -> Iterator[LiveStream]:
    """A long answer; leaving the block unread drops the connection."""
    body = {"inputs": "go", "parameters": LONG}
    with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        assert response.status_code == 200
        yield LiveStream(response)


def wait_for_queue(http: httpx.Client, busy: bool, waiting: int, timeout: float = 30) -> None:
    """Poll /healthz until the slow model's queue is in the given state (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        queue = http.get("/healthz").json()["models"]["slow"]
        if (queue["busy"], queue["waiting"], queue["running"]) == (busy, waiting, int(busy)):
            return
        assert time.monotonic() < deadline, f"queue stayed {queue}"
        time.sleep(0.01)


def quick_answer(server: RunningServer) -> StreamResponse:
    with httpx.Client(base_url=server.url, timeout=SHORT_TIMEOUT) as other:
        conversation_id = new_conversation(other, "slow")
        return final(converse(other, conversation_id, "quick", max_new_tokens=2))


def test_stop_generating_frees_the_model(http: httpx.Client, server: RunningServer) -> None:
    conversation_id = new_conversation(http, "slow")
    with open_stream(http, conversation_id) as running:
        assert running.first_event().token.text == " tick"
        stopped = http.post(f"/conversation/{conversation_id}/stop-generating")
        assert stopped.json() == {"stopped": True}
        assert b'generated_text":"' not in running.rest()  # it ends without a final event
    assert quick_answer(server).generated_text == " tick tick"
    saved = http.get(f"/conversation/{conversation_id}").json()["messages"]
    assert saved[-1]["role"] == "assistant"
    assert saved[-1]["content"].startswith(" tick") and set(saved[-1]["content"].split()) == {
        "tick"
    }


def test_stop_generating_returns_once_the_answer_is_saved(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "slow")
    with open_stream(http, conversation_id) as running:
        running.first_event()
        assert http.post(f"/conversation/{conversation_id}/stop-generating").json() == {
            "stopped": True
        }
        # the next turn, sent at once, comes after the stopped answer in the history
        saved = http.get(f"/conversation/{conversation_id}").json()["messages"]
        assert [m["role"] for m in saved] == ["user", "assistant"]
        running.rest()


def test_stop_while_queued_leaves_the_queue_at_once(
    http: httpx.Client, server: RunningServer
) -> None:
    running_id, queued_id = new_conversation(http, "slow"), new_conversation(http, "slow")
    with open_stream(http, running_id) as running:
        running.first_event()
        with open_stream(http, queued_id) as queued:
            wait_for_queue(http, busy=True, waiting=1)
            assert http.post(f"/conversation/{queued_id}/stop-generating").json() == {
                "stopped": True
            }
            assert queued.rest() == b""
            wait_for_queue(http, busy=True, waiting=0)  # while the first one still runs
        http.post(f"/conversation/{running_id}/stop-generating")
        running.rest()


def test_client_disconnect_frees_the_model(http: httpx.Client, server: RunningServer) -> None:
    conversation_id = new_conversation(http, "slow")
    with open_stream(http, conversation_id) as running:
        running.first_event()
    # closing the response dropped the connection
    assert quick_answer(server).generated_text == " tick tick"
    wait_for_queue(http, busy=False, waiting=0)


def test_full_queue_answers_overloaded(http: httpx.Client, server: RunningServer) -> None:
    running_id, queued_id, third_id = (new_conversation(http, "slow") for _ in range(3))
    with open_stream(http, running_id) as running:
        running.first_event()
        with open_stream(http, queued_id) as queued:
            wait_for_queue(http, busy=True, waiting=1)
            event = error(converse(http, third_id, "too many"))
            assert event.error_type == "overloaded"
            http.post(f"/conversation/{queued_id}/stop-generating")
            http.post(f"/conversation/{running_id}/stop-generating")
            assert queued.rest() == b""  # stopped while waiting: it never ran
        running.rest()
    wait_for_queue(http, busy=False, waiting=0)


def test_delete_stops_a_running_generation(http: httpx.Client, server: RunningServer) -> None:
    conversation_id = new_conversation(http, "slow")
    with open_stream(http, conversation_id) as running:
        running.first_event()
        assert http.delete(f"/conversation/{conversation_id}").status_code == 200
        running.rest()
    assert quick_answer(server).generated_text == " tick tick"


def test_a_waiting_request_is_kept_alive(tmp_path_factory: pytest.TempPathFactory) -> None:
    """While a request waits in the queue, ':' comments keep its stream alive: a client whose
    read timeout (1 s) is far shorter than the wait (2.5 s) gets its whole answer."""
    args = ("--keep-alive", "0.2", "--model", "slow=python:tests.support.backends:slow")
    tmp = tmp_path_factory.mktemp("keep-alive")
    with (
        h2o_server(tmp, *args, env=IMPORTABLE) as server,
        client(server) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        running_id = new_conversation(http, "slow")
        with open_stream(http, running_id) as running:
            running.first_event()

            def wait_in_line() -> str:
                with h2o_chat.Client(server.url, timeout=1.0, max_retries=0) as patient:
                    return patient.conversation("slow").send("go", max_new_tokens=2).text

            waiting = pool.submit(wait_in_line)
            time.sleep(2.5)
            assert not waiting.done()  # still in line, its stream alive
            http.post(f"/conversation/{running_id}/stop-generating")
            assert waiting.result(timeout=SHORT_TIMEOUT) == " tick tick"
