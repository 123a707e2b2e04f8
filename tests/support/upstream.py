"""A tiny OpenAI-compatible upstream that misbehaves on request, for the upstream faults.

Run as ``python -m tests.support.upstream PORT`` (on 127.0.0.1). The requested model picks
the behaviour of ``POST /v1/chat/completions`` (always a stream):

- ``ok``: ``"a" " b" " c"``, then ``finish_reason: stop`` and ``[DONE]``;
- ``length``: ``"a" " b"``, then ``finish_reason: length`` (the upstream's own limit);
- ``cut``: ``"a" " b"``, then the connection breaks;
- ``stall``: ``"a" " b"``, then silence for :data:`STALL_SECONDS`;
- ``stall-headers``: silence for :data:`STALL_SECONDS` before any answer;
- ``fail``: HTTP 500 with an OpenAI error body;
- ``no-logprobs``: as ``ok``, but a request that asks for ``logprobs`` gets HTTP 400, as some
  hosted services answer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODES = ("ok", "length", "cut", "stall", "stall-headers", "fail", "no-logprobs")
STALL_SECONDS = 30.0  # far longer than the server's upstream timeout in the tests; bounded
WORDS = ("a", " b", " c")


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    body = {"id": "up", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def _events(mode: str) -> AsyncIterator[bytes]:
    yield _chunk({"role": "assistant", "content": ""})
    words = WORDS if mode in ("ok", "no-logprobs") else WORDS[:2]
    for word in words:
        yield _chunk({"content": word})
        await asyncio.sleep(0.01)
    if mode == "cut":
        raise ConnectionResetError("planned cut")
    if mode == "stall":
        await asyncio.sleep(STALL_SECONDS)
        return
    yield _chunk({}, "length" if mode == "length" else "stop")
    yield b"data: [DONE]\n\n"


async def models(request: Request) -> Response:
    data = [{"id": mode, "object": "model", "context_length": 4096} for mode in MODES]
    return JSONResponse({"object": "list", "data": data})


async def completions(request: Request) -> Response:
    body = await request.json()
    mode = body.get("model")
    if mode == "fail":
        return JSONResponse({"error": {"message": "upstream on fire", "type": "server"}}, 500)
    if mode == "no-logprobs" and "logprobs" in body:
        error = {"message": "logprobs is not supported", "type": "invalid_request_error"}
        return JSONResponse({"error": error}, 400)
    if mode == "stall-headers":
        await asyncio.sleep(STALL_SECONDS)
    return StreamingResponse(_events(str(mode)), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        timeout_graceful_shutdown=1,  # do not wait out a stalled answer
    )
