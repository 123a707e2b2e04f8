"""The built-in server started on demand: the project's own server with its built-in model,
in a background thread of this process, on a free loopback port.

It is what the provider answers from when no server is configured, and what library code
can start for itself::

    with h2o_chat.local_client() as client:  # a Client of a server started for it
        print(client.chat("falcon-7b", [{"role": "user", "content": "Hi"}]).text)

- :func:`local_server` starts one and yields its base URL; leaving the block stops it.
  :func:`local_client` and :func:`local_async_client` wrap it with a client.
- :func:`shared_server_url` is the process-wide one the provider uses: started by the first
  call, under a lock (two threads asking at once start one server), then reused by every
  later call, and stopped at interpreter exit.

The server serves the built-in model (SmolLM2-135M-Instruct, on the CPU) with the 2023 H2o
model ids as its aliases, as ``h2o-chat serve`` does by default. Its conversations live in a
temporary SQLite database that is deleted when it stops: nothing outlives it, as nothing
outlived a call of the stateless 2023 provider.

Nothing here imports server code until a server is started, so this module works without the
``server`` extra; starting a server without it raises
:class:`~h2o_chat.errors.ServerNotInstalledError` before any thread or socket exists.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib
import importlib.util
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from h2o_chat.client import AsyncClient, Client
from h2o_chat.errors import LocalServerError, ServerNotInstalledError

log = logging.getLogger("h2o_chat")

SERVER_EXTRA = "pip install 'h2o-chat[server]'"
# The modules of the server extra that serving the built-in model imports.
SERVER_MODULES = ("starlette", "uvicorn", "multipart", "prometheus_client", "xllamacpp")

__all__ = [
    "local_async_client",
    "local_client",
    "local_server",
    "require_server",
    "shared_server_url",
]


def require_server() -> None:
    """Raise :class:`ServerNotInstalledError` unless the server extra is installed.

    Only looks the modules up; nothing is imported.
    """
    missing = tuple(name for name in SERVER_MODULES if not _installed(name))
    if missing:
        raise ServerNotInstalledError(
            f"the built-in server needs the server extra ({', '.join(missing)} not installed): "
            f"{SERVER_EXTRA}, or use a running server (base_url= or H2O_CHAT_URL)",
            missing,
        )


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # blocked by an import hook, or a broken module
        return False


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Start the built-in server in this process and yield its base URL (``http://127.0.0.1:PORT``).

    Returns once it listens with the model loaded; leaving the block stops it and deletes its
    database. Raises :class:`ServerNotInstalledError` without the server extra, and
    :class:`LocalServerError` if the server cannot start (its log says why).
    """
    require_server()
    from h2o_chat.server.config import BUILTIN_MODEL_ID, ServerConfig
    from h2o_chat.server.embedded import embedded_server
    from h2o_chat.server.store.base import SQLiteDatabase

    with tempfile.TemporaryDirectory(prefix="h2o-chat-") as directory:
        config = ServerConfig(port=0, db=SQLiteDatabase(Path(directory) / "h2o-chat.sqlite3"))
        with contextlib.ExitStack() as stack:
            try:
                url = stack.enter_context(embedded_server(config))
            except (RuntimeError, OSError) as exc:
                raise LocalServerError(f"the built-in server could not start: {exc}") from exc
            log.info("running the built-in model %s locally at %s", BUILTIN_MODEL_ID, url)
            yield url


@contextlib.contextmanager
def local_client(**options: Any) -> Iterator[Client]:
    """A :class:`~h2o_chat.Client` (with ``options``) of a :func:`local_server` started for it.

    Leaving the block closes the client and stops the server.
    """
    with local_server() as url, Client(url, **options) as client:
        yield client


@contextlib.asynccontextmanager
async def local_async_client(**options: Any) -> AsyncIterator[AsyncClient]:
    """The asyncio twin of :func:`local_client`: the server starts and stops in a worker
    thread, so the event loop keeps running meanwhile."""
    server = contextlib.ExitStack()
    url = await asyncio.to_thread(server.enter_context, local_server())
    try:
        async with AsyncClient(url, **options) as client:
            yield client
    finally:
        await asyncio.to_thread(server.close)


_shared = contextlib.ExitStack()
_shared_url: str | None = None
_shared_lock = threading.Lock()


def shared_server_url() -> str:
    """The base URL of this process's shared built-in server, started on the first call.

    Every later call returns the same URL; the server stops at interpreter exit. This is
    where :func:`h2o_chat.provider._create_completion` goes when no server is configured.
    """
    global _shared_url
    with _shared_lock:
        if _shared_url is None:
            _stop_shared_at_exit()
            _shared_url = _shared.enter_context(local_server())
        return _shared_url


@functools.cache
def _stop_shared_at_exit() -> None:
    """Have the shared server stop at exit, before the interpreter shuts its thread pools
    down (the server's shutdown runs work on them).

    That is in threading's exit hooks, where concurrent.futures registers its own: they run
    in reverse, so ours goes in after theirs. Elsewhere than CPython: atexit.
    """
    importlib.import_module("concurrent.futures.thread")  # registers its hook on import
    register: Callable[[Callable[[], None]], object] = getattr(
        threading, "_register_atexit", atexit.register
    )
    register(_stop_shared)


def _stop_shared() -> None:
    global _shared_url
    with _shared_lock:
        _shared_url = None
        _shared.close()
