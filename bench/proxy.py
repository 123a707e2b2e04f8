"""A counting TCP relay: the server-side view of what a client sends.

Placed in front of any HTTP/1.1 server, it counts the TCP connections it accepts, the requests
on them and the bytes of their bodies, without touching the traffic. Requests are delimited by
their ``Content-Length`` (the clients measured never send chunked bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Counts:
    """Totals since the relay started; subtract two snapshots to count one exchange."""

    connections: int = 0
    requests: int = 0
    body_bytes: int = 0
    bytes_up: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.connections - other.connections,
            self.requests - other.requests,
            self.body_bytes - other.body_bytes,
            self.bytes_up - other.bytes_up,
        )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
        if name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked request bodies are not counted")
    return 0


class CountingProxy:
    """Relays 127.0.0.1:``port`` to ``upstream`` on a background thread; see the module doc."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections = self._requests = self._body_bytes = self._bytes_up = 0
        self.url = ""

    def snapshot(self) -> Counts:
        """The totals so far."""
        return Counts(self._connections, self._requests, self._body_bytes, self._bytes_up)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        start = asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result()
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            await asyncio.gather(self._upload(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.CancelledError, ConnectionError):
            pass  # a peer reset the connection, or the relay is shutting down
        finally:
            for stream in (writer, up_writer):
                stream.close()

    async def _upload(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body_left = b"", 0
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            self._bytes_up += len(data)
            while data:
                if body_left:
                    taken = min(body_left, len(data))
                    body_left -= taken
                    self._body_bytes += taken
                    data = data[taken:]
                    continue
                head += data
                end = head.find(_HEAD_END)
                if end < 0:
                    break
                body_left = _content_length(head[:end])
                data, head = head[end + len(_HEAD_END) :], b""
                self._requests += 1
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
