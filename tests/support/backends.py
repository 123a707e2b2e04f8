"""Test engines: in-process in unit tests, or ``--model ID=python:tests.support.backends:F``.

A server process imports this module when a SOURCE names it (``PYTHONPATH`` must hold the
repository, see :data:`tests.support.servers.IMPORTABLE`). Two families:

- the server tests' engines (:func:`slow`, :func:`failing`, :func:`transcript`): a token
  ``" tick"`` every 50 ms, two tokens then a crash, the conversation read back;
- the reliability cases' traced engines (:func:`traced_slow`, :func:`traced_failing`,
  :func:`trapped`): numbered tokens ``" n0" " n1" ...``; every token and the way the answer
  ended are appended, as JSON lines, to the file named by ``$H2O_RELIABILITY_TRACE``, tagged
  with the last user message, so that a test can tell exactly how much was generated and
  when generation stopped; :func:`recalling` (the replica tests') answers with the history,
  then numbered tokens.

:class:`Scripted` is for the unit tests: it yields the tokens it is given.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import orjson

from h2o_chat.server.backends.base import BackendToken, Job

TICK_SECONDS = 0.05
CONTEXT_LENGTH = 4096
TRACE_ENV = "H2O_RELIABILITY_TRACE"
SECRET = "/srv/secret/engine/weights.py"  # must never reach a client
TRAP_ID = "badc0ffee0ddf00dbadc0ffe"  # a conversation id whose lookup raises


class Fake:
    """What every test engine shares: one generation at a time, nothing to load or close."""

    kind = "test"
    parallel = 1
    max_top_n_tokens = 0
    context_length = CONTEXT_LENGTH

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Scripted(Fake):
    """Yields ``tokens`` in order, then raises ``error`` if given; records how it ended.

    ``ended`` is ``"finished"`` (all tokens out), ``"raised"`` or ``"closed"`` (the caller
    stopped pulling tokens and closed the generator); None while it runs.
    """

    def __init__(self, tokens: Sequence[BackendToken], error: BaseException | None = None) -> None:
        self.tokens = tokens
        self.error = error
        self.pulled = 0  # tokens handed out
        self.ended: str | None = None

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        job.prompt_tokens = len(job.request.messages)
        how = "closed"
        try:
            for token in self.tokens:
                self.pulled += 1
                yield token
            if self.error is not None:
                how = "raised"
                raise self.error
            how = "finished"
        finally:
            self.ended = how


class Slow(Fake):
    """A token " tick" every TICK_SECONDS until max_new_tokens: a model that stays busy."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        job.prompt_tokens = 1
        for index in range(job.request.max_new_tokens):
            await asyncio.sleep(TICK_SECONDS)
            yield BackendToken(index + 1, " tick")


class Failing(Fake):
    """Two tokens, then the engine breaks."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        yield BackendToken(1, "one")
        yield BackendToken(2, " two")
        raise RuntimeError("engine exploded at /secret/path/model.bin")


class Transcript(Fake):
    """Answers with the conversation it was given: one ``role:content`` word per message."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        for index, message in enumerate(job.request.messages):
            words = "_".join(message.content.split())
            yield BackendToken(index + 1, f"{' ' if index else ''}{message.role}:{words}")
        yield BackendToken(0, "", eos=True)


def slow(model_id: str) -> Slow:
    return Slow()


def failing(model_id: str) -> Failing:
    return Failing()


def transcript(model_id: str) -> Transcript:
    return Transcript()


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


class Numbered(Fake):
    """``" n0" " n1" ...`` every ``tick`` seconds up to ``max_new_tokens``; then the end token.

    With ``fail_after`` it raises an unexpected exception (naming a secret path) after that
    many tokens instead.
    """

    def __init__(self, tick: float = TICK_SECONDS, fail_after: int | None = None) -> None:
        self.tick = tick
        self.fail_after = fail_after

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
        from h2o_chat.server.store.sqlite import SQLiteStore

        lookup = SQLiteStore.conversation

        async def conversation(self: SQLiteStore, session_id: str, conversation_id: str) -> Any:
            if conversation_id == TRAP_ID:
                raise RuntimeError(f"storage exploded in {SECRET}")
            return await lookup(self, session_id, conversation_id)

        SQLiteStore.conversation = conversation


class Recalling(Numbered):
    """The replica tests' engine: the conversation it was given, one ``role:words`` token per
    message (as :class:`Transcript`), so an answer shows the history the server read; then,
    for a message that starts with ``long``, numbered tokens every tick (as :class:`Numbered`,
    traced) until ``max_new_tokens``; else the end token at once."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        messages = job.request.messages
        for index, message in enumerate(messages):
            words = "_".join(message.content.split())
            yield BackendToken(index + 1, f"{' ' if index else ''}{message.role}:{words}")
        if messages[-1].content.startswith("long"):
            async for token in super().stream(job):
                yield token
        else:
            yield BackendToken(0, "", eos=True)


def recalling(model_id: str) -> Recalling:
    return Recalling()


def traced_slow(model_id: str) -> Numbered:
    """A token every 50 ms: a model that stays busy."""
    return Numbered()


def traced_failing(model_id: str) -> Numbered:
    """Three tokens, then an unexpected exception."""
    return Numbered(tick=0.0, fail_after=3)


def trapped(model_id: str) -> Trapped:
    """Zero-latency tokens, and a storage lookup that raises for :data:`TRAP_ID`."""
    return Trapped(tick=0.0)
