"""Engines for ``--model ID=python:tests.reliability.backends:FACTORY``, misbehaving on purpose.

They run inside the server process. Each answer is the numbered tokens ``" n0"``, ``" n1"``,
... and every token and the way the answer ended are appended, as JSON lines, to the trace
file named by ``$H2O_RELIABILITY_TRACE``, tagged with the last user message, so that a test
can tell exactly how much was generated and when generation stopped.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from h2o_chat.server.backends.base import BackendToken, Job

TRACE_ENV = "H2O_RELIABILITY_TRACE"
TICK_SECONDS = 0.05
CONTEXT_LENGTH = 4096
SECRET = "/srv/secret/engine/weights.py"  # must never reach a client
TRAP_ID = "badc0ffee0ddf00dbadc0ffe"  # a conversation id whose lookup raises


def trace(label: str, event: str, **fields: Any) -> None:
    """Append one line to the trace file (if the server was given one)."""
    path = os.environ.get(TRACE_ENV)
    if path:
        line = {"t": time.time(), "label": label, "event": event, **fields}
        with open(path, "ab") as file:
            file.write(orjson.dumps(line) + b"\n")


def read_trace(path: str | os.PathLike[str], label: str) -> list[dict[str, Any]]:
    """The trace lines of the answers to ``label``."""
    try:
        with open(path, "rb") as file:
            lines = [orjson.loads(line) for line in file if line.strip()]
    except FileNotFoundError:
        return []
    return [line for line in lines if line["label"] == label]


def token_text(index: int) -> str:
    return f" n{index}"


class Numbered:
    """``" n0" " n1" ...`` every ``tick`` seconds up to ``max_new_tokens``; then the end token.

    With ``fail_after`` it raises an unexpected exception (naming a secret path) after that
    many tokens instead.
    """

    kind = "test"
    parallel = 1
    max_top_n_tokens = 0
    context_length = CONTEXT_LENGTH

    def __init__(self, tick: float = TICK_SECONDS, fail_after: int | None = None) -> None:
        self.tick = tick
        self.fail_after = fail_after

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        label = next((m.content for m in reversed(job.request.messages) if m.role == "user"), "")
        job.prompt_tokens = sum(len(m.content.split()) for m in job.request.messages)
        produced, how = 0, "closed"  # closed: the server stopped pulling tokens
        trace(label, "start")
        try:
            for index in range(job.request.max_new_tokens):
                if job.cancel.is_set():
                    how = "cancelled"
                    return
                await asyncio.sleep(self.tick)
                if index == self.fail_after:
                    how = "raised"
                    raise RuntimeError(f"engine exploded in {SECRET}")
                trace(label, "token", n=index)
                produced += 1
                yield BackendToken(index + 1, token_text(index), -0.5)
            how = "finished"
            yield BackendToken(0, "", 0.0, eos=True)
        finally:
            trace(label, "end", how=how, produced=produced)


class Trapped(Numbered):
    """A fast engine that, once started, makes looking up :data:`TRAP_ID` raise in the server.

    This forces an unexpected exception inside a route (not inside a generation), to show
    what an internal error looks like to the client.
    """

    async def start(self) -> None:
        from h2o_chat.server.storage import Storage

        lookup = Storage.conversation

        def conversation(self: Storage, session_id: str, conversation_id: str) -> Any:
            if conversation_id == TRAP_ID:
                raise RuntimeError(f"storage exploded in {SECRET}")
            return lookup(self, session_id, conversation_id)

        Storage.conversation = conversation  # type: ignore[method-assign]


def slow(model_id: str) -> Numbered:
    """A token every 50 ms: a model that stays busy."""
    return Numbered()


def failing(model_id: str) -> Numbered:
    """Three tokens, then an unexpected exception."""
    return Numbered(tick=0.0, fail_after=3)


def trapped(model_id: str) -> Trapped:
    """Zero-latency tokens, and a storage lookup that raises for :data:`TRAP_ID`."""
    return Trapped(tick=0.0)
