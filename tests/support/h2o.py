"""The H2o routes spoken raw, for tests that look at the HTTP exchange itself.

:func:`client` lets the server mint the session cookie; :func:`session_client` brings a
session of its own. The event-stream helpers parse with the project's own parser.
"""

from __future__ import annotations

import uuid

import httpx

from h2o_chat.protocol.payloads import SESSION_COOKIE
from h2o_chat.protocol.stream import Event, StreamParser
from h2o_chat.protocol.types import ErrorEvent, StreamResponse
from tests.support.servers import RunningServer


def client(server: RunningServer) -> httpx.Client:
    """A client of ``server`` whose session the server mints on the first answer."""
    return httpx.Client(base_url=server.url, timeout=60)


def session_headers() -> dict[str, str]:
    """A new session: a cookie of our own choosing (the server takes any uuid4)."""
    return {"cookie": f"{SESSION_COOKIE}={uuid.uuid4()}"}


def session_client(url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    """A raw client of its own session (``headers`` None) or of the given headers'."""
    return httpx.Client(
        base_url=url, timeout=30, headers=session_headers() if headers is None else headers
    )


def new_conversation(http: httpx.Client, model: str, preprompt: str | None = None) -> str:
    """A new conversation's id (the answer must be 200)."""
    body: dict[str, str] = {"model": model}
    if preprompt is not None:
        body["preprompt"] = preprompt
    response = http.post("/conversation", json=body)
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversationId"]
    return conversation_id


def read_events(response: httpx.Response) -> list[Event]:
    """Every event of a streamed answer (the parser raises on malformed bytes)."""
    parser, events = StreamParser(), []
    for chunk in response.iter_bytes():
        events += parser.feed(chunk)
    return events + parser.close()


def converse(
    http: httpx.Client, conversation_id: str, inputs: str, **parameters: object
) -> list[Event]:
    """POST a turn and parse the whole event stream (200, ``text/event-stream``, no-cache)."""
    body = {"inputs": inputs, "parameters": parameters, "stream": True}
    with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return read_events(response)


def final(events: list[Event]) -> StreamResponse:
    """The final event, which must end a stream of token events."""
    last = events[-1]
    assert isinstance(last, StreamResponse) and last.is_final, events
    assert all(isinstance(e, StreamResponse) and not e.is_final for e in events[:-1])
    return last


def error(events: list[Event]) -> ErrorEvent:
    """The error event that ends the stream."""
    last = events[-1]
    assert isinstance(last, ErrorEvent), events
    return last
