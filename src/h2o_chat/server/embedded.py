"""The server in a background thread of the current process, on a free loopback port.

For the CLI's ``ask``/``chat`` when no server URL is configured::

    url, stop = start_in_thread(ServerConfig(port=0))
    try:
        ...  # talk to url
    finally:
        stop()

or ``with embedded_server(config) as url: ...``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

from h2o_chat.server.app import create_app
from h2o_chat.server.config import ServerConfig
from h2o_chat.server.process import H2oServer

STARTUP_POLL_SECONDS = 0.02


def start_in_thread(config: ServerConfig) -> tuple[str, Callable[[], None]]:
    """Start serving ``config`` (port 0: any free port); return its URL and a stop function.

    Returns once the socket listens and the models are loaded; raises ``RuntimeError`` if the
    server cannot start (the reason is logged). ``stop()`` cancels running generations,
    closes storage and joins the thread.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    server = H2oServer(create_app(config), config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="h2o-chat-server", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join()
        sock.close()

    runtime = server.runtime
    while not server.started or (runtime.loading and runtime.load_error is None):
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the embedded h2o-chat server failed to start; see the log")
        time.sleep(STARTUP_POLL_SECONDS)
    if runtime.load_error is not None:
        stop()
        raise RuntimeError(f"the embedded h2o-chat server failed to start: {runtime.load_error}")
    return server.url(), stop


@contextlib.contextmanager
def embedded_server(config: ServerConfig) -> Iterator[str]:
    """:func:`start_in_thread` as a context manager yielding the URL."""
    url, stop = start_in_thread(config)
    try:
        yield url
    finally:
        stop()
