"""Engines for ``--model ID=python:tests.tgi.backends:FACTORY``: busy, broken or slow to load."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

from h2o_chat.server.backends.base import BackendError, BackendToken, Job

TICK_SECONDS = 0.05
GATE_ENV = "H2O_TGI_TEST_GATE"  # a file path: the gated engine loads once it exists


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
        raise RuntimeError("engine exploded")


class Incomplete(_Fake):
    """One token, then the engine's stream ends unfinished (an upstream cut short)."""

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        yield BackendToken(1, "half")
        raise BackendError("the upstream stream ended unfinished", "incomplete_generation")


class Gated(Slow):
    """Loads only once the file named by ``$H2O_TGI_TEST_GATE`` exists."""

    async def start(self) -> None:
        gate = Path(os.environ[GATE_ENV])
        while not gate.exists():
            await asyncio.sleep(TICK_SECONDS)


def slow(model_id: str) -> Slow:
    return Slow()


def failing(model_id: str) -> Failing:
    return Failing()


def incomplete(model_id: str) -> Incomplete:
    return Incomplete()


def gated(model_id: str) -> Gated:
    return Gated()
