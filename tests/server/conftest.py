"""Servers shared by the server tests, and a small raw-protocol helper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from h2o_chat.protocol.stream import Event, StreamParser
from h2o_chat.protocol.types import ErrorEvent, StreamResponse
from tests.support.servers import RunningServer, h2o_server

REPO = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(REPO)}  # so that python:tests.server.backends:... imports


def start(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[RunningServer]:
    with h2o_server(tmp_path_factory.mktemp("server"), *args, env=ENV) as server:
        yield server


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default server: the builtin model with the seed's model ids as aliases."""
    yield from start(tmp_path_factory)


@pytest.fixture(scope="module")
def synthetic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from start(
        tmp_path_factory,
        "--model",
        "echo=synthetic",
        "--model",
        "five=synthetic:5",
        "--model",
        "transcript=python:tests.server.backends:transcript",
        "--alias",
        "parrot=echo",
        "--max-body-bytes",
        "4096",
    )


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60)


def new_conversation(http: httpx.Client, model: str, preprompt: str | None = None) -> str:
    body: dict[str, str] = {"model": model}
    if preprompt is not None:
        body["preprompt"] = preprompt
    response = http.post("/conversation", json=body)
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversationId"]
    return conversation_id


def converse(
    http: httpx.Client, conversation_id: str, inputs: str, **parameters: object
) -> list[Event]:
    """POST a turn and parse the whole event stream."""
    parser = StreamParser()
    events: list[Event] = []
    body = {"inputs": inputs, "parameters": parameters, "stream": True}
    with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for chunk in response.iter_bytes():
            events.extend(parser.feed(chunk))
    return events + parser.close()


def final(events: list[Event]) -> StreamResponse:
    last = events[-1]
    assert isinstance(last, StreamResponse) and last.is_final, events
    assert all(isinstance(e, StreamResponse) and not e.is_final for e in events[:-1])
    return last


def error(events: list[Event]) -> ErrorEvent:
    last = events[-1]
    assert isinstance(last, ErrorEvent), events
    return last
