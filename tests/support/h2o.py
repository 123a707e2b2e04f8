"""The H2o routes spoken raw, for tests that look at the HTTP exchange itself.

:func:`client` lets the server mint the session cookie; :func:`session_client` brings a
session of its own. The event-stream helpers parse with the project's own parser; the
``a``-prefixed ones take an ``httpx.AsyncClient`` (an app in-process, :mod:`tests.support.asgi`).
"""

from __future__ import annotations

import uuid

import httpx

from h2o_chat.errors import MalformedStreamError
from h2o_chat.protocol.payloads import SESSION_COOKIE
from h2o_chat.protocol.stream import Event, Parsed, StreamParser
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


def _conversation_body(model: str, preprompt: str | None) -> dict[str, str]:
    body = {"model": model}
    if preprompt is not None:
        body["preprompt"] = preprompt
    return body


def _conversation_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversationId"]
    return conversation_id


def new_conversation(http: httpx.Client, model: str, preprompt: str | None = None) -> str:
    """A new conversation's id (the answer must be 200)."""
    return _conversation_id(http.post("/conversation", json=_conversation_body(model, preprompt)))


async def anew_conversation(
    http: httpx.AsyncClient, model: str, preprompt: str | None = None
) -> str:
    """:func:`new_conversation` with an async client (an app in-process)."""
    body = _conversation_body(model, preprompt)
    return _conversation_id(await http.post("/conversation", json=body))


def read_events(response: httpx.Response) -> list[Event]:
    """Every event of a streamed answer; malformed bytes raise :class:`MalformedStreamError`."""
    parser, events = StreamParser(), list[Event]()
    for chunk in response.iter_bytes():
        events += checked(parser.feed(chunk))
    return events + checked(parser.close())


def checked(parsed: list[Parsed]) -> list[Event]:
    """The parser's events; a :class:`MalformedStreamError` among them is raised."""
    for item in parsed:
        if isinstance(item, MalformedStreamError):
            raise item
    return [item for item in parsed if not isinstance(item, MalformedStreamError)]


def _turn(inputs: str, parameters: dict[str, object]) -> dict[str, object]:
    return {"inputs": inputs, "parameters": parameters, "stream": True}


def _stream_events(response: httpx.Response) -> list[Event]:
    """The events of an answer that must be an event stream (200, not cached)."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    return read_events(response)


def converse(
    http: httpx.Client, conversation_id: str, inputs: str, **parameters: object
) -> list[Event]:
    """POST a turn and parse the whole event stream (200, ``text/event-stream``, no-cache)."""
    body = _turn(inputs, parameters)
    with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        return _stream_events(response)


async def aconverse(
    http: httpx.AsyncClient, conversation_id: str, inputs: str, **parameters: object
) -> list[Event]:
    """:func:`converse` with an async client; in-process the answer arrives whole."""
    body = _turn(inputs, parameters)
    return _stream_events(await http.post(f"/conversation/{conversation_id}", json=body))


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
