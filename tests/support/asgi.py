"""The server's app in this process: its lifespan run, and clients that call it directly.

httpx 0.28's ``ASGITransport`` hands back a response once the app has sent all of it: a
stream arrives whole. Tests that watch tokens while they are generated, or that disconnect
mid-answer, need a real server (:mod:`tests.support.servers`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message

from h2o_chat.server.app import create_app
from h2o_chat.server.config import ServerConfig

BASE_URL = "http://testserver"


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan: startup before the block, shutdown after it.

    A startup or shutdown the app reports as failed raises :class:`RuntimeError`.
    """
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, to_app.get, from_app.put)

    task = asyncio.create_task(serve())

    async def step(phase: str) -> None:
        await to_app.put({"type": f"lifespan.{phase}"})
        answer = asyncio.ensure_future(from_app.get())
        await asyncio.wait({answer, task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            await task  # raises what the app raised
            raise RuntimeError(f"the app ended its lifespan before {phase} completed")
        message = answer.result()
        if message["type"] != f"lifespan.{phase}.complete":
            raise RuntimeError(f"{phase} failed: {message.get('message', '')}")

    try:
        await step("startup")
    except BaseException:
        task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        raise
    try:
        yield
    finally:
        await step("shutdown")
        await task


@contextlib.asynccontextmanager
async def running_app(config: ServerConfig) -> AsyncIterator[Starlette]:
    """``create_app(config)`` with its models loaded, until the block ends."""
    app = create_app(config)
    async with lifespan(app):
        yield app


def app_client(app: ASGIApp, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client of ``app`` in this process, at :data:`BASE_URL`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url=BASE_URL, headers=headers, timeout=30
    )
