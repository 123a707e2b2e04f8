"""The reliability cases' servers: the real ``h2o-chat serve`` on 127.0.0.1 with test engines.

A :class:`Lab` is such a server together with the trace its engines write
(:mod:`tests.support.backends`); :func:`upstream` runs the misbehaving OpenAI-compatible
upstream of :mod:`tests.support.upstream`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support.backends import TRACE_ENV, read_trace
from tests.support.h2o import new_conversation, read_events, session_client
from tests.support.servers import IMPORTABLE, RunningServer, free_port, h2o_server, run_process

RecordProperty = Callable[[str, object], None]  # pytest's record_property fixture
BACKENDS = "python:tests.support.backends"
TEST_MODELS = (
    *("--model", "echo=synthetic"),
    *("--model", f"slow={BACKENDS}:traced_slow"),
    *("--model", f"failing={BACKENDS}:traced_failing"),
    *("--model", f"trapped={BACKENDS}:trapped"),
)


@dataclass
class Lab:
    """A running server and the trace file its test engines write."""

    server: RunningServer
    trace_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    def trace(self, label: str) -> list[dict[str, Any]]:
        return read_trace(self.trace_path, label)

    def wait_for_end(self, label: str, timeout: float = 10.0) -> dict[str, Any]:
        """The trace's ``end`` line of the answer to ``label``, once the engine wrote it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = [line for line in self.trace(label) if line["event"] == "end"]
            if ends:
                return ends[-1]
            time.sleep(0.02)
        raise AssertionError(f"the engine never ended the answer to {label!r}")

    def rss(self) -> int:
        """The server process's resident memory, in bytes."""
        return int(psutil.Process(self.server.process.pid).memory_info().rss)


@contextlib.contextmanager
def lab(tmp_path: Path, *args: str, **kwargs: Any) -> Iterator[Lab]:
    """``h2o_server`` with the test engines importable and tracing into ``tmp_path``."""
    trace_path = tmp_path / "trace.jsonl"
    env = {**IMPORTABLE, TRACE_ENV: str(trace_path), **kwargs.pop("env", {})}
    with h2o_server(tmp_path, *args, env=env, **kwargs) as server:
        yield Lab(server, trace_path)


@contextlib.contextmanager
def upstream(tmp_path: Path) -> Iterator[str]:
    """The misbehaving OpenAI-compatible upstream of ``tests.support.upstream``: its /v1 URL."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.upstream", str(port)]
    log = tmp_path / f"upstream-{port}.log"
    with run_process(argv, port, log, "/v1/models", IMPORTABLE) as server:
        yield server.url + "/v1"


def abandon(stream: Iterator[Any]) -> None:
    """Close a sync client's answer stream half-read: its connection is closed at once."""
    assert isinstance(stream, Generator)
    stream.close()


def unique(prefix: str) -> str:
    """A message no other test sends: the trace label of its answer."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def still_serving(url: str) -> None:
    """The server answers a fresh conversation at once: health, then a whole echo answer."""
    with session_client(url) as client:
        assert client.get("/healthz").status_code == 200
        conversation_id = new_conversation(client, "echo")
        body = {"inputs": "still here", "parameters": {}}
        with client.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
            assert response.status_code == 200
            final = read_events(response)[-1]
        assert getattr(final, "generated_text", None) == "still here", final
