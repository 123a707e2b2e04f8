"""A bare Starlette/uvicorn endpoint replaying pre-encoded events: the zero-cost token source.

It answers the seed's four routes just enough for every reader (no session, no storage) and
streams ``max_new_tokens`` events shaped like the project's ``synthetic:N`` backend, encoded
once per length with :func:`h2o_chat.protocol.stream.encode`. ``--chunk-bytes 0`` sends
one event per ASGI message, as an SSE endpoint emitting events does (the server benchmark's
limit); a positive value sends the same bytes in chunks of that size, so that readers are
measured rather than the source (the client benchmarks).

Run: ``python -m bench.replay --port N [--chunk-bytes B]``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import AsyncIterator

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from h2o_chat.protocol.stream import encode
from h2o_chat.protocol.types import StreamResponse, Token

TOKEN_TEXT = " tok"
CONVERSATION_ID = "0" * 24


@functools.lru_cache(maxsize=16)
def synthetic_events(count: int) -> tuple[bytes, ...]:
    """What ``synthetic:N`` sends for ``max_new_tokens=count`` (N >= count): ``count`` tokens
    ``" tok"``, the last one final (``generated_text``, finish reason ``length``)."""
    events = [encode(StreamResponse(Token(i, TOKEN_TEXT, 0.0))) for i in range(1, count)]
    final = StreamResponse(Token(count, TOKEN_TEXT, 0.0), TOKEN_TEXT * count)
    return (*events, encode(final))


@functools.lru_cache(maxsize=16)
def _chunks(count: int, size: int) -> tuple[bytes, ...]:
    body = b"".join(synthetic_events(count))
    return tuple(body[i : i + size] for i in range(0, len(body), size))


def create_app(chunk_bytes: int) -> Starlette:
    """The replay app; see the module docstring for ``chunk_bytes``."""

    async def ok(request: Request) -> Response:
        await request.body()
        response = PlainTextResponse("ok")
        response.set_cookie("hf-chat", "bench", httponly=True)
        return response

    async def conversation(request: Request) -> Response:
        await request.body()
        return JSONResponse({"conversationId": CONVERSATION_ID})

    async def stream(request: Request) -> Response:
        count = int(orjson.loads(await request.body())["parameters"]["max_new_tokens"])
        chunks = _chunks(count, chunk_bytes) if chunk_bytes else synthetic_events(count)

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/", ok, methods=["GET"]),
            Route("/healthz", ok, methods=["GET"]),
            Route("/settings", ok, methods=["POST"]),
            Route("/conversation", conversation, methods=["POST"]),
            Route("/conversation/{id}", stream, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-bytes", type=int, default=0)
    args = parser.parse_args()
    app = create_app(args.chunk_bytes)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
