"""Servers and raw-HTTP helpers for the TGI route tests (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson

from h2o_chat import weights
from tests.support.engines import llama_server
from tests.support.servers import RunningServer, free_port, h2o_server, run_process

REPO = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(REPO)}  # so that python:tests.tgi.backends:... imports
BACKENDS = "python:tests.tgi.backends"


def serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AbstractContextManager[RunningServer]:
    """``h2o-chat serve ARGS`` with the test engines importable, once its models are loaded."""
    return h2o_server(tmp_path, *args, env={**ENV, **(env or {})})


@contextlib.contextmanager
def serve_loading(tmp_path: Path, *args: str, env: dict[str, str]) -> Iterator[RunningServer]:
    """``h2o-chat serve ARGS``, handed over as soon as it listens, its models still loading."""
    port = free_port()
    argv = [sys.executable, "-m", "h2o_chat", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--db", str(tmp_path / "loading.sqlite3"), *args]
    log = tmp_path / f"server-{port}.log"
    with run_process(argv, port, log, "/", {**ENV, **env}) as server:  # GET / is the page
        yield server


@contextlib.contextmanager
def upstream_engine(tmp_path: Path) -> Iterator[str]:
    """An OpenAI-compatible engine serving SmolLM2 as ``smol``: llama.cpp's own server from
    the engine's wheel; yields its ``/v1`` URL. The one place the TGI tests start an upstream.
    """
    with llama_server(weights.ensure(), tmp_path) as server:
        yield f"{server.url}/v1"


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON of every ``data:`` line of an event stream, keep-alive comments skipped."""
    return [orjson.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def stream(
    url: str, path: str, body: dict[str, Any], **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST ``body`` and read the whole event stream: the response and its events."""
    with httpx.stream("POST", url + path, json=body, timeout=60, **kwargs) as response:
        return response, events(response)


@contextlib.contextmanager
def occupied(server: RunningServer, model: str = "slow") -> Iterator[None]:
    """Hold ``model`` (a :class:`tests.tgi.backends.Slow`) with a long answer for the block
    (its first token has come), then free it and wait until the server says it runs nothing."""
    message = {"role": "user", "content": "hold"}
    body = {"model": model, "messages": [message], "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as held:
        lines = held.iter_lines()  # kept: a dropped iterator closes the response
        while "tick" not in next(lines):  # the first chunk comes before the model is asked
            pass
        yield
    with httpx.Client(base_url=server.url) as http:
        while http.get("/healthz").json()["models"][model]["running"]:
            time.sleep(0.02)
