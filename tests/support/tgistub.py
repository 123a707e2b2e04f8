"""A small TGI server for the TGI upstream's tests, which misbehaves on request.

It speaks TGI's ``GET /info`` and ``POST /generate_stream`` (events as TGI v3 writes them:
``index``, ``token``, ``top_tokens`` when asked, the last with ``generated_text`` and
``details``) and follows the :class:`TgiPlan` a test sets: an error answer (any status and
body), or a fault after ``fault_after`` tokens: an error event, a connection reset, a stream
that ends unfinished, a stall, a malformed event, a line that never ends. It runs under
uvicorn on a free 127.0.0.1 port in a thread (:func:`running_tgi_stub`) and keeps every
request body it received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread

CONTEXT = 4000  # the stub's max_total_tokens (not the backend's default 4096)
FIRST_ID = 100  # token i of an answer has id FIRST_ID + i
END = {"id": 2, "text": "</s>", "logprob": -0.25, "special": True}  # the model's end token
ALTERNATIVE_ID = 9000
FAULTS = ("error", "reset", "unfinished", "stall", "malformed", "endless")


@dataclass
class TgiPlan:
    """What the next answers do. ``words`` starting with ``<|`` are special tokens."""

    words: list[str] = field(default_factory=lambda: ["Hello", " wide", " world"])
    finish: str = "eos_token"  # or "length": the last word ends it, no end token
    uncounted_end: bool = False  # "length" ends on an end token not counted, as h2o-chat's does
    status: int | None = None  # answer this status with ``body`` instead of a stream
    body: bytes = b""
    fault: str | None = None  # one of FAULTS
    fault_after: int = 0  # tokens sent before the fault
    error_type: str = "generation"  # of the error event


def token(index: int, word: str) -> dict[str, Any]:
    """The stub's token for ``word`` at ``index`` (from 0)."""
    return {
        "id": FIRST_ID + index,
        "text": word,
        "logprob": -0.5 - index,
        "special": word.startswith("<|"),
    }


class TgiStub:
    """The app, its plan, the request bodies it saw and how many answers the client left."""

    def __init__(self) -> None:
        self.plan = TgiPlan()
        self.bodies: list[dict[str, Any]] = []
        self.abandoned = 0  # answers whose client closed the request before their end
        self.app = Starlette(
            routes=[
                Route("/info", self.info, methods=["GET"]),
                Route("/generate_stream", self.generate_stream, methods=["POST"]),
            ]
        )

    async def info(self, request: Request) -> Response:
        # TGI v3's /info: its context, and no max_top_n_tokens
        return JSONResponse(
            {"model_id": "stub", "max_input_tokens": CONTEXT - 1, "max_total_tokens": CONTEXT}
        )

    async def generate_stream(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        plan = self.plan
        if plan.status is not None:
            return Response(plan.body, plan.status, media_type="application/json")
        top_n = body["parameters"].get("top_n_tokens") or 0
        return StreamingResponse(self._stream(plan, top_n), media_type="text/event-stream")

    async def _stream(self, plan: TgiPlan, top_n: int) -> AsyncIterator[bytes]:
        try:
            async for data in self._events(plan, top_n):
                yield data
        except asyncio.CancelledError:  # Starlette cancels an answer whose client went away
            self.abandoned += 1
            raise

    async def _events(self, plan: TgiPlan, top_n: int) -> AsyncIterator[bytes]:
        tokens = [token(i, word) for i, word in enumerate(plan.words)]
        if plan.finish == "eos_token" or plan.uncounted_end:
            tokens.append(END)
        for index, sent in enumerate(tokens):
            if plan.fault is not None and index == plan.fault_after:
                async for data in self._fault(plan):
                    yield data
                return
            event: dict[str, Any] = {"index": index + 1, "token": sent}
            if top_n:
                alternatives = [
                    {"id": ALTERNATIVE_ID + i, "text": " alt", "logprob": -20.0, "special": False}
                    for i in range(top_n - 1)
                ]
                event["top_tokens"] = [sent, *alternatives]
            last = index == len(tokens) - 1
            text = "".join(t["text"] for t in tokens if not t["special"])
            event["generated_text"] = text if last else None
            event["details"] = None
            if last:
                event["details"] = {
                    "finish_reason": plan.finish,
                    "generated_tokens": len(tokens) - plan.uncounted_end,
                    "seed": None,
                    "input_length": 7,
                }
            yield b"data:" + orjson.dumps(event) + b"\n\n"
            await asyncio.sleep(0)

    async def _fault(self, plan: TgiPlan) -> AsyncIterator[bytes]:
        if plan.fault == "error":
            error = {"error": "planned failure", "error_type": plan.error_type}
            yield b"data:" + orjson.dumps(error) + b"\n\n"
        elif plan.fault == "malformed":
            yield b"data:{not json\n\n"
        elif plan.fault == "endless":
            for _ in range(64):  # 4 MiB, and no end
                yield b"x" * (64 << 10)
            await asyncio.sleep(3600)
        elif plan.fault == "reset":
            raise ConnectionResetError("planned reset")
        elif plan.fault == "stall":
            await asyncio.sleep(3600)


@contextlib.contextmanager
def running_tgi_stub() -> Iterator[tuple[str, TgiStub]]:
    """Run a :class:`TgiStub` on a free loopback port until the block ends."""
    stub = TgiStub()
    with serve_in_thread(stub.app) as url:
        yield url, stub
