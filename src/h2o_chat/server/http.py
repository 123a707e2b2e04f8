"""HTTP helpers shared by the routes: the error type, JSON bodies, the event-stream response."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Send

from h2o_chat.protocol.payloads import SESSION_COOKIE
from h2o_chat.protocol.stream import KEEP_ALIVE


class ApiError(Exception):
    """An error answer: ``status`` and a message for ``{"error": message}``.

    On ``/v1/`` routes it is rendered in OpenAI's error shape with ``error_type`` and ``code``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code


class JSONResponse(Response):
    """A compact JSON response (orjson)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_api_key(request: Request, key: str | None) -> None:
    """When ``key`` is set, the request must carry ``Authorization: Bearer KEY``, else 401."""
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise ApiError(401, "Incorrect or missing API key", code="invalid_api_key")


MODEL_PREFIX = "h2o_chat.model"  # the scope key naming the model of a /models/{id} prefix


def route_path(request: Request) -> str:
    """The request's path below the mount it came through (``/models/{id}``, say)."""
    path: str = request.scope["path"]
    return path.removeprefix(request.scope.get("root_path", ""))


def prefixed_model(request: Request) -> str | None:
    """The model named by the request's ``/models/{id}`` prefix, if it came through one."""
    name: str | None = request.scope.get(MODEL_PREFIX)
    return name


def session_id(request: Request) -> str:
    """The request's session, set by :class:`h2o_chat.server.middleware.SessionMiddleware`."""
    session: str = request.scope["state"][SESSION_COOKIE]
    return session


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, else :class:`ApiError` 415 or 400 naming the problem."""
    kind = media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"expected a JSON body (application/json), not {kind or 'no type'}")
    body = await request.body()
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(obj).__name__}")
    return obj


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` with keep-alive comments, closing its iterator when the client
    goes away.

    The content type is exactly ``text/event-stream``, without the ``; charset=utf-8`` that
    Starlette adds to text types: chat-ui 2023's stream reader (``@huggingface/inference``
    2.2.0) refuses anything else. Events are UTF-8 by definition.

    A ``:`` comment goes out whenever ``keep_alive`` seconds pass without a byte (a request
    waiting in the queue, a slow engine), as TGI did, so that clients' and proxies' read
    timeouts measure the server's silence, not the queue. Starlette leaves an abandoned
    iterator suspended; closing it runs its ``finally`` blocks at once, which stops the
    generation and frees the model.
    """

    media_type = "text/event-stream"

    def __init__(self, content: Any, *, keep_alive: float) -> None:
        headers = {"content-type": self.media_type, "cache-control": "no-cache"}
        super().__init__(content, headers=headers)
        self.keep_alive = keep_alive

    async def stream_response(self, send: Send) -> None:
        lock, last_sent, done = asyncio.Lock(), time.monotonic(), False

        async def send_serialized(message: Message) -> None:
            nonlocal last_sent
            async with lock:
                await send(message)
                last_sent = time.monotonic()

        async def keep_alive() -> None:
            nonlocal last_sent
            while True:
                await anyio.sleep(max(0.0, last_sent + self.keep_alive - time.monotonic()))
                async with lock:
                    if done:
                        return
                    if time.monotonic() - last_sent >= self.keep_alive:
                        await send(
                            {"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True}
                        )
                        last_sent = time.monotonic()

        iterator = contextlib.aclosing(self.body_iterator)  # type: ignore[type-var]
        async with iterator, anyio.create_task_group() as group:
            group.start_soon(keep_alive)
            try:
                await super().stream_response(send_serialized)
            finally:
                done = True
                group.cancel_scope.cancel()
