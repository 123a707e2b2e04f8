"""A kept-alive connection that the server closes just as the client reuses it.

HTTP/1.1 servers close idle connections after a while (uvicorn: 5 s, httpx's default pool
expiry is 5 s too). A request written on such a connection gets no answer at all: nothing
was processed and no token delivered, so the client should send it again on a new
connection. A TCP proxy on loopback makes the race deterministic: it closes a connection,
without an answer, when a second request arrives on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

import h2o_chat
from tests.support.h2o import session_headers
from tests.support.lab import Lab

PIECE = 1 << 16


class DroppingProxy:
    """Forwards 127.0.0.1:port to ``target``; closes ``drops`` reused connections unanswered."""

    def __init__(self, target: int, drops: int) -> None:
        self.target = target
        self.drops = drops
        self.dropped = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        answered = asyncio.Event()  # the server has sent a response on this connection

        async def upstream() -> None:
            while data := await reader.read(PIECE):
                if answered.is_set() and self.drops > self.dropped:
                    self.dropped += 1  # a new request on a reused connection: drop it
                    break
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(PIECE):
                answered.set()
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(OSError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        writer.close()
        up_writer.close()


@contextlib.contextmanager
def dropping_proxy(url: str, drops: int) -> Iterator[tuple[str, DroppingProxy]]:
    """Run a :class:`DroppingProxy` in front of ``url`` until the block ends."""
    proxy = DroppingProxy(int(urlsplit(url).port or 80), drops)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(proxy.handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def _two_turns_async(url: str) -> list[str]:
    async with h2o_chat.AsyncClient(url, headers=session_headers()) as client:
        conversation = client.conversation("echo")
        return [(await conversation.send(text)).text for text in ("first", "second")]


def _two_turns_sync(url: str) -> list[str]:
    with h2o_chat.Client(url, headers=session_headers()) as client:
        conversation = client.conversation("echo")
        return [conversation.send(text).text for text in ("first", "second")]


@pytest.mark.reliability(
    "Kept-alive connection closed by the server as it is reused",
    section="Client faults",
    did=(
        "Sync and async clients through a loopback proxy that closes a connection without "
        "answering when a second request arrives on it (the keep-alive race); a conversation "
        "of two turns (the session bootstrap already reuses the connection)"
    ),
    expect=(
        "Nothing was answered, so the client sends the request again on a new connection: "
        "both turns succeed (this is what happens under load, see the load case)"
    ),
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_reused_connection_closed_unanswered(test_lab: Lab, kind: str) -> None:
    with dropping_proxy(test_lab.url, drops=1) as (url, proxy):
        texts = _two_turns_sync(url) if kind == "sync" else asyncio.run(_two_turns_async(url))
        assert proxy.dropped == 1
    assert texts == ["first", "second"]
