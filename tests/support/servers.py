"""Start real servers on 127.0.0.1 for the tests: the project's own and third-party ones."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

REPO = Path(__file__).resolve().parents[2]
# The environment that lets a server import the test engines (python:tests.support.backends:...)
IMPORTABLE = {"PYTHONPATH": str(REPO)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A server process started by a test; ``url`` is its base URL."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    path: str,
    timeout: float = 120.0,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll ``url + path`` until it answers 200; fail with the server's log if it dies.
    ``verify`` checks an https ``url``'s certificate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2, verify=verify).status_code == 200:
                return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log_path.read_text()}")


@contextlib.contextmanager
def run_process(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    health_path: str,
    env: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[RunningServer]:
    """Run ``argv`` (a server listening on ``port``) until the block ends; with ``tls``, the
    server speaks HTTPS, its certificate checked with that context."""
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    server = RunningServer(url, process, log_path)
    try:
        wait_until_healthy(url, process, log_path, health_path, verify=tls or True)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def h2o_server(
    tmp_path: Path,
    *args: str,
    port: int | None = None,
    db: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """``h2o-chat serve`` on a free loopback port with ``args`` (e.g. ``--model``); ``db`` is a
    SQLite file (default: a new one in ``tmp_path``) or a ``postgresql://`` URL."""
    port = port or free_port()
    db = db or tmp_path / "h2o-chat.sqlite3"
    argv = [
        sys.executable,
        "-m",
        "h2o_chat",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db),
        *args,
    ]
    log_path = tmp_path / f"server-{port}.log"
    with run_process(argv, port, log_path, "/healthz", env) as server:
        yield server


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread of this process, until
    the block ends (stalled answers are not waited for); yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{type(app).__name__} did not start")
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(10)
