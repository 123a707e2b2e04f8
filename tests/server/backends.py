"""Backends for ``--model ID=python:tests.server.backends:FACTORY`` in the server tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from h2o_chat.server.backends.base import BackendToken, Job

TICK_SECONDS = 0.05


class _Fake:
    kind = "test"
    parallel = 1
    max_top_n_tokens = 0
    context_length = 4096

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Slow(_Fake):
    """A token " tick" every TICK_SECONDS until max_new_tokens: a model that stays busy."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        job.prompt_tokens = 1
        for index in range(job.request.max_new_tokens):
            await asyncio.sleep(TICK_SECONDS)
            yield BackendToken(index + 1, " tick")


class Failing(_Fake):
    """Two tokens, then the engine breaks."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        yield BackendToken(1, "one")
        yield BackendToken(2, " two")
        raise RuntimeError("engine exploded at /secret/path/model.bin")


class Transcript(_Fake):
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
