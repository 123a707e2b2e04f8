"""Running the app under uvicorn: in the foreground for ``h2o-chat serve``, with clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from h2o_chat.server.app import create_app
from h2o_chat.server.config import ServerConfig
from h2o_chat.server.runtime import Runtime

logger = logging.getLogger("h2o_chat.server")

GRACEFUL_SHUTDOWN_SECONDS = 10


class H2oServer(uvicorn.Server):
    """uvicorn's server, which first cancels every running generation when it shuts down.

    Without this, uvicorn would wait for the open event streams to end on their own.
    """

    def __init__(self, app: Starlette, config: ServerConfig) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_config=None,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
        self.runtime: Runtime = app.state.runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.runtime.cancel_all()
        await super().shutdown(sockets)

    def url(self) -> str:
        """The base URL of the listening socket (after startup)."""
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


@contextlib.contextmanager
def _signals_absorbed() -> Iterator[None]:
    """Keep uvicorn's re-raise of SIGINT/SIGTERM after a clean shutdown from killing us."""

    def ignore(signum: int, frame: FrameType | None) -> None:
        return None

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(config: ServerConfig, on_ready: Callable[[str], None]) -> int:
    """Serve until SIGINT/SIGTERM; ``on_ready(url)`` once listening with the models loaded.

    Returns 0 after a clean shutdown, 1 if the server could not start or a model not load.
    """
    server = H2oServer(create_app(config), config)
    failed = False

    async def run_server() -> None:
        # uvicorn calls sys.exit when it cannot bind or the app cannot start (it has logged
        # why); caught here, inside the task, SystemExit would escape the event loop instead.
        with contextlib.suppress(SystemExit):
            await server.serve()

    async def main() -> None:
        nonlocal failed
        serving = asyncio.create_task(run_server())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:  # listening; the models load meanwhile
            if await server.runtime.loaded():
                on_ready(server.url())
            elif server.runtime.load_error is not None:
                logger.error("Application startup failed: %s. Exiting.", server.runtime.load_error)
                failed = True
                server.should_exit = True
        await serving

    with _signals_absorbed():
        asyncio.run(main())
    return 0 if server.started and not failed else 1
