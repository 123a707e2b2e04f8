"""A small protocol-faithful H2o server for the tests, which misbehaves on request.

It speaks docs/protocol.md (session cookie, settings, conversations, the TGI event stream) and
follows a :class:`Plan` that a test sets: error statuses before success, and a fault in the
stream (connection reset, stall, malformed line, error event, endless line). It runs under
uvicorn on a free 127.0.0.1 port in a thread, and counts requests and client connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from h2o_chat.protocol.stream import KEEP_ALIVE, encode
from h2o_chat.protocol.types import END_OF_TEXT, ErrorEvent, StreamResponse, Token
from tests.support.servers import serve_in_thread


@dataclass
class Plan:
    """What the next streams do. ``statuses`` are answered, in order, before a stream runs."""

    words: list[str] = field(default_factory=lambda: ["Hello", " wide", " world", "!"])
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    fault: str | None = None  # reset stall malformed error endless keepalive bad-conversation
    fault_after: int = 2  # tokens sent before the fault
    chunk_size: int | None = None  # re-chunk the stream body into pieces of this many bytes


class FaultServer:
    """The app, its plan and what it saw."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.client_ports: set[int] = set()
        self.conversations: dict[str, dict[str, Any]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET"]),
                Route("/settings", self.settings, methods=["POST"]),
                Route("/conversation", self.create, methods=["POST"]),
                Route("/conversation/{id}", self.message, methods=["POST"]),
                Route("/conversation/{id}/stop-generating", self.stop, methods=["POST"]),
                Route("/conversation/{id}", self.delete, methods=["DELETE"]),
            ]
        )
        self.app.middleware_stack = None
        self.app.add_middleware(_Counter, server=self)

    def _session(self, request: Request, response: Response) -> str:
        session = request.cookies.get("hf-chat")
        if session is None:
            session = str(uuid.uuid4())
            response.set_cookie("hf-chat", session, httponly=True, samesite="lax")
        return session

    async def index(self, request: Request) -> Response:
        response = Response("<!doctype html><title>fault server</title>", media_type="text/html")
        self._session(request, response)
        return response

    async def settings(self, request: Request) -> Response:
        if not request.headers.get("referer", "").startswith(str(request.base_url)):
            return JSONResponse({"error": "Invalid referer for POST request"}, 403)
        form = await request.form()
        if form.get("activeModel") == "unknown/model":
            return JSONResponse({"error": "unknown model 'unknown/model'"}, 400)
        return JSONResponse({"type": "redirect", "status": 303, "location": "/"})

    async def create(self, request: Request) -> Response:
        body = await request.json()
        if self.plan.fault == "bad-conversation":
            return JSONResponse({"conversationId": 5})
        conversation_id = secrets.token_hex(12)
        response = JSONResponse({"conversationId": conversation_id})
        session = self._session(request, response)
        self.conversations[conversation_id] = {
            "session": session,
            "model": body["model"],
            "messages": [],
        }
        return response

    def _owned(self, request: Request) -> dict[str, Any] | None:
        conversation = self.conversations.get(request.path_params["id"])
        if conversation is None or conversation["session"] != request.cookies.get("hf-chat"):
            return None
        return conversation

    async def message(self, request: Request) -> Response:
        conversation = self._owned(request)
        if conversation is None:
            return JSONResponse({"error": "Conversation not found"}, 404)
        plan = self.plan
        if plan.statuses:
            status, headers = plan.statuses.pop(0)
            return JSONResponse({"error": f"planned {status}"}, status, headers=headers)
        body = await request.json()
        self.bodies.append(body)
        conversation["messages"].append(body["inputs"])
        return StreamingResponse(self._stream(plan), media_type="text/event-stream")

    async def _stream(self, plan: Plan) -> AsyncIterator[bytes]:
        body = b"".join(self._events(plan))
        size = plan.chunk_size or len(body) or 1
        for start in range(0, len(body), size):
            yield body[start : start + size]
            await asyncio.sleep(0)
        if plan.fault == "reset":
            raise ConnectionResetError("planned reset")
        if plan.fault in ("stall", "endless"):
            await asyncio.sleep(3600)

    def _events(self, plan: Plan) -> Iterator[bytes]:
        text = ""
        for index, word in enumerate(plan.words):
            if plan.fault and index == plan.fault_after:
                if plan.fault == "malformed":
                    yield b"data:{not json\n\n"
                elif plan.fault == "error":
                    yield encode(ErrorEvent("Model is overloaded", "overloaded"))
                elif plan.fault == "endless":
                    yield b"data:" + b"x" * (4 << 20)
                if plan.fault in ("malformed", "error", "reset", "stall", "endless"):
                    return
            if plan.fault == "keepalive":
                yield KEEP_ALIVE
            text += word
            yield encode(StreamResponse(Token(index + 1, word, -0.5, False)))
        yield encode(StreamResponse(Token(0, END_OF_TEXT, 0.0, True), text))

    async def stop(self, request: Request) -> Response:
        if self._owned(request) is None:
            return JSONResponse({"error": "Conversation not found"}, 404)
        return JSONResponse({})

    async def delete(self, request: Request) -> Response:
        conversation_id = request.path_params["id"]
        if self._owned(request) is None:
            return JSONResponse({"error": "Conversation not found"}, 404)
        del self.conversations[conversation_id]
        return JSONResponse({})


class _Counter:
    """ASGI middleware counting requests and distinct client connections (by port)."""

    def __init__(self, app: Any, server: FaultServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.server.requests.append((scope["method"], scope["path"]))
            self.server.client_ports.add(scope["client"][1])
        await self.app(scope, receive, send)


@contextlib.contextmanager
def running_fault_server() -> Iterator[tuple[str, FaultServer]]:
    """Run a :class:`FaultServer` on a free loopback port until the block ends."""
    fault_server = FaultServer()
    with serve_in_thread(fault_server.app) as url:
        yield url, fault_server
