"""How the server reaches an upstream engine over HTTP: its key, extra headers and TLS.

One place builds the ``httpx.AsyncClient`` of every upstream backend (OpenAI-compatible,
TGI), so the key is read from its environment variable in one place, sent only as the
``Authorization`` header, and scrubbed from anything an upstream echoes back.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from h2o_chat.server.backends.base import BackendError

REDACTED = "[redacted]"
MAX_LINE_BYTES = 1 << 20  # as the client's stream parser: an event is far smaller


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach one upstream.

    ``api_key_env`` names the environment variable that holds the bearer key (the key itself
    is never part of a configuration, so it cannot reach a command line, a log or
    ``/healthz``). TLS certificates are always verified: against ``ca_bundle`` when given,
    else the system's store.
    """

    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: Path | None = None

    def __hash__(self) -> int:
        return hash((self.api_key_env, tuple(sorted(self.headers.items())), self.ca_bundle))

    def api_key(self) -> str | None:
        """The key from its environment variable; ``ValueError`` naming the variable if unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ValueError(f"environment variable {self.api_key_env} (the API key) is not set")
        return key


def upstream_client(base_url: str, connection: Connection, timeout: float) -> httpx.AsyncClient:
    """An async client for ``base_url`` that authenticates as ``connection`` says."""
    headers = dict(connection.headers)
    key = connection.api_key()
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    verify: ssl.SSLContext | bool = True
    if connection.ca_bundle is not None:
        verify = ssl.create_default_context(cafile=str(connection.ca_bundle))
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        verify=verify,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
    )


def redact(text: str, connection: Connection) -> str:
    """``text`` with the connection's key, should an upstream echo it, replaced."""
    key = os.environ.get(connection.api_key_env or "", "")
    return text.replace(key, REDACTED) if key else text


async def data_lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an event stream, line by line (comments and other fields
    skipped; a last line the stream did not end is dropped, as a cut one). A line over
    :data:`MAX_LINE_BYTES` is a :class:`BackendError`, so an engine that never ends a line
    cannot fill the memory."""
    pending = b""
    async for chunk in response.aiter_bytes():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
        if len(pending) > MAX_LINE_BYTES:
            raise BackendError(f"the upstream sent a line over {MAX_LINE_BYTES} bytes")


async def answers(client: httpx.AsyncClient, path: str) -> bool:
    """Whether the upstream answers ``GET path`` with 200 now (a replica's health probe)."""
    try:
        response = await client.get(path)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
